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
	// stack that holds it. Stacks missing from the archive are absent.
	Frames map[uint64][]*formats.Frame
	// Truncated counts stacks cut at maxStackDepth or referencing frames
	// missing from the frames table (those frames are left out).
	Truncated uint64
}

// ResolveStacks reads the stacks with the given ids and their frames, and
// only those, so memory follows the number of stacks asked for. With
// debugDir, user frames the capture left unresolved are resolved from debug
// files found by build id (see resolveFromDebugDir).
func ResolveStacks(a *formats.Archive, ids []uint64, debugDir string) (*Stacks, error) {
	out := &Stacks{Frames: map[uint64][]*formats.Frame{}}
	wanted := make(map[uint64][]uint64, len(ids))
	for _, id := range ids {
		wanted[id] = nil
	}
	frames := map[uint64]*formats.Frame{}
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
	if len(frames) > 0 {
		err := formats.ReadTable(a, formats.TableFrames, func(rows []formats.Frame) error {
			for i := range rows {
				if f, ok := frames[rows[i].FrameID]; ok && f == nil {
					fr := rows[i]
					frames[fr.FrameID] = &fr
				}
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	for id, fids := range wanted {
		if fids == nil {
			continue // not in the archive
		}
		fr := make([]*formats.Frame, 0, len(fids))
		for _, fid := range fids {
			if f := frames[fid]; f != nil {
				fr = append(fr, f)
			}
		}
		if len(fr) < len(fids) {
			out.Truncated++
		}
		out.Frames[id] = fr
	}
	if debugDir != "" {
		if err := resolveFromDebugDir(debugDir, frames); err != nil {
			return nil, err
		}
	}
	return out, nil
}
