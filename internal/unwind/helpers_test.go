package unwind

import (
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/bpfsnap/bpfsnap/internal/testenv"
)

// buildC compiles a test program from testdata with gcc and the given flags.
func buildC(t *testing.T, src string, flags ...string) string {
	t.Helper()
	gcc := testenv.RequireTool(t, "gcc")
	out := filepath.Join(t.TempDir(), "prog")
	args := append(append([]string{}, flags...), "-o", out, filepath.Join("testdata", src))
	if b, err := exec.Command(gcc, args...).CombinedOutput(); err != nil {
		t.Fatalf("gcc %v: %v\n%s", args, err, b)
	}
	return out
}
