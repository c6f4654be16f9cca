package analyze

import (
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/bpfsnap/bpfsnap/formats"
	"github.com/bpfsnap/bpfsnap/internal/symbolize"
)

// CPUSummary is the `cpu` section of analyze.
type CPUSummary struct {
	Samples   int64         `json:"samples"`
	FreqHz    uint64        `json:"freq_hz,omitempty"`
	Processes []CPUProcess  `json:"processes"`
	Functions []CPUFunction `json:"functions"`
	// NoStack counts samples whose stack could not be captured.
	NoStack int64 `json:"no_stack_samples,omitempty"`
}

// CPUProcess is one process's share of the samples.
type CPUProcess struct {
	PID     uint32  `json:"pid"`
	Process string  `json:"process"`
	Samples int64   `json:"samples"`
	Pct     float64 `json:"pct"`
}

// CPUFunction is one function's self and total (inclusive) samples.
type CPUFunction struct {
	Name         string  `json:"name"`
	Kernel       bool    `json:"kernel,omitempty"`
	SelfSamples  int64   `json:"self_samples"`
	SelfPct      float64 `json:"self_pct"`
	TotalSamples int64   `json:"total_samples"`
	TotalPct     float64 `json:"total_pct"`
}

// maxFunctions bounds the functions table of the summary.
const maxFunctions = 50

// StackProfile is a set of weighted stacks with resolved frames: the input
// of folded output, flame graphs and pprof. CPU samples and outstanding
// memory are both StackProfiles.
type StackProfile struct {
	// Unit of Value: "samples" or "bytes".
	Unit    string
	Entries []StackEntry
	Frames  map[uint64]formats.Frame
	Total   int64
}

// StackEntry is one (process, stack) with its weight.
type StackEntry struct {
	PID     uint32
	Process string
	// FrameIDs leaf first, as stored.
	FrameIDs []uint64
	Value    int64
	Count    int64
}

