package analyze

import (
	"sort"

	"github.com/bpfsnap/bpfsnap/formats"
)

// MemSummary is the `mem` section of analyze: what the replay of every
// allocation and free leaves outstanding at the end of the window.
type MemSummary struct {
	// OutstandingBytes and OutstandingBlocks count blocks allocated in the
	// window and not freed by its end.
	OutstandingBytes  uint64 `json:"outstanding_bytes"`
	OutstandingBlocks uint64 `json:"outstanding_allocations"`
	Allocations       uint64 `json:"allocations"`
	Frees             uint64 `json:"frees"`
	// FreesOfUnknown counts frees of blocks allocated before the window
	// (or by an untraced path): ignored, not subtracted from anything.
	FreesOfUnknown uint64    `json:"frees_of_unknown"`
	Leaks          []MemLeak `json:"leaks"`
	// SeriesStepS is the time step of every leak's Growth series.
	SeriesStepS float64 `json:"series_step_s"`
}

// MemLeak is one allocation stack with outstanding memory: a leak
// candidate. Candidates are ranked by how steadily they grew, then bytes.
type MemLeak struct {
	PID         uint32  `json:"pid"`
	Process     string  `json:"process"`
	Bytes       uint64  `json:"bytes"`
	Allocations uint64  `json:"allocations"`
	OldestAgeS  float64 `json:"oldest_age_s"`
	// Stack is the allocation's call stack, leaf (the call site) first.
	Stack []string `json:"stack"`
	// Growth is the outstanding bytes of this stack at each step of the
	// window: a steady climb is a leak, a step that stays flat a cache.
	Growth []uint64 `json:"growth"`
	// Steady is true when the outstanding bytes rose in most steps.
	Steady  bool   `json:"steady"`
	StackID uint64 `json:"-"`
}

const (
	memSeriesSteps = 20
	maxLeaks       = 50
)

type block struct {
	size  uint64
	time  uint64
	stack uint64
	pid   uint32
}

type leakKey struct {
	pid   uint32
	stack uint64
}

