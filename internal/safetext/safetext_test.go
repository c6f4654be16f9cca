package safetext

import "testing"

func TestUnsafe(t *testing.T) {
	for _, r := range []rune{0, '\n', '\r', 0x1b, 0x07, 0x7f, 0x85, 0x9b, '\u202e', '\u200b', '\u2066', '\u2028', '\u2029', '\ufeff'} {
		if !Unsafe(r) {
			t.Errorf("U+%04X is shown as it is", r)
		}
	}
	for _, r := range []rune{' ', 'a', '/', ';', 0xa0, 'é', '日', '\u00ad' - 1} {
		if Unsafe(r) {
			t.Errorf("U+%04X is escaped", r)
		}
	}
	if !PlainASCII("nginx: worker") || PlainASCII("a\x1b[2J") || PlainASCII("café") {
		t.Error("PlainASCII")
	}
}
