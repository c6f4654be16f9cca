// Package safetext decides which characters of a workload-supplied string
// (process names, URLs, symbol names) are unsafe to show as they are. It is
// the one place that decision is made; each renderer (terminal, HTML,
// folded stacks, pprof) keeps its own way of replacing what is unsafe.
package safetext

import "unicode"

// Unsafe reports whether r must not reach a terminal, a page or a text
// format unescaped: C0 and C1 control characters and DEL (they move the
// cursor, retitle windows, split lines) and the invisible characters that
// reorder or hide text (Unicode format characters such as bidi overrides,
// and the line and paragraph separators).
func Unsafe(r rune) bool {
	if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) {
		return true
	}
	return r == '\u2028' || r == '\u2029' || (r >= 0xa0 && unicode.Is(unicode.Cf, r))
}

// PlainASCII reports whether s is printable ASCII only: the fast path of
// every sanitizer (most names need no work at all).
func PlainASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f {
			return false
		}
	}
	return true
}
