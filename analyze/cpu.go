package analyze

import (
	"fmt"
	"sort"
	"time"

	"github.com/bpfsnap/bpfsnap/formats"
)

// CPUProfile is the archive's CPU samples, filtered and aggregated by
// (process, stack), with the stacks' frames resolved. It is
// what folded stacks, flame graphs, pprof and the cpu summary are made from.
type CPUProfile struct {
	// Samples is the number of samples kept by the filter, with or without
	// a stack.
	Samples uint64
	// NoStack counts kept samples whose stack could not be captured
	// (stack_id 0) or is missing from the stacks table.
	NoStack uint64
	// Truncated counts stacks cut at maxStackDepth or referencing frames
	// missing from the frames table.
	Truncated uint64
	// PeriodNs is the sampling period from the probe's "freq" detail, 0
	// when the archive does not say.
	PeriodNs int64
	// Timeline counts the kept samples per Step of the window, for a
	// samples-over-time chart and for choosing --from/--to.
	Timeline Timeline
	// Stacks are the aggregated stacks, most samples first.
	Stacks []CPUStack
	// Names holds each pid's process name: its comm in the processes
	// table (the program it last ran), else its most frequent thread name
	// in the samples.
	Names map[uint32]string
	// Slices are the profiles of Options.Slices equal parts of the
	// filtered window, oldest first (none unless asked for).
	Slices []CPUSlice
	// Unwind is how the capture walked user stacks (nil: not recorded).
	Unwind *CPUUnwind
}

// CPUSlice is the part of a profile whose samples fall in [From, To),
// offsets from the window start. Its profile shares the frames and the
// names of the whole; it has no timeline and no slices of its own.
type CPUSlice struct {
	From, To time.Duration
	Profile  *CPUProfile
}

// sliceBounds divides the filtered part of the window into n equal slices
// and returns their start and length, as offsets in ns from the window
// start; step is 0 when there is nothing to divide.
func sliceBounds(m *formats.Manifest, f Filter, n int) (from, step time.Duration) {
	win := m.Window.Duration()
	from, to := f.From, f.To
	if to == 0 || to > win {
		to = win
	}
	if n <= 0 || to <= from {
		return from, 0
	}
	return from, (to - from) / time.Duration(n)
}

// ProcessName is the name the profile shows for pid.
func (p *CPUProfile) ProcessName(pid uint32) string {
	if n := p.Names[pid]; n != "" {
		return n
	}
	return fmt.Sprintf("pid %d", pid)
}

// StackProcess is the process name of one aggregated stack: the program
// of the life its samples came from when the pid was reused in the window,
// else ProcessName.
func (p *CPUProfile) StackProcess(s *CPUStack) string {
	if s.Process != "" {
		return s.Process
	}
	return p.ProcessName(s.PID)
}

// CPUStack is one distinct (pid life, stack) with its sample count.
type CPUStack struct {
	PID   uint32
	Count uint64
	// Process names the life of a pid that was reused within the window
	// (its comm then); empty for a pid with one life (see ProcessName).
	Process string
	// Frames are leaf first, kernel frames before user frames; nil when
	// the sample had no stack.
	Frames []*formats.Frame
}

// cpuSampleColumns are the columns of formats.CPUSample the aggregation
// needs: reading only them skips decoding the others, the thread name
// included (most of the time on a million samples).
type cpuSampleColumns struct {
	TimeNs  uint64 `parquet:"time_ns"`
	PID     uint32 `parquet:"pid"`
	StackID uint64 `parquet:"stack_id"`
}

// cpuSampleComm is read in a second pass only for processes the processes
// table does not name.
type cpuSampleComm struct {
	TimeNs uint64 `parquet:"time_ns"`
	PID    uint32 `parquet:"pid"`
	Comm   string `parquet:"comm,dict"`
}

type sampleKey struct {
	pid   uint32
	life  int32 // index in the pid's lives when it was reused; 0 otherwise
	stack uint64
}

// pidLives tells the lives of reused pids apart by time: a sample belongs
// to the last life that began at or before it.
type pidLives map[uint32][]Process

func newPIDLives(procs []Process) pidLives {
	count := map[uint32]int{}
	for _, p := range procs {
		count[p.PID]++
	}
	l := pidLives{}
	for _, p := range procs { // ordered by first sighting
		if count[p.PID] > 1 {
			l[p.PID] = append(l[p.PID], p)
		}
	}
	return l
}

func (l pidLives) life(pid uint32, t uint64) int32 {
	ls := l[pid]
	i := 0
	for j := 1; j < len(ls); j++ {
		if ls[j].FirstSeen <= t {
			i = j
		}
	}
	return int32(i)
}

