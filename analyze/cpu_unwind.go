package analyze

import (
	"strconv"

	"github.com/bpfsnap/bpfsnap/formats"
)

// CPUUnwind is how the capture walked user stacks, from the cpu probe
// set's details: with --unwind auto or dwarf every sample's user stack is
// walked in the recorder, and Rooted of the Walks reached their thread's
// root (_start, clone3, runtime.goexit: the outermost frame). It covers the
// whole capture (every target, the whole window), whatever the filter.
type CPUUnwind struct {
	Mode      string  `json:"mode"`
	Walks     uint64  `json:"walks"`
	Rooted    uint64  `json:"rooted"`
	RootedPct float64 `json:"rooted_pct"`
}

// CPUUnwindOf reads the walk counts of the cpu probe details; nil when the
// capture did not walk stacks itself (--unwind fp, or an older archive).
func CPUUnwindOf(m *formats.Manifest) *CPUUnwind {
	pr := m.Probe("cpu")
	if pr == nil {
		return nil
	}
	walks, err1 := strconv.ParseUint(pr.Details["unwind.walks"], 10, 64)
	rooted, err2 := strconv.ParseUint(pr.Details["unwind.complete"], 10, 64)
	if err1 != nil || err2 != nil || walks == 0 || rooted > walks {
		return nil
	}
	return &CPUUnwind{Mode: pr.Details["unwind"], Walks: walks, Rooted: rooted, RootedPct: 100 * float64(rooted) / float64(walks)}
}
