package analyze

import (
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/bpfsnap/bpfsnap/formats"
)

// GrowthSummary is the `growth` section of analyze: which code made memory
// resident in the window (page faults and the other changes of a
// process's resident set, with their stacks), per process and per stack,
// and each process's RSS over the window. Where the mem section replays
// the C allocator's blocks still held, this one sees every runtime: it
// weighs the code that touched new memory, whoever allocated it.
type GrowthSummary struct {
	// SampleBytes is the capture's --growth-sample (0: every change was
	// recorded); with it, Bytes figures are estimates.
	SampleBytes uint64 `json:"sample_bytes"`
	Estimated   bool   `json:"estimated"`
	// Bytes is the anonymous and shared memory the kept processes made
	// resident (what grows a heap); FileBytes the file pages they mapped
	// in (code, mapped files), which the flame graph leaves out.
	Bytes     uint64 `json:"bytes"`
	FileBytes uint64 `json:"file_bytes"`
	// Events counts the recorded rows kept by the filter.
	Events    uint64          `json:"events"`
	Processes []GrowthProcess `json:"processes"`
	// Stacks are the stacks that made the most anonymous and shared
	// memory resident, largest first (stack: leaf first, kernel frames
	// first, as mem's stacks).
	Stacks []GrowthStack `json:"stacks"`

	folded []FoldedStack // every stack, for the flame graph
}

// GrowthProcess is one process's growth.
type GrowthProcess struct {
	PID     uint32 `json:"pid"`
	Process string `json:"process"`
	// Bytes (anonymous and shared) and FileBytes it made resident in the
	// analyzed part of the window, from the recorded rows.
	Bytes     uint64 `json:"bytes"`
	FileBytes uint64 `json:"file_bytes"`
	// ExactBytes is the kernel's exact count over the whole window
	// (anonymous and shared), whatever the sampling, the program before
	// an exec included; 0 when the archive has none or the analysis is of
	// a slice of the window (--from/--to).
	ExactBytes uint64 `json:"exact_bytes,omitempty"`
	// RSS is its resident set over the window, read from /proc.
	RSS []RSSPoint `json:"rss"`
	// RSSStartBytes and RSSEndBytes are its first and last readings in
	// the analyzed part of the window, RSSPeakBytes the largest.
	RSSStartBytes uint64 `json:"rss_start_bytes"`
	RSSEndBytes   uint64 `json:"rss_end_bytes"`
	RSSPeakBytes  uint64 `json:"rss_peak_bytes"`
	// VMDataGrowthBytes is how much its private writable mappings (brk
	// and mmap growth, resident or not) grew between the first and the
	// last reading (negative when they shrank).
	VMDataGrowthBytes int64 `json:"vm_data_growth_bytes"`
}

// RSSPoint is one reading of a process's memory.
type RSSPoint struct {
	// T is seconds from the window start.
	T          float64 `json:"t_s"`
	Bytes      uint64  `json:"bytes"`
	AnonBytes  uint64  `json:"anon_bytes"`
	VMDataByte uint64  `json:"vm_data_bytes"`
}

// GrowthStack is one (process, stack) and what it made resident.
type GrowthStack struct {
	PID     uint32   `json:"pid"`
	Process string   `json:"process"`
	Stack   []string `json:"stack"`
	Bytes   uint64   `json:"bytes"`
	// Events counts the recorded rows (not weighted).
	Events uint64 `json:"events"`
}

// maxGrowthStacks bounds the stacks listed in the summary; the flame graph
// has them all.
const maxGrowthStacks = 50

type growthKey struct {
	pid   uint32
	stack uint64
}

// growthColumns are the columns of formats.GrowthEvent the analysis reads.
type growthColumns struct {
	TimeNs  uint64  `parquet:"time_ns"`
	PID     uint32  `parquet:"pid"`
	Kind    string  `parquet:"kind,dict"`
	Bytes   uint64  `parquet:"bytes"`
	Weight  float64 `parquet:"weight"`
	StackID uint64  `parquet:"stack_id"`
}