// Mem replays the mem_events table. It returns nil when the archive has
// none.
func Mem(a *formats.Archive, opts Options, procs []Process) (*MemSummary, error) {
	if !a.HasTable(formats.TableMemEvents) {
		return nil, nil
	}
	m := a.Manifest()
	b := opts.Filter.Bind(m)
	var rows []formats.MemEvent
	err := formats.ReadTable(a, formats.TableMemEvents, func(batch []formats.MemEvent) error {
		for _, r := range batch {
			if b.Keep(r.PID, r.TimeNs) {
				rows = append(rows, r)
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	// Per-CPU ring buffers do not promise global order; replay needs it.
	sort.SliceStable(rows, func(i, j int) bool { return rows[i].TimeNs < rows[j].TimeNs })
	start, end := m.Window.StartMonoNs, m.Window.EndMonoNs
	if len(rows) > 0 && (end <= start || rows[len(rows)-1].TimeNs > end) {
		end = rows[len(rows)-1].TimeNs
	}
	step := max((end-start)/memSeriesSteps, 1)
	s := &MemSummary{SeriesStepS: float64(step) / 1e9}
	blocks := map[uint32]map[uint64]block{}
	series := map[leakKey][]uint64{}
	current := map[leakKey]uint64{}
	bucketOf := func(t uint64) int {
		if t < start {
			return 0
		}
		return min(int((t-start)/step), memSeriesSteps-1)
	}
	record := func(k leakKey, t uint64) {
		sr := series[k]
		if sr == nil {
			sr = make([]uint64, memSeriesSteps)
			series[k] = sr
		}
		// The value at a step is the outstanding bytes at its end: set it
		// for this step and, lazily, carry it forward below.
		sr[bucketOf(t)] = current[k] + 1 // +1 marks "set" (0 bytes is a value)
	}
	release := func(pid uint32, addr uint64, t uint64) bool {
		bl, ok := blocks[pid][addr]
		if !ok {
			return false
		}
		delete(blocks[pid], addr)
		k := leakKey{pid, bl.stack}
		current[k] -= bl.size
		record(k, t)
		return true
	}
	for _, r := range rows {
		if blocks[r.PID] == nil {
			blocks[r.PID] = map[uint64]block{}
		}
		switch r.Kind {
		case formats.MemFree:
			s.Frees++
			if !release(r.PID, r.Addr, r.TimeNs) {
				s.FreesOfUnknown++
			}
		default:
			s.Allocations++
			if r.OldAddr != 0 {
				// realloc hands the old block back (whatever stack made it)
				// and the new one belongs to the realloc's call site.
				if !release(r.PID, r.OldAddr, r.TimeNs) {
					s.FreesOfUnknown++
				}
			}
			if old, dup := blocks[r.PID][r.Addr]; dup {
				// An address handed out twice without a free in between:
				// the free was missed; the old block is gone.
				k := leakKey{r.PID, old.stack}
				current[k] -= old.size
				record(k, r.TimeNs)
			}
			blocks[r.PID][r.Addr] = block{size: r.Size, time: r.TimeNs, stack: r.StackID, pid: r.PID}
			k := leakKey{r.PID, r.StackID}
			current[k] += r.Size
			record(k, r.TimeNs)
		}
	}
	// Outstanding blocks, grouped by stack.
	type agg struct {
		bytes, count uint64
		oldest       uint64
	}
	groups := map[leakKey]*agg{}
	for pid, bs := range blocks {
		for _, bl := range bs {
			k := leakKey{pid, bl.stack}
			g := groups[k]
			if g == nil {
				g = &agg{oldest: bl.time}
				groups[k] = g
			}
			g.bytes += bl.size
			g.count++
			g.oldest = min(g.oldest, bl.time)
			s.OutstandingBytes += bl.size
			s.OutstandingBlocks++
		}
	}
	names := processNames(procs)
	var ids []uint64
	for k := range groups {
		ids = append(ids, k.stack)
	}
	stacks, err := ResolveStacks(a, ids, opts.DebugDir)
	if err != nil {
		return nil, err
	}
	for k, g := range groups {
		l := MemLeak{PID: k.pid, Process: names[k.pid], Bytes: g.bytes, Allocations: g.count,
			OldestAgeS: float64(int64(end)-int64(g.oldest)) / 1e9, StackID: k.stack, Growth: carryForward(series[k])}
		for _, f := range stacks.Frames[k.stack] {
			l.Stack = append(l.Stack, SafeFrameName(FrameName(f)))
		}
		rises := 0
		for i := 1; i < len(l.Growth); i++ {
			if l.Growth[i] > l.Growth[i-1] {
				rises++
			}
		}
		l.Steady = rises >= len(l.Growth)/3
		s.Leaks = append(s.Leaks, l)
	}
	sort.Slice(s.Leaks, func(i, j int) bool {
		a, b := s.Leaks[i], s.Leaks[j]
		if a.Steady != b.Steady {
			return a.Steady
		}
		if a.Bytes != b.Bytes {
			return a.Bytes > b.Bytes
		}
		return a.StackID < b.StackID
	})
	if len(s.Leaks) > maxLeaks {
		s.Leaks = s.Leaks[:maxLeaks]
	}
	return s, nil
}

// carryForward turns the "set at step" marks (+1) into a full series: a
// step without events keeps the previous value.
func carryForward(marks []uint64) []uint64 {
	out := make([]uint64, len(marks))
	var v uint64
	for i, m := range marks {
		if m != 0 {
			v = m - 1
		}
		out[i] = v
	}
	return out
}

// MemFolded returns the outstanding bytes by allocation stack as folded
// stacks, for a flame graph of memory.
func MemFolded(s *MemSummary) []FoldedStack {
	var out []FoldedStack
	for _, l := range s.Leaks {
		frames := []string{SafeFrameName(l.Process)}
		for i := len(l.Stack) - 1; i >= 0; i-- {
			frames = append(frames, l.Stack[i])
		}
		if len(l.Stack) == 0 {
			frames = append(frames, "[no stack]")
		}
		out = append(out, FoldedStack{Frames: frames, Count: l.Bytes})
	}
	return out
}
