package analyze

import (
	"fmt"
	"os"

	"github.com/bpfsnap/bpfsnap/formats"
	"github.com/bpfsnap/bpfsnap/internal/symbolize"
)

// resolveFromDebugDir fills Function/File/Line of user frames the capture
// left unresolved, from debug files under dir found by the frame's build id
// (symbolize.FindDebugFile: .build-id/xx/rest.debug, debuginfod layouts) at
// the frame's file offset. Frames are shared by pointer between stacks, so
// each distinct frame is resolved once and every stack sees the result.
func resolveFromDebugDir(dir string, frames map[uint64]*formats.Frame) error {
	if st, err := os.Stat(dir); err != nil || !st.IsDir() {
		return fmt.Errorf("--debug-dir %s: not a directory", dir)
	}
	opened := map[string]*symbolize.Binary{}
	for _, f := range frames {
		if f == nil || f.Function != "" || f.Kernel || !isHexBuildID(f.BuildID) {
			continue
		}
		b, ok := opened[f.BuildID]
		if !ok {
			if path := symbolize.FindDebugFile(dir, f.BuildID); path != "" {
				b, _ = symbolize.OpenFile(path) // an unreadable file leaves the frame unresolved
			}
			opened[f.BuildID] = b
		}
		if b == nil {
			continue
		}
		if loc, ok := b.Resolve(f.FileOffset); ok && loc.Function != "" {
			f.Function, f.File, f.Line = loc.Function, loc.File, uint32(max(loc.Line, 0))
		}
	}
	return nil
}

// isHexBuildID accepts what a GNU build id looks like, so a hostile archive
// cannot steer the lookup outside dir with "../" in a build id.
func isHexBuildID(s string) bool {
	if len(s) < 4 || len(s) > 128 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F') {
			return false
		}
	}
	return true
}