// Growth analyzes the growth probe set's tables; nil when the archive has
// none.
func Growth(a *formats.Archive, opts Options, procs []Process) (*GrowthSummary, error) {
	if !a.HasTable(formats.TableGrowthEvents) && !a.HasTable(formats.TableRSSSamples) {
		return nil, nil
	}
	m := a.Manifest()
	b := opts.Filter.Bind(m)
	s := &GrowthSummary{}
	if p := m.Probe("growth"); p != nil {
		s.SampleBytes, _ = strconv.ParseUint(p.Details["sample_bytes"], 10, 64)
	}
	s.Estimated = s.SampleBytes > 0
	names := processNames(procs)
	byPID := map[uint32]*GrowthProcess{}
	proc := func(pid uint32) *GrowthProcess {
		p := byPID[pid]
		if p == nil {
			p = &GrowthProcess{PID: pid, Process: names[pid]}
			byPID[pid] = p
		}
		return p
	}
	// An exec replaces the process's memory: what the program before it
	// made resident is gone (the held child of `capture -- COMMAND` is
	// bpfsnap itself until it execs), so a pid's rows start at its last
	// exec.
	execAt := map[uint32]uint64{}
	if a.HasTable(formats.TableProcesses) {
		err := formats.ReadTable(a, formats.TableProcesses, func(rows []formats.ProcessEvent) error {
			for _, p := range rows {
				if p.Kind == formats.ProcessExec {
					execAt[p.PID] = max(execAt[p.PID], p.TimeNs)
				}
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	keep := func(pid uint32, t uint64) bool { return b.Keep(pid, t) && t >= execAt[pid] }
	type acc struct{ bytes, events float64 }
	stacks := map[growthKey]*acc{}
	var bytes, fileBytes float64
	perPID := map[uint32][2]float64{}
	if a.HasTable(formats.TableGrowthEvents) {
		err := formats.ReadTable(a, formats.TableGrowthEvents, func(rows []growthColumns) error {
			for i := range rows {
				r := &rows[i]
				if !keep(r.PID, r.TimeNs) {
					continue
				}
				s.Events++
				w := float64(r.Bytes) * max(r.Weight, 1)
				pp := perPID[r.PID]
				if r.Kind == formats.GrowthFile {
					fileBytes += w
					pp[1] += w
					perPID[r.PID] = pp
					continue
				}
				bytes += w
				pp[0] += w
				perPID[r.PID] = pp
				k := growthKey{r.PID, r.StackID}
				if stacks[k] == nil {
					stacks[k] = &acc{}
				}
				stacks[k].bytes += w
				stacks[k].events++
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	s.Bytes, s.FileBytes = uint64(bytes), uint64(fileBytes)
	for pid, v := range perPID {
		p := proc(pid)
		p.Bytes, p.FileBytes = uint64(v[0]), uint64(v[1])
	}
	// The totals span the whole window: a slice of it has none.
	if a.HasTable(formats.TableGrowthTotals) && opts.Filter.From == 0 && opts.Filter.To == 0 {
		err := formats.ReadTable(a, formats.TableGrowthTotals, func(rows []formats.GrowthTotal) error {
			for _, r := range rows {
				if b.Keep(r.PID, b.from) {
					proc(r.PID).ExactBytes += r.AnonBytes + r.ShmemBytes
				}
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	if a.HasTable(formats.TableRSSSamples) {
		start := m.Window.StartMonoNs
		err := formats.ReadTable(a, formats.TableRSSSamples, func(rows []formats.RSSSample) error {
			for _, r := range rows {
				if !keep(r.PID, r.TimeNs) {
					continue
				}
				p := proc(r.PID)
				t := 0.0
				if r.TimeNs > start {
					t = float64(r.TimeNs-start) / 1e9
				}
				p.RSS = append(p.RSS, RSSPoint{T: t, Bytes: r.RSS, AnonBytes: r.RSSAnon, VMDataByte: r.VMData})
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	for _, p := range byPID {
		sort.Slice(p.RSS, func(i, j int) bool { return p.RSS[i].T < p.RSS[j].T })
		if n := len(p.RSS); n > 0 {
			p.RSSStartBytes, p.RSSEndBytes = p.RSS[0].Bytes, p.RSS[n-1].Bytes
			p.VMDataGrowthBytes = int64(p.RSS[n-1].VMDataByte) - int64(p.RSS[0].VMDataByte)
			for _, pt := range p.RSS {
				p.RSSPeakBytes = max(p.RSSPeakBytes, pt.Bytes)
			}
		}
		s.Processes = append(s.Processes, *p)
	}
	sort.Slice(s.Processes, func(i, j int) bool {
		a, b := &s.Processes[i], &s.Processes[j]
		if a.Bytes != b.Bytes {
			return a.Bytes > b.Bytes
		}
		if a.RSSPeakBytes != b.RSSPeakBytes {
			return a.RSSPeakBytes > b.RSSPeakBytes
		}
		return a.PID < b.PID
	})

	ids := make([]uint64, 0, len(stacks))
	for k := range stacks {
		if k.stack != 0 {
			ids = append(ids, k.stack)
		}
	}
	resolved, err := ResolveStacks(a, ids, opts.DebugDir)
	if err != nil {
		return nil, err
	}
	for k, v := range stacks {
		name := names[k.pid]
		if name == "" {
			name = fmt.Sprintf("pid %d", k.pid)
		}
		frames := resolved.Frames[k.stack]
		st := GrowthStack{PID: k.pid, Process: name, Bytes: uint64(v.bytes), Events: uint64(v.events)}
		for _, f := range frames {
			st.Stack = append(st.Stack, FrameName(f))
		}
		s.Stacks = append(s.Stacks, st)
		s.folded = append(s.folded, FoldedStack{Frames: FoldFrames(name, frames), Count: st.Bytes})
	}
	sort.Slice(s.Stacks, func(i, j int) bool {
		a, b := &s.Stacks[i], &s.Stacks[j]
		if a.Bytes != b.Bytes {
			return a.Bytes > b.Bytes
		}
		if a.PID != b.PID {
			return a.PID < b.PID
		}
		return len(a.Stack) < len(b.Stack)
	})
	if len(s.Stacks) > maxGrowthStacks {
		s.Stacks = s.Stacks[:maxGrowthStacks]
	}
	return s, nil
}

// RequireGrowth returns the summary's growth section, or an error naming
// the archive when it has none or the filter kept nothing of it.
func (s *Summary) RequireGrowth() (*GrowthSummary, error) {
	g := s.Growth
	if g != nil && (g.Events > 0 || len(g.Processes) > 0) {
		return g, nil
	}
	if g != nil && s.filter.Narrowed() {
		return nil, fmt.Errorf("%s: no memory growth matches %s", s.Archive, s.filter.Describe())
	}
	return nil, fmt.Errorf("%s has no memory growth data (capture with -p growth)", s.Archive)
}

// GrowthFolded returns the growth section's stacks as folded lines weighted
// by the anonymous and shared bytes each made resident, root (the
// process) first: the growth flame graph.
func GrowthFolded(s *GrowthSummary) []FoldedStack {
	if s == nil {
		return nil
	}
	return mergeFolded(s.folded)
}

// mergeFolded adds up lines with the same frames (two stacks can name the
// same: frames of different addresses in one function) and sorts them by
// their text, as folded output is.
func mergeFolded(lines []FoldedStack) []FoldedStack {
	agg := map[string]*FoldedStack{}
	for _, l := range lines {
		k := strings.Join(l.Frames, ";")
		if a := agg[k]; a != nil {
			a.Count += l.Count
		} else {
			agg[k] = &FoldedStack{Frames: l.Frames, Count: l.Count}
		}
	}
	keys := make([]string, 0, len(agg))
	for k := range agg {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	out := make([]FoldedStack, 0, len(keys))
	for _, k := range keys {
		if agg[k].Count > 0 {
			out = append(out, *agg[k])
		}
	}
	return out
}