// LoadCPU reads the cpu_samples, stacks and frames tables, keeping the
// samples that pass opts.Filter. Only the stacks and frames the kept
// samples reference are held in memory.
func LoadCPU(a *formats.Archive, opts Options) (*CPUProfile, error) {
	bound := opts.Filter.Bind(a.Manifest())
	var procs []Process
	if a.HasTable(formats.TableProcesses) {
		var err error
		if procs, err = Processes(a); err != nil {
			return nil, err
		}
	}
	lives := newPIDLives(procs)
	counts := map[sampleKey]uint64{}
	var total uint64
	tl := newTimeline(a.Manifest().Window, opts.Filter)
	sliceFrom, step := sliceBounds(a.Manifest(), opts.Filter, opts.Slices)
	var sliceCounts []map[sampleKey]uint64
	if step > 0 {
		sliceCounts = make([]map[sampleKey]uint64, opts.Slices)
		for i := range sliceCounts {
			sliceCounts[i] = map[sampleKey]uint64{}
		}
	}
	start := a.Manifest().Window.StartMonoNs
	err := formats.ReadTable(a, formats.TableCPUSamples, func(rows []cpuSampleColumns) error {
		for i := range rows {
			r := &rows[i]
			if !bound.Keep(r.PID, r.TimeNs) {
				continue
			}
			var life int32
			if lives[r.PID] != nil {
				life = lives.life(r.PID, r.TimeNs)
			}
			key := sampleKey{r.PID, life, r.StackID}
			counts[key]++
			total++
			tl.add(r.TimeNs)
			if sliceCounts != nil {
				// The filter kept only samples at or after its From;
				// with From 0 a sample stamped before the window start
				// belongs to the first slice. Slices end at whole steps,
				// so the last few ns of an uneven window belong to none.
				i := 0
				if r.TimeNs > start {
					i = int((time.Duration(r.TimeNs-start) - sliceFrom) / step)
				}
				if i >= 0 && i < len(sliceCounts) {
					sliceCounts[i][key]++
				}
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	ids := make([]uint64, 0, len(counts))
	for k := range counts {
		if k.stack != 0 {
			ids = append(ids, k.stack)
		}
	}
	stacks, err := ResolveStacks(a, ids, opts.DebugDir)
	if err != nil {
		return nil, err
	}
	p := buildCPUProfile(counts, stacks, lives)
	p.Samples = total
	p.Timeline = tl.Timeline
	p.PeriodNs = samplingPeriodNs(a.Manifest())
	p.Unwind = CPUUnwindOf(a.Manifest())
	if err := p.nameProcesses(a, bound, procs); err != nil {
		return nil, err
	}
	for i, sc := range sliceCounts {
		sp := buildCPUProfile(sc, stacks, lives)
		sp.Truncated = 0 // counted once, by the whole profile
		for _, n := range sc {
			sp.Samples += n
		}
		sp.PeriodNs, sp.Names = p.PeriodNs, p.Names
		from := sliceFrom + time.Duration(i)*step
		p.Slices = append(p.Slices, CPUSlice{From: from, To: from + step, Profile: sp})
	}
	return p, nil
}

// nameProcesses names every sampled pid: the comm of its processes-table
// record (the program it last ran), else, in a second pass over the
// samples, its most frequent thread name.
func (p *CPUProfile) nameProcesses(a *formats.Archive, bound Bound, procs []Process) error {
	for _, s := range p.Stacks {
		p.Names[s.PID] = ""
	}
	for _, pr := range procs {
		if _, sampled := p.Names[pr.PID]; sampled && pr.Comm != "" {
			// The latest life of a reused pid names the pid; each
			// stack carries its own life's name (CPUStack.Process).
			p.Names[pr.PID] = pr.Comm
		}
	}
	votes := map[uint32]map[string]uint64{}
	for pid, n := range p.Names {
		if n == "" {
			votes[pid] = map[string]uint64{}
		}
	}
	if len(votes) == 0 {
		return nil
	}
	err := formats.ReadTable(a, formats.TableCPUSamples, func(rows []cpuSampleComm) error {
		for i := range rows {
			if v := votes[rows[i].PID]; v != nil && bound.Keep(rows[i].PID, rows[i].TimeNs) {
				v[rows[i].Comm]++
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	for pid, v := range votes {
		best, bestN := "", uint64(0)
		for c, n := range v {
			if n > bestN || (n == bestN && c < best) {
				best, bestN = c, n
			}
		}
		p.Names[pid] = best
	}
	return nil
}

// buildCPUProfile joins aggregated sample counts with their stacks.
// Samples whose stack is missing from the archive count as NoStack.
func buildCPUProfile(counts map[sampleKey]uint64, stacks *Stacks, lives pidLives) *CPUProfile {
	p := &CPUProfile{Names: map[uint32]string{}, Truncated: stacks.Truncated}
	for k, n := range counts {
		st := CPUStack{PID: k.pid, Count: n}
		if ls := lives[k.pid]; ls != nil {
			st.Process = ls[k.life].Comm
		}
		fr, ok := stacks.Frames[k.stack]
		if k.stack == 0 || !ok {
			p.NoStack += n
		} else {
			st.Frames = fr
		}
		p.Stacks = append(p.Stacks, st)
	}
	sort.Slice(p.Stacks, func(i, j int) bool {
		a, b := &p.Stacks[i], &p.Stacks[j]
		if a.Count != b.Count {
			return a.Count > b.Count
		}
		if a.PID != b.PID {
			return a.PID < b.PID
		}
		if a.Process != b.Process {
			return a.Process < b.Process
		}
		return stackLess(a.Frames, b.Frames)
	})
	return p
}

// samplingPeriodNs reads the cpu probe set's "freq" detail (Hz).
func samplingPeriodNs(m *formats.Manifest) int64 {
	pr := m.Probe("cpu")
	if pr == nil {
		return 0
	}
	var hz int64
	if _, err := fmt.Sscanf(pr.Details["freq"], "%d", &hz); err != nil || hz <= 0 || hz > 1_000_000 {
		return 0
	}
	return int64(1e9) / hz
}

// Unresolved counts the distinct frames that still have no function name.
func (p *CPUProfile) Unresolved() int {
	seen := map[*formats.Frame]bool{}
	for _, s := range p.Stacks {
		for _, f := range s.Frames {
			if f.Function == "" {
				seen[f] = true
			}
		}
	}
	return len(seen)
}

// stackLess orders stacks by length, then frame by frame, so equal counts
// sort the same way every run.
func stackLess(a, b []*formats.Frame) bool {
	if len(a) != len(b) {
		return len(a) < len(b)
	}
	for i := range a {
		if a[i].FrameID != b[i].FrameID {
			return a[i].FrameID < b[i].FrameID
		}
	}
	return false
}
