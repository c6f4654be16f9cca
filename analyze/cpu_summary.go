package analyze

import (
	"sort"
	"strings"

	"github.com/bpfsnap/bpfsnap/formats"
)

// topFunctionsKept bounds the functions listed in the summary: the union of
// the top N by self and the top N by total samples, so both the hot leaves
// and the callers they share (main, the request handler) are listed.
const topFunctionsKept = 100

// CPUSummary is the `cpu` section of analyze's summary.
type CPUSummary struct {
	Samples uint64 `json:"samples"`
	// SamplesWithoutStack were kept but carry no stack (see drops).
	SamplesWithoutStack uint64 `json:"samples_without_stack"`
	// UnresolvedFrames is the number of distinct frames without a name.
	UnresolvedFrames int    `json:"unresolved_frames"`
	TruncatedStacks  uint64 `json:"truncated_stacks,omitempty"`
	PeriodNs         int64  `json:"period_ns,omitempty"`
	// Unwind says how user stacks were walked and how many reached their
	// thread's root (omitted with --unwind fp).
	Unwind    *CPUUnwind    `json:"unwind,omitempty"`
	Timeline  Timeline      `json:"timeline"`
	Processes []CPUProcess  `json:"processes"`
	Functions []CPUFunction `json:"functions"`
}

// CPUProcess is one process's share of the samples.
type CPUProcess struct {
	PID     uint32  `json:"pid"`
	Comm    string  `json:"comm"`
	Samples uint64  `json:"samples"`
	Pct     float64 `json:"pct"`
}

// CPUFunction is one function's samples: self when it is the leaf, total
// when it is anywhere on the stack (counted once per sample even when it
// recurses). Its code inlined into callers counts as its own: the name has
// no InlinedSuffix.
type CPUFunction struct {
	Name         string  `json:"name"`
	Kernel       bool    `json:"kernel,omitempty"` // a kernel function (name ends in KernelSuffix)
	SelfSamples  uint64  `json:"self_samples"`
	SelfPct      float64 `json:"self_pct"`
	TotalSamples uint64  `json:"total_samples"`
	TotalPct     float64 `json:"total_pct"`
}

// Summarize computes the cpu section from a profile.
func (p *CPUProfile) Summarize() *CPUSummary {
	s := &CPUSummary{
		Samples:             p.Samples,
		SamplesWithoutStack: p.NoStack,
		UnresolvedFrames:    p.Unresolved(),
		TruncatedStacks:     p.Truncated,
		PeriodNs:            p.PeriodNs,
		Unwind:              p.Unwind,
		Timeline:            p.Timeline,
		Processes:           []CPUProcess{},
		Functions:           []CPUFunction{},
	}
	pct := func(n uint64) float64 {
		if p.Samples == 0 {
			return 0
		}
		return 100 * float64(n) / float64(p.Samples)
	}
	// Per process life: a pid reused within the window is listed once per
	// program that ran under it.
	type procKey struct {
		pid  uint32
		name string
	}
	perPID := map[procKey]uint64{}
	self := map[string]uint64{}
	total := map[string]uint64{}
	names := map[*formats.Frame]string{}
	seen := map[string]bool{}
	for _, st := range p.Stacks {
		perPID[procKey{st.PID, p.StackProcess(&st)}] += st.Count
		if len(st.Frames) == 0 {
			continue
		}
		clear(seen)
		for i, f := range st.Frames {
			n, ok := names[f]
			if !ok {
				// Inlined or not, it is one function's time.
				n = FunctionName(f)
				names[f] = n
			}
			if i == 0 {
				self[n] += st.Count
			}
			if !seen[n] {
				seen[n] = true
				total[n] += st.Count
			}
		}
	}
	for k, n := range perPID {
		s.Processes = append(s.Processes, CPUProcess{PID: k.pid, Comm: k.name, Samples: n, Pct: pct(n)})
	}
	sort.Slice(s.Processes, func(i, j int) bool {
		a, b := s.Processes[i], s.Processes[j]
		if a.Samples != b.Samples {
			return a.Samples > b.Samples
		}
		if a.PID != b.PID {
			return a.PID < b.PID
		}
		return a.Comm < b.Comm
	})
	all := make([]CPUFunction, 0, len(total))
	for n, t := range total {
		all = append(all, CPUFunction{Name: n, Kernel: strings.HasSuffix(n, KernelSuffix), SelfSamples: self[n], SelfPct: pct(self[n]), TotalSamples: t, TotalPct: pct(t)})
	}
	keep := map[string]bool{}
	sortFunctions(all, func(a, b CPUFunction) bool { return a.TotalSamples > b.TotalSamples })
	for i := 0; i < len(all) && i < topFunctionsKept; i++ {
		keep[all[i].Name] = true
	}
	sortFunctions(all, func(a, b CPUFunction) bool { return a.SelfSamples > b.SelfSamples })
	for i, f := range all {
		if i < topFunctionsKept || keep[f.Name] {
			s.Functions = append(s.Functions, f)
		}
	}
	return s
}

// sortFunctions orders by less, then by the other count, then by name, so
// the order is stable across runs.
func sortFunctions(fs []CPUFunction, less func(a, b CPUFunction) bool) {
	sort.Slice(fs, func(i, j int) bool {
		a, b := fs[i], fs[j]
		if less(a, b) != less(b, a) {
			return less(a, b)
		}
		if a.SelfSamples != b.SelfSamples {
			return a.SelfSamples > b.SelfSamples
		}
		if a.TotalSamples != b.TotalSamples {
			return a.TotalSamples > b.TotalSamples
		}
		return a.Name < b.Name
	})
}
