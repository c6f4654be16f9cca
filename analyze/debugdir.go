package analyze

import (
	"fmt"
	"os"

	"github.com/bpfsnap/bpfsnap/formats"
)

// DebugDirResolver fills Function/File/Line of frames the capture left
// unresolved, from debug files under dir looked up by each frame's BuildID
// and FileOffset, and returns how many it resolved. It is the hook for
// internal/symbolize's debug-file lookup (the capture side owns it); until
// that is wired in, it is nil and --debug-dir reports that it is
// unavailable instead of silently doing nothing.
var DebugDirResolver func(dir string, frames []*formats.Frame) (int, error)

// resolveFromDebugDir hands every distinct unresolved user frame that has a
// build id to DebugDirResolver.
func resolveFromDebugDir(dir string, p *CPUProfile) error {
	if st, err := os.Stat(dir); err != nil || !st.IsDir() {
		return fmt.Errorf("--debug-dir %s: not a directory", dir)
	}
	if DebugDirResolver == nil {
		return fmt.Errorf("--debug-dir: resolving frames from debug files is not available in this build of bpfsnap")
	}
	seen := map[*formats.Frame]bool{}
	var todo []*formats.Frame
	for _, s := range p.Stacks {
		for _, f := range s.Frames {
			if f.Function == "" && !f.Kernel && f.BuildID != "" && !seen[f] {
				seen[f] = true
				todo = append(todo, f)
			}
		}
	}
	if len(todo) == 0 {
		return nil
	}
	_, err := DebugDirResolver(dir, todo)
	return err
}
