package analyze

import (
	"github.com/bpfsnap/bpfsnap/formats"
)

// maxStackDepth bounds the frames kept per stack: the kernel's own limit is
// 127, so anything longer comes from a corrupt or hostile archive and is cut
// (and counted) rather than allowed to multiply memory.
const maxStackDepth = 512

// Stacks are stacks of the archive resolved to their frames. Every probe
// set that records stacks (cpu samples, allocations) shares the stacks and
// frames tables; this is how any of them reads them.
type Stacks struct {
	// Frames holds each found stack's frames, leaf first, kernel frames
	// before user frames. A frame is one *formats.Frame shared by every
	// stack that holds it. Code of inlined functions gives several frames
	// (formats.Frame.Inlined on all but the outermost), one per function.
	// Stacks missing from the archive are absent.
	Frames map[uint64][]*formats.Frame
	// Truncated counts stacks cut at maxStackDepth or referencing frames
	// missing from the frames table (those frames are left out).
	Truncated uint64
}

// ResolveStacks reads the stacks with the given ids and their frames, and
// only those, so memory follows the number of stacks asked for. Each frame
// a stack references is expanded into the inlined functions its code
// belongs to (frames rows with inline_of, see formats.Frame). With
// debugDir, user frames the capture left unresolved or without a source
// line are resolved from debug files found by build id
// (resolveFromDebugDir), inlined functions included. Frames of JIT code
// are named from the runtime's perf map kept in jit_symbols
// (nameJITFrames).
func ResolveStacks(a *formats.Archive, ids []uint64, debugDir string) (*Stacks, error) {
	out := &Stacks{Frames: map[uint64][]*formats.Frame{}}
	wanted := make(map[uint64][]uint64, len(ids))
	for _, id := range ids {
		wanted[id] = nil
	}
	frames := map[uint64]*formats.Frame{}
	stackPIDs := map[uint64]uint32{}
	if len(wanted) > 0 {
		err := formats.ReadTable(a, formats.TableStacks, func(rows []formats.Stack) error {
			for i := range rows {
				ids, ok := wanted[rows[i].StackID]
				if !ok || ids != nil {
					continue // not asked for, or a duplicate row
				}
				ids = rows[i].FrameIDs
				if len(ids) > maxStackDepth {
					ids = ids[:maxStackDepth]
					out.Truncated++
				}
				ids = append(make([]uint64, 0, len(ids)), ids...) // the reader reuses its buffers
				wanted[rows[i].StackID] = ids
				stackPIDs[rows[i].StackID] = rows[i].PID
				for _, f := range ids {
					frames[f] = nil
				}
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	// inlined[id] holds the inlined frames of frame id by depth (index 0
	// is depth 1, the outermost inlined function).
	inlined := map[uint64][]*formats.Frame{}
	if len(frames) > 0 {
		err := formats.ReadTable(a, formats.TableFrames, func(rows []formats.Frame) error {
			for i := range rows {
				r := &rows[i]
				if r.InlineOf != 0 {
					if _, ok := frames[r.InlineOf]; ok && r.InlineOf != r.FrameID {
						addInlined(inlined, r)
					}
					continue
				}
				if f, ok := frames[r.FrameID]; ok && f == nil {
					fr := *r
					frames[fr.FrameID] = &fr
				}
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	if debugDir != "" {
		if err := resolveFromDebugDir(debugDir, frames, inlined); err != nil {
			return nil, err
		}
	}
	if err := nameJITFrames(a, frames, wanted, stackPIDs); err != nil {
		return nil, err
	}
	for id, fids := range wanted {
		if fids == nil {
			continue // not in the archive
		}
		fr := make([]*formats.Frame, 0, len(fids))
		missing, cut := false, false
		for _, fid := range fids {
			f := frames[fid]
			if f == nil {
				missing = true
				continue
			}
			in := inlined[fid]
			if len(fr)+len(in)+1 > maxStackDepth {
				cut = true
				break
			}
			// Leaf first: the innermost inlined function, out to the
			// function the code was compiled into. A gap in the depths
			// (a corrupt archive) ends the chain there.
			n := 0
			for n < len(in) && in[n] != nil {
				n++
			}
			for k := n - 1; k >= 0; k-- {
				fr = append(fr, in[k])
			}
			fr = append(fr, f)
		}
		if missing || cut {
			out.Truncated++
		}
		out.Frames[id] = fr
	}
	return out, nil
}

// addInlined files an inlined frames row under the frame it expands,
// keeping the first row of each depth (formats.MaxInlineDepth at most).
func addInlined(inlined map[uint64][]*formats.Frame, r *formats.Frame) {
	d := int(r.InlineDepth)
	if d < 1 || d > formats.MaxInlineDepth {
		return
	}
	in := inlined[r.InlineOf]
	for len(in) < d {
		in = append(in, nil)
	}
	if in[d-1] == nil {
		fr := *r
		fr.Inlined = true
		in[d-1] = &fr
	}
	inlined[r.InlineOf] = in
}
