package report

import (
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/bpfsnap/bpfsnap/internal/safetext"
)

// TerminalSafe makes a workload-supplied string safe to print on a
// terminal: control characters (ESC, CR, BEL, ...), invalid UTF-8 and
// Unicode format characters (bidi overrides) are written as escapes, so a
// process name cannot move the cursor, retitle the window or hide text.
func TerminalSafe(s string) string {
	if safetext.PlainASCII(s) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			fmt.Fprintf(&b, `\x%02x`, s[i])
		case r < 0x100 && safetext.Unsafe(r):
			fmt.Fprintf(&b, `\x%02x`, r)
		case safetext.Unsafe(r):
			fmt.Fprintf(&b, `\u%04x`, r)
		default:
			b.WriteString(s[i : i+size])
		}
		i += size
	}
	return b.String()
}
