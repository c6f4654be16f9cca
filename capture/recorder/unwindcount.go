//go:build linux

package recorder

import (
	"strconv"

	"github.com/bpfsnap/bpfsnap/internal/unwind"
)

// UnwindCounts counts the CFI walks of one probe set's stacks
// (RecordUserStackResult), for a set that reports them under its own name
// beside the cpu set's (which the StackRecorder counts itself).
type UnwindCounts struct{ unwind.Counts }

// AddDrops adds the walks that stopped early to drops as
// "<set>.unwind_<reason>" (formats' drop catalog).
func (c *UnwindCounts) AddDrops(set string, drops map[string]uint64) {
	for reason, n := range c.Map() {
		if reason != unwind.ReasonEnd.String() {
			drops[set+".unwind_"+reason] = n
		}
	}
}

// Details summarizes the walks for the manifest's probe details; nil when
// there were none.
func (c *UnwindCounts) Details() map[string]string {
	total := c.Total()
	if total == 0 {
		return nil
	}
	complete := c.Map()[unwind.ReasonEnd.String()]
	return map[string]string{
		"unwind.walks":        strconv.FormatUint(total, 10),
		"unwind.complete":     strconv.FormatUint(complete, 10),
		"unwind.complete_pct": strconv.FormatFloat(100*float64(complete)/float64(total), 'f', 1, 64),
	}
}
