//go:build linux

package capture

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
)

// A probe set's bad flag fails the capture before anything is attached or
// written, not after the window (issue #24: --stack-size 32768 was refused
// only when the 10 s window was over, and the command exited 0). No root
// is needed: validation comes first.
func TestBadProbeFlagFailsBeforeTheWindow(t *testing.T) {
	for _, c := range []struct {
		probe string
		args  []string
		want  string
	}{
		{"cpu", []string{"--stack-size", "32768"}, "--stack-size 32768"},
		{"cpu", []string{"--unwind", "sideways"}, "--unwind \"sideways\""},
		{"cpu", []string{"--freq", "0"}, "--freq 0"},
		{"mem", []string{"--mem-unwind", "dwarf", "--mem-stack-size", "100"}, "--mem-stack-size 100"},
	} {
		t.Run(strings.Join(c.args, " "), func(t *testing.T) {
			sets := NewProbeSets()
			fs := pflag.NewFlagSet("capture", pflag.ContinueOnError)
			for _, ps := range sets {
				ps.BindFlags(fs)
			}
			if err := fs.Parse(c.args); err != nil {
				t.Fatal(err)
			}
			out := filepath.Join(t.TempDir(), "x.bpfsnap")
			start := time.Now()
			_, err := Run(context.Background(), Options{Output: out, Duration: 10 * time.Second,
				Probes: []string{c.probe}, Sets: sets, PIDs: []uint32{uint32(os.Getpid())}})
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("Run = %v, want an error naming %s", err, c.want)
			}
			if d := time.Since(start); d > 2*time.Second {
				t.Errorf("the error came after %s: the window was spent first", d)
			}
			if _, err := os.Stat(out); err == nil {
				t.Error("an archive was written for a capture refused by its flags")
			}
			if _, err := os.Stat(out + ".partial"); err == nil {
				t.Error("a partial archive was started for a capture refused by its flags")
			}
		})
	}
}