// LoadStacks reads the stacks and frames tables, resolving frames the
// capture left unresolved from debugDir when given.
func LoadStacks(a *formats.Archive, debugDir string) (map[uint64][]uint64, map[uint64]formats.Frame, error) {
	stacks := map[uint64][]uint64{}
	err := formats.ReadTable(a, formats.TableStacks, func(rows []formats.Stack) error {
		for _, r := range rows {
			stacks[r.StackID] = append([]uint64(nil), r.FrameIDs...)
		}
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	frames := map[uint64]formats.Frame{}
	err = formats.ReadTable(a, formats.TableFrames, func(rows []formats.Frame) error {
		for _, r := range rows {
			frames[r.FrameID] = r
		}
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	if debugDir != "" {
		resolveFromDebugDir(frames, debugDir)
	}
	return stacks, frames, nil
}

func resolveFromDebugDir(frames map[uint64]formats.Frame, dir string) {
	opened := map[string]*symbolize.Binary{}
	for id, f := range frames {
		if f.Kernel || f.Function != "" || f.BuildID == "" {
			continue
		}
		b, ok := opened[f.BuildID]
		if !ok {
			if path := symbolize.FindDebugFile(dir, f.BuildID); path != "" {
				b, _ = symbolize.OpenFile(path)
			}
			opened[f.BuildID] = b
		}
		if b == nil {
			continue
		}
		if loc, ok := b.Resolve(f.FileOffset); ok {
			f.Function, f.File, f.Line = loc.Function, loc.File, uint32(loc.Line)
			frames[id] = f
		}
	}
}

// CPUProfile aggregates the archive's CPU samples that pass the filter.
func CPUProfile(a *formats.Archive, opts Options, procs []Process) (*StackProfile, int64, error) {
	if !a.HasTable(formats.TableCPUSamples) {
		return nil, 0, nil
	}
	stacks, frames, err := LoadStacks(a, opts.DebugDir)
	if err != nil {
		return nil, 0, err
	}
	b := opts.Filter.Bind(a.Manifest())
	type key struct {
		pid   uint32
		stack uint64
	}
	counts := map[key]int64{}
	comms := map[uint32]string{}
	var noStack int64
	err = formats.ReadTable(a, formats.TableCPUSamples, func(rows []formats.CPUSample) error {
		for _, r := range rows {
			if !b.Keep(r.PID, r.TimeNs) {
				continue
			}
			if r.StackID == 0 {
				noStack++
			}
			counts[key{r.PID, r.StackID}]++
			if _, ok := comms[r.PID]; !ok {
				comms[r.PID] = r.Comm
			}
		}
		return nil
	})
	if err != nil {
		return nil, 0, err
	}
	names := processNames(procs)
	p := &StackProfile{Unit: "samples", Frames: frames}
	for k, n := range counts {
		name := names[k.pid]
		if name == "" {
			name = comms[k.pid]
		}
		p.Entries = append(p.Entries, StackEntry{PID: k.pid, Process: name, FrameIDs: stacks[k.stack], Value: n, Count: n})
		p.Total += n
	}
	sortEntries(p.Entries)
	return p, noStack, nil
}

func sortEntries(es []StackEntry) {
	sort.Slice(es, func(i, j int) bool {
		if es[i].Value != es[j].Value {
			return es[i].Value > es[j].Value
		}
		if es[i].PID != es[j].PID {
			return es[i].PID < es[j].PID
		}
		return fmt.Sprint(es[i].FrameIDs) < fmt.Sprint(es[j].FrameIDs)
	})
}

// processNames maps pids to the name of their last program.
func processNames(procs []Process) map[uint32]string {
	out := map[uint32]string{}
	for _, p := range procs {
		if p.Comm != "" {
			out[p.PID] = p.Comm
		}
	}
	return out
}

// FrameName is how a frame is shown: its function, or module+offset when
// it could not be resolved, so unresolved frames still group by place.
func FrameName(f formats.Frame, ok bool) string {
	switch {
	case !ok:
		return "[unknown]"
	case f.Function != "":
		return f.Function
	case f.Kernel:
		return fmt.Sprintf("[kernel]+0x%x", f.Address)
	case f.Module != "" && f.BuildID != "" || strings.HasPrefix(f.Module, "/"):
		return fmt.Sprintf("%s+0x%x", baseName(f.Module), f.FileOffset)
	case f.Module != "":
		return f.Module
	}
	return "[unknown]"
}

func baseName(p string) string {
	if i := strings.LastIndexByte(p, '/'); i >= 0 {
		return p[i+1:]
	}
	return p
}

// SummarizeCPU computes the cpu section from a profile.
func SummarizeCPU(p *StackProfile, noStack int64, freq uint64) *CPUSummary {
	s := &CPUSummary{Samples: p.Total, FreqHz: freq, NoStack: noStack}
	byPID := map[uint32]*CPUProcess{}
	type fn struct {
		kernel      bool
		self, total int64
	}
	fns := map[string]*fn{}
	for _, e := range p.Entries {
		cp := byPID[e.PID]
		if cp == nil {
			cp = &CPUProcess{PID: e.PID, Process: e.Process}
			byPID[e.PID] = cp
		}
		cp.Samples += e.Value
		seen := map[string]bool{}
		for i, id := range e.FrameIDs {
			f, ok := p.Frames[id]
			name := FrameName(f, ok)
			st := fns[name]
			if st == nil {
				st = &fn{kernel: f.Kernel}
				fns[name] = st
			}
			if i == 0 {
				st.self += e.Value
			}
			if !seen[name] {
				seen[name] = true
				st.total += e.Value
			}
		}
	}
	pct := func(n int64) float64 {
		if p.Total == 0 {
			return 0
		}
		return round2(100 * float64(n) / float64(p.Total))
	}
	for _, cp := range byPID {
		cp.Pct = pct(cp.Samples)
		s.Processes = append(s.Processes, *cp)
	}
	sort.Slice(s.Processes, func(i, j int) bool {
		if s.Processes[i].Samples != s.Processes[j].Samples {
			return s.Processes[i].Samples > s.Processes[j].Samples
		}
		return s.Processes[i].PID < s.Processes[j].PID
	})
	for name, st := range fns {
		s.Functions = append(s.Functions, CPUFunction{Name: name, Kernel: st.kernel, SelfSamples: st.self, SelfPct: pct(st.self), TotalSamples: st.total, TotalPct: pct(st.total)})
	}
	sort.Slice(s.Functions, func(i, j int) bool {
		a, b := s.Functions[i], s.Functions[j]
		if a.SelfSamples != b.SelfSamples {
			return a.SelfSamples > b.SelfSamples
		}
		if a.TotalSamples != b.TotalSamples {
			return a.TotalSamples > b.TotalSamples
		}
		return a.Name < b.Name
	})
	if len(s.Functions) > maxFunctions {
		s.Functions = s.Functions[:maxFunctions]
	}
	return s
}

func round2(v float64) float64 {
	r, _ := strconv.ParseFloat(strconv.FormatFloat(v, 'f', 2, 64), 64)
	return r
}

// FoldedLine is one line of folded stacks.
type FoldedLine struct {
	Frames []string // root first: process, then outermost frame .. leaf
	Value  int64
}

// Folded turns a profile into folded stacks, root first, kernel frames
// marked "_[k]"; identical lines are merged.
func Folded(p *StackProfile) []FoldedLine {
	idx := map[string]int{}
	var out []FoldedLine
	for _, e := range p.Entries {
		frames := make([]string, 0, len(e.FrameIDs)+1)
		frames = append(frames, fmt.Sprintf("%s [%d]", e.Process, e.PID))
		for i := len(e.FrameIDs) - 1; i >= 0; i-- {
			f, ok := p.Frames[e.FrameIDs[i]]
			name := FrameName(f, ok)
			if ok && f.Kernel {
				name += "_[k]"
			}
			frames = append(frames, name)
		}
		key := strings.Join(frames, "\x00")
		if i, ok := idx[key]; ok {
			out[i].Value += e.Value
			continue
		}
		idx[key] = len(out)
		out = append(out, FoldedLine{Frames: frames, Value: e.Value})
	}
	return out
}

// FoldedText renders folded lines in the `frame;frame;leaf COUNT` format.
// Names are made safe for it: ';' would split a frame and a newline would
// split a line.
func FoldedText(lines []FoldedLine) string {
	var b strings.Builder
	for _, l := range lines {
		for i, f := range l.Frames {
			if i > 0 {
				b.WriteByte(';')
			}
			b.WriteString(foldedSafe(f))
		}
		fmt.Fprintf(&b, " %d\n", l.Value)
	}
	return b.String()
}

var foldedReplacer = strings.NewReplacer(";", ":", "\n", " ", "\r", " ")

func foldedSafe(s string) string { return foldedReplacer.Replace(s) }
