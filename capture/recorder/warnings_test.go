//go:build linux

package recorder

import (
	"path/filepath"
	"testing"

	"github.com/bpfsnap/bpfsnap/formats"
)

// A probe set that warns per process cannot grow the manifest (or the
// terminal) without bound: past maxWarnings, warnings are counted.
func TestWarningsAreBounded(t *testing.T) {
	w, err := formats.Create(filepath.Join(t.TempDir(), "w.bpfsnap"), formats.Manifest{}, formats.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Abort()
	printed := 0
	s := &Session{writer: w, opts: Options{Warn: func(string) { printed++ }}}
	for i := 0; i < 5000; i++ {
		s.Warnf("mem: pid %d: no such process", i)
	}
	m := w.Manifest()
	if len(m.Warnings) != maxWarnings || m.Drops["capture.warnings_suppressed"] != 5000-maxWarnings || printed != maxWarnings+1 {
		t.Errorf("%d warnings kept, %d suppressed, %d printed", len(m.Warnings), m.Drops["capture.warnings_suppressed"], printed)
	}
}
