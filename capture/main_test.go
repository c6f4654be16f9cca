//go:build linux

package capture

import (
	"os"
	"runtime"
	"testing"
)

// TestMain lets the test binary act as the held child of `-- COMMAND`
// captures run in-process (capture.Run re-executes os.Executable()).
func init() {
	// See cmd/bpfsnap/held_linux.go: a held child execs from the main thread.
	if IsHeldChild() {
		runtime.LockOSThread()
	}
}

func TestMain(m *testing.M) {
	if IsHeldChild() {
		RunHeldChild()
	}
	os.Exit(m.Run())
}
