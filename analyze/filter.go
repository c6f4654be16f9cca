package analyze

import (
	"fmt"
	"strings"
	"time"

	"github.com/bpfsnap/bpfsnap/formats"
)

// Filter restricts an analysis to some processes and a slice of the window.
// The zero value keeps everything.
type Filter struct {
	PIDs []uint32
	// From and To are offsets from the window start; To == 0 means the end.
	From, To time.Duration
	// Namespace and Pod restrict to the processes attributed to them at
	// capture time; ResolveK8s turns them into PIDs.
	Namespace, Pod string
}

// Bound is a Filter resolved against one archive's window, ready to test
// rows with.
type Bound struct {
	pids     map[uint32]bool
	from, to uint64 // CLOCK_MONOTONIC ns, inclusive from, exclusive to
}

// Bind resolves the filter against a manifest.
func (f Filter) Bind(m *formats.Manifest) Bound {
	b := Bound{from: 0, to: ^uint64(0)}
	if len(f.PIDs) > 0 {
		b.pids = map[uint32]bool{}
		for _, p := range f.PIDs {
			b.pids[p] = true
		}
	}
	if f.From > 0 {
		b.from = m.Window.StartMonoNs + uint64(f.From)
	}
	if f.To > 0 {
		b.to = m.Window.StartMonoNs + uint64(f.To)
	}
	return b
}

// Keep reports whether a row of process pid at time t passes the filter.
func (b Bound) Keep(pid uint32, t uint64) bool {
	if b.pids != nil && !b.pids[pid] {
		return false
	}
	return t >= b.from && t < b.to
}

// ParseOffset parses a --from/--to value: a duration from the window start
// ("5s", "1m30s") or a wall-clock time (RFC 3339) inside the window.
func ParseOffset(s string, m *formats.Manifest) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, nil
	}
	if d, err := time.ParseDuration(s); err == nil {
		if d < 0 {
			return 0, fmt.Errorf("time offset %q is negative", s)
		}
		return d, nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return 0, fmt.Errorf("time %q is neither a duration from the window start (5s) nor an RFC 3339 time", s)
	}
	d := t.Sub(m.Window.StartWall)
	if d < 0 {
		return 0, fmt.Errorf("time %s is before the window start %s", s, m.Window.StartWall.Format(time.RFC3339))
	}
	return d, nil
}
