//go:build linux

package capture

import (
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
)

var (
	selfOnce sync.Once
	selfBin  string
	selfErr  error
	selfOut  []byte
)

// buildSelf builds the bpfsnap binary once per test run: `-- COMMAND` and
// crash tests need the real executable (it re-executes itself).
func buildSelf(t *testing.T) string {
	t.Helper()
	selfOnce.Do(func() {
		dir, err := osMkdirTemp()
		if err != nil {
			selfErr = err
			return
		}
		selfBin = filepath.Join(dir, "bpfsnap")
		cmd := exec.Command("go", "build", "-o", selfBin, "../cmd/bpfsnap")
		selfOut, selfErr = cmd.CombinedOutput()
	})
	if selfErr != nil {
		t.Fatalf("building bpfsnap: %v\n%s", selfErr, selfOut)
	}
	return selfBin
}

func osMkdirTemp() (string, error) { return os.MkdirTemp("", "bpfsnap-test-") }
