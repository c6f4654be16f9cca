package analyze

import (
	"fmt"
	"os"

	"github.com/bpfsnap/bpfsnap/formats"
	"github.com/bpfsnap/bpfsnap/internal/symbolize"
)

// resolveFromDebugDir resolves user frames from debug files under dir
// found by the frame's build id (symbolize.FindDebugFile:
// .build-id/xx/rest.debug, debuginfod layouts) at the frame's file offset.
// It fills frames the capture left without a function, and frames without
// a source line (a stripped binary resolved through .dynsym) when the
// debug file names the same code; the debug file's inlined functions
// become the frame's inlined frames (inlined, by depth as ResolveStacks
// keeps them) when the archive had none. Frames are shared by pointer
// between stacks, so each distinct frame is resolved once and every stack
// sees the result.
func resolveFromDebugDir(dir string, frames map[uint64]*formats.Frame, inlined map[uint64][]*formats.Frame) error {
	if st, err := os.Stat(dir); err != nil || !st.IsDir() {
		return fmt.Errorf("--debug-dir %s: not a directory", dir)
	}
	opened := map[string]*symbolize.Binary{}
	for id, f := range frames {
		if f == nil || f.Kernel || (f.Function != "" && f.File != "") || !isHexBuildID(f.BuildID) {
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
		locs := b.ResolveFrames(f.FileOffset)
		if len(locs) == 0 || locs[len(locs)-1].Function == "" {
			continue
		}
		outer := locs[len(locs)-1]
		if f.Function != "" && outer.File == "" {
			continue // nothing to add to the capture's name
		}
		f.Function, f.File, f.Line = outer.Function, outer.File, uint32(max(outer.Line, 0))
		if len(inlined[id]) > 0 {
			continue
		}
		inl := locs[:len(locs)-1]
		if len(inl) > formats.MaxInlineDepth {
			inl = inl[len(inl)-formats.MaxInlineDepth:]
		}
		for i, loc := range inl {
			depth := uint32(len(inl) - i)
			fr := *f
			fr.FrameID = formats.InlineFrameID(id, depth)
			fr.Function, fr.File, fr.Line = loc.Function, loc.File, uint32(max(loc.Line, 0))
			fr.Inlined, fr.InlineOf, fr.InlineDepth = true, id, depth
			addInlined(inlined, &fr)
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
