package report

import "testing"

func TestTerminalSafe(t *testing.T) {
	cases := map[string]string{
		"nginx":         "nginx",
		"a\x1b[31mred":  `a\x1b[31mred`,
		"bell\a\r\n":    `bell\x07\x0d\x0a`,
		"bad\xffutf8":   `bad\xffutf8`,
		"ünïcode":       "ünïcode",
		"rtl\u202eevil": `rtl\u202eevil`,
		"c1\u009bcsi":   `c1\x9bcsi`,
	}
	for in, want := range cases {
		if got := TerminalSafe(in); got != want {
			t.Errorf("TerminalSafe(%q) = %q, want %q", in, got, want)
		}
	}
}
