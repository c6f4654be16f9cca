//go:build linux

package capture

import (
	"os"
	"testing"
)

// TestMain lets the test binary act as the held child of `-- COMMAND`
// captures run in-process (capture.Run re-executes os.Executable()).
func TestMain(m *testing.M) {
	if IsHeldChild() {
		RunHeldChild()
	}
	os.Exit(m.Run())
}
