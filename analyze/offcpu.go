package analyze

import (
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/bpfsnap/bpfsnap/formats"
)

// OffCPUSummary is the `offcpu` section of analyze: where the captured
// threads waited off the CPU, blocked or in the run queue, by wait class,
// process and stack, and the CPU throttling of their cgroups.
type OffCPUSummary struct {
	// Intervals counts the off-CPU intervals kept by the filter (rows of
	// summed short intervals count each of them).
	Intervals  uint64  `json:"intervals"`
	Threads    int     `json:"threads"`
	BlockedMs  float64 `json:"blocked_ms"`
	RunqueueMs float64 `json:"runqueue_ms"`
	// IntervalsWithoutStack are blocked intervals whose stack was lost
	// (see drops); preempted and new threads have none by design.
	IntervalsWithoutStack uint64           `json:"intervals_without_stack"`
	Classes               []OffCPUClass    `json:"classes"`
	Processes             []OffCPUProcess  `json:"processes"`
	Stacks                []TimedStack     `json:"stacks"`
	Pods                  []PodCPUWait     `json:"pods,omitempty"`
	Cgroups               []CgroupThrottle `json:"cgroups,omitempty"`
}

// OffCPUClass is the time of one wait class.
type OffCPUClass struct {
	Class      string  `json:"class"`
	BlockedMs  float64 `json:"blocked_ms"`
	RunqueueMs float64 `json:"runqueue_ms"`
	Intervals  uint64  `json:"intervals"`
}

// OffCPUProcess is one process's off-CPU time.
type OffCPUProcess struct {
	PID        uint32             `json:"pid"`
	Comm       string             `json:"comm"`
	BlockedMs  float64            `json:"blocked_ms"`
	RunqueueMs float64            `json:"runqueue_ms"`
	ByClassMs  map[string]float64 `json:"blocked_by_class_ms"`
}

// TimedStack is a stack with the time spent in it: on-CPU (from samples)
// or blocked (with its wait class and the run-queue wait that followed).
type TimedStack struct {
	// Stack is frame names, leaf first (FrameName: kernel frames end in _[k]).
	Stack      []string `json:"stack"`
	Class      string   `json:"class,omitempty"`
	Ms         float64  `json:"ms"`
	RunqueueMs float64  `json:"runqueue_ms,omitempty"`
	PID        uint32   `json:"pid,omitempty"`
	Process    string   `json:"process,omitempty"`
}

// PodCPUWait is the run-queue delay of a pod's threads, and the throttling
// of its most throttled cgroup when it was throttled.
type PodCPUWait struct {
	Namespace  string          `json:"namespace"`
	Pod        string          `json:"pod"`
	RunqueueMs float64         `json:"runqueue_ms"`
	BlockedMs  float64         `json:"blocked_ms"`
	Throttling *CgroupThrottle `json:"throttling,omitempty"`
}

// CgroupThrottle is one cgroup's CPU limit and its throttling during the
// window (cpu.stat at the end minus at the start).
type CgroupThrottle struct {
	Version uint32 `json:"version"`
	Path    string `json:"path"`
	// QuotaCPUs is the limit in CPUs (quota / period), 0 without one.
	QuotaCPUs        float64 `json:"quota_cpus,omitempty"`
	Periods          uint64  `json:"periods"`
	ThrottledPeriods uint64  `json:"throttled_periods"`
	ThrottledMs      float64 `json:"throttled_ms"`
	// ThrottledPct is the share of periods that were throttled.
	ThrottledPct float64  `json:"throttled_pct"`
	PIDs         []uint32 `json:"pids"`
	// RunqueueMs is the run-queue wait of the threads of those processes.
	RunqueueMs float64 `json:"runqueue_ms"`
	// Partial: read at one end of the window only (created or removed
	// during it); the counters are then its whole life's.
	Partial bool `json:"partial,omitempty"`
}

// OffCPUProfile returns the filtered off-CPU profile the summary was made
// from (with the CPU profile's time slices when Options.Slices asked for
// them), nil when the archive has no off-CPU intervals.
func (s *Summary) OffCPUProfile() *OffCPUProfile { return s.offCPUProfile }

// RequireOffCPU returns the summary's off-CPU profile, or an error naming
// the archive when it has none or the filter kept nothing.
func (s *Summary) RequireOffCPU() (*OffCPUProfile, error) {
	p := s.offCPUProfile
	if p != nil && len(p.Stacks) > 0 {
		return p, nil
	}
	if p != nil && s.filter.Narrowed() {
		return nil, fmt.Errorf("%s: no off-CPU intervals match %s", s.Archive, s.filter.Describe())
	}
	return nil, fmt.Errorf("%s has no off-CPU intervals (capture with -p offcpu)", s.Archive)
}

// OffCPUProfile is the off-CPU time aggregated by (process, wait class,
// stack), for flame graphs; with Options.Slices, also per time slice (the
// CPU profile's slices).
type OffCPUProfile struct {
	Stacks     []OffCPUStack
	BlockedNs  float64
	RunqueueNs float64
	Slices     []OffCPUSlice
}

// OffCPUStack is one (process, class, stack) with its time.
type OffCPUStack struct {
	PID     uint32
	Process string
	Class   string
	// Frames are leaf first; nil for preempted and new threads.
	Frames     []*formats.Frame
	BlockedNs  float64
	RunqueueNs float64
}

// OffCPUSlice is the profile of the part of the window [From, To).
type OffCPUSlice struct {
	From, To time.Duration
	Profile  *OffCPUProfile
}

// offRow is an offcpu_intervals row kept for the analysis.
type offRow struct {
	start, end    uint64
	blocked, runq uint64
	stack         uint64
	pid, tid      uint32
	count         uint32
	class         string
}

// overlapNs is the length of [a, b) ∩ [lo, hi).
func overlapNs(a, b, lo, hi uint64) float64 {
	a, b = max(a, lo), min(b, hi)
	if b <= a {
		return 0
	}
	return float64(b - a)
}

// clip returns the blocked and run-queue ns of r inside [lo, hi). A row
// of one interval is exact: blocked first, then the run queue. A row of
// summed short intervals is spread evenly over its span.
func (r *offRow) clip(lo, hi uint64) (blocked, runq float64) {
	if hi <= r.start || lo >= r.end {
		if r.start == r.end && r.start >= lo && r.start < hi {
			return float64(r.blocked), float64(r.runq)
		}
		return 0, 0
	}
	if r.count <= 1 {
		mid := min(r.start+r.blocked, r.end)
		return overlapNs(r.start, mid, lo, hi), overlapNs(mid, r.end, lo, hi)
	}
	f := overlapNs(r.start, r.end, lo, hi) / float64(r.end-r.start)
	return f * float64(r.blocked), f * float64(r.runq)
}

// offIndex holds every kept row by thread, for the time split of requests.
type offIndex struct {
	// exact rows of a thread never overlap: sorted by start, they are
	// sorted by end too. Summed rows span at most maxSpan.
	exact   map[uint32][]offRow
	summed  map[uint32][]offRow
	maxSpan map[uint32]uint64
	frames  map[uint64][]*formats.Frame
	names   map[uint32]string
}

// offCPUData is what the offcpu analysis leaves for others: the summary's
// profile and the index the HTTP time split reads.
type offCPUData struct {
	profile *OffCPUProfile
	index   *offIndex
	// throttles are the cgroups that were throttled, for endpoints.
	throttles []CgroupThrottle
}

// OffCPU computes the offcpu section, or nil when the archive has none.
func OffCPU(a *formats.Archive, opts Options, procs []Process) (*OffCPUSummary, *offCPUData, error) {
	if !a.HasTable(formats.TableOffCPU) {
		return nil, nil, nil
	}
	m := a.Manifest()
	b := opts.Filter.Bind(m)
	var rows []formats.OffCPUInterval
	ids := map[uint64]bool{}
	err := formats.ReadTable(a, formats.TableOffCPU, func(batch []formats.OffCPUInterval) error {
		for _, r := range batch {
			if b.pids != nil && !b.pids[r.PID] {
				continue
			}
			if r.EndNs < r.StartNs || r.EndNs <= b.from || r.StartNs >= b.to {
				continue
			}
			rows = append(rows, r)
			if r.StackID != 0 {
				ids[r.StackID] = true
			}
		}
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	list := make([]uint64, 0, len(ids))
	for id := range ids {
		list = append(list, id)
	}
	stacks, err := ResolveStacks(a, list, opts.DebugDir)
	if err != nil {
		return nil, nil, err
	}
	classOf := map[uint64]string{}
	for id, fr := range stacks.Frames {
		classOf[id] = stackClass(fr)
	}
	amd64 := m.Arch == "amd64" || m.Arch == ""
	idx := &offIndex{exact: map[uint32][]offRow{}, summed: map[uint32][]offRow{}, maxSpan: map[uint32]uint64{},
		frames: stacks.Frames, names: processNames(procs)}
	s := &OffCPUSummary{Classes: []OffCPUClass{}, Processes: []OffCPUProcess{}, Stacks: []TimedStack{}}
	prof := newOffProfile()
	sliceFrom, step := sliceBounds(m, opts.Filter, opts.Slices)
	var slices []*offProfileBuilder
	for i := 0; step > 0 && i < opts.Slices; i++ {
		slices = append(slices, newOffProfile())
	}
	threads := map[uint32]bool{}
	perPID := map[uint32]*[2]float64{} // blocked, run queue ns
	lo, hi := b.from, b.to
	for i := range rows {
		r := &rows[i]
		row := offRow{start: r.StartNs, end: r.EndNs, blocked: r.BlockedNs, runq: r.RunqueueNs, stack: r.StackID,
			pid: r.PID, tid: r.TID, count: max(r.Count, 1), class: waitClass(r, classOf[r.StackID], amd64)}
		if r.StackID != 0 && stacks.Frames[r.StackID] == nil || r.StackID == 0 && row.blocked > 0 && row.class != WaitPreempted && row.class != WaitNewThread {
			s.IntervalsWithoutStack += uint64(row.count)
		}
		blocked, runq := row.clip(lo, hi)
		s.Intervals += uint64(row.count)
		threads[r.TID] = true
		prof.add(&row, blocked, runq)
		if perPID[row.pid] == nil {
			perPID[row.pid] = new([2]float64)
		}
		perPID[row.pid][0] += blocked
		perPID[row.pid][1] += runq
		for k, sp := range slices {
			from := m.Window.StartMonoNs + uint64(sliceFrom) + uint64(k)*uint64(step)
			if bl, rq := row.clip(max(from, lo), min(from+uint64(step), hi)); bl > 0 || rq > 0 {
				sp.add(&row, bl, rq)
			}
		}
		if row.count > 1 {
			idx.summed[row.tid] = append(idx.summed[row.tid], row)
			idx.maxSpan[row.tid] = max(idx.maxSpan[row.tid], row.end-row.start)
		} else {
			idx.exact[row.tid] = append(idx.exact[row.tid], row)
		}
	}
	for _, m := range []map[uint32][]offRow{idx.exact, idx.summed} {
		for _, rs := range m {
			sort.Slice(rs, func(i, j int) bool { return rs[i].start < rs[j].start })
		}
	}
	s.Threads = len(threads)
	p := prof.build(stacks.Frames, idx.names)
	for k, sp := range slices {
		from := sliceFrom + time.Duration(k)*step
		p.Slices = append(p.Slices, OffCPUSlice{From: from, To: from + step, Profile: sp.build(stacks.Frames, idx.names)})
	}
	s.summarize(p)
	s.countClasses(idx)
	data := &offCPUData{profile: p, index: idx}
	if a.HasTable(formats.TableCgroupCPU) {
		if err := s.throttling(a, perPID, data); err != nil {
			return nil, nil, err
		}
	}
	s.pods(perPID, procs)
	return s, data, nil
}

// offProfileBuilder sums time per (pid, class, stack).
type offProfileBuilder struct {
	sums map[offKey]*[2]float64
}

type offKey struct {
	pid   uint32
	class string
	stack uint64
}

func newOffProfile() *offProfileBuilder { return &offProfileBuilder{sums: map[offKey]*[2]float64{}} }

func (b *offProfileBuilder) add(r *offRow, blocked, runq float64) {
	k := offKey{r.pid, r.class, r.stack}
	v := b.sums[k]
	if v == nil {
		v = new([2]float64)
		b.sums[k] = v
	}
	v[0] += blocked
	v[1] += runq
}

func (b *offProfileBuilder) build(frames map[uint64][]*formats.Frame, names map[uint32]string) *OffCPUProfile {
	p := &OffCPUProfile{}
	for k, v := range b.sums {
		if v[0] == 0 && v[1] == 0 {
			continue
		}
		name := names[k.pid]
		if name == "" {
			name = fmt.Sprintf("pid %d", k.pid)
		}
		p.Stacks = append(p.Stacks, OffCPUStack{PID: k.pid, Process: name, Class: k.class, Frames: frames[k.stack], BlockedNs: v[0], RunqueueNs: v[1]})
		p.BlockedNs += v[0]
		p.RunqueueNs += v[1]
	}
	sort.Slice(p.Stacks, func(i, j int) bool {
		a, b := &p.Stacks[i], &p.Stacks[j]
		if a.BlockedNs+a.RunqueueNs != b.BlockedNs+b.RunqueueNs {
			return a.BlockedNs+a.RunqueueNs > b.BlockedNs+b.RunqueueNs
		}
		if a.PID != b.PID {
			return a.PID < b.PID
		}
		if a.Class != b.Class {
			return a.Class < b.Class
		}
		return stackLess(a.Frames, b.Frames)
	})
	return p
}

// maxSummaryStacks bounds the stacks listed in the summary.
const maxSummaryStacks = 30

func (s *OffCPUSummary) summarize(p *OffCPUProfile) {
	s.BlockedMs, s.RunqueueMs = p.BlockedNs/1e6, p.RunqueueNs/1e6
	classes := map[string]*OffCPUClass{}
	procs := map[uint32]*OffCPUProcess{}
	for _, st := range p.Stacks {
		c := classes[st.Class]
		if c == nil {
			c = &OffCPUClass{Class: st.Class}
			classes[st.Class] = c
		}
		c.BlockedMs += st.BlockedNs / 1e6
		c.RunqueueMs += st.RunqueueNs / 1e6
		pr := procs[st.PID]
		if pr == nil {
			pr = &OffCPUProcess{PID: st.PID, Comm: st.Process, ByClassMs: map[string]float64{}}
			procs[st.PID] = pr
		}
		pr.BlockedMs += st.BlockedNs / 1e6
		pr.RunqueueMs += st.RunqueueNs / 1e6
		if st.BlockedNs > 0 {
			pr.ByClassMs[st.Class] += st.BlockedNs / 1e6
		}
		if st.BlockedNs > 0 && len(s.Stacks) < maxSummaryStacks && len(st.Frames) > 0 {
			s.Stacks = append(s.Stacks, TimedStack{Stack: stackNames(st.Frames), Class: st.Class, Ms: st.BlockedNs / 1e6,
				RunqueueMs: st.RunqueueNs / 1e6, PID: st.PID, Process: st.Process})
		}
	}
	sort.Slice(s.Stacks, func(i, j int) bool { return s.Stacks[i].Ms > s.Stacks[j].Ms })
	for _, name := range WaitClasses {
		if c := classes[name]; c != nil {
			s.Classes = append(s.Classes, *c)
		}
	}
	for _, pr := range procs {
		s.Processes = append(s.Processes, *pr)
	}
	sort.Slice(s.Processes, func(i, j int) bool {
		a, b := s.Processes[i], s.Processes[j]
		if a.BlockedMs+a.RunqueueMs != b.BlockedMs+b.RunqueueMs {
			return a.BlockedMs+a.RunqueueMs > b.BlockedMs+b.RunqueueMs
		}
		return a.PID < b.PID
	})
}

// classCounts fills the intervals per class (a second pass would be
// needed otherwise: profiles sum time, not counts).
func (s *OffCPUSummary) countClasses(idx *offIndex) {
	n := map[string]uint64{}
	for _, m := range []map[uint32][]offRow{idx.exact, idx.summed} {
		for _, rs := range m {
			for _, r := range rs {
				n[r.class] += uint64(r.count)
			}
		}
	}
	for i := range s.Classes {
		s.Classes[i].Intervals = n[s.Classes[i].Class]
	}
}

// schedulerDepth bounds where __schedule may sit in a stack taken at
// sched_switch: below it are only the probe's frames.
const schedulerDepth = 8

// offFrames drops the frames of the probe itself from the leaf of a stack
// taken at sched_switch: the BPF program (its JIT code has no symbol, or
// the one before it), the tracepoint's call into it, and __schedule, which
// every off-CPU stack has. The leaf is then schedule() or its caller
// (preempt_schedule, io_schedule, ...), where the thread chose to wait.
func offFrames(frames []*formats.Frame) []*formats.Frame {
	for i := 0; i < len(frames) && i < schedulerDepth; i++ {
		if !frames[i].Kernel {
			break
		}
		if frames[i].Function == "__schedule" {
			return frames[i+1:]
		}
	}
	return frames
}

// stackNames are a stack's frame names, leaf first, without the probe's.
func stackNames(frames []*formats.Frame) []string {
	frames = offFrames(frames)
	out := make([]string, len(frames))
	for i, f := range frames {
		out[i] = FrameName(f)
	}
	return out
}

// Folded is the profile as folded stacks weighted in microseconds:
// "process;[class];root;...;leaf" for the blocked time and the same with a
// last "[run queue]" frame for the run-queue wait that followed (preempted
// and new threads have only that).
func (p *OffCPUProfile) Folded() []FoldedStack {
	agg := map[string]*FoldedStack{}
	add := func(frames []string, ns float64) {
		us := uint64(ns/1e3 + 0.5)
		if us == 0 {
			return
		}
		k := strings.Join(frames, ";")
		if f := agg[k]; f != nil {
			f.Count += us
			return
		}
		agg[k] = &FoldedStack{Frames: frames, Count: us}
	}
	for _, st := range p.Stacks {
		base := []string{SafeFrameName(st.Process), "[" + st.Class + "]"}
		frames := offFrames(st.Frames)
		for i := len(frames) - 1; i >= 0; i-- {
			base = append(base, FrameName(frames[i]))
		}
		if len(frames) == 0 && st.Class != WaitPreempted && st.Class != WaitNewThread {
			base = append(base, "[no stack]")
		}
		add(base, st.BlockedNs)
		add(append(base[:len(base):len(base)], "[run queue]"), st.RunqueueNs)
	}
	out := make([]FoldedStack, 0, len(agg))
	for _, k := range slices.Sorted(maps.Keys(agg)) {
		out = append(out, *agg[k])
	}
	return out
}

// throttling reads cgroup_cpu and lists the cgroups with a limit or
// throttling, with their processes' run-queue wait.
func (s *OffCPUSummary) throttling(a *formats.Archive, perPID map[uint32]*[2]float64, data *offCPUData) error {
	rows, err := formats.ReadAll[formats.CgroupCPU](a, formats.TableCgroupCPU)
	if err != nil {
		return err
	}
	type key struct {
		v uint32
		p string
	}
	type pair struct{ start, end *formats.CgroupCPU }
	pairs := map[key]*pair{}
	var order []key
	for i := range rows {
		r := &rows[i]
		k := key{r.Version, r.Path}
		p := pairs[k]
		if p == nil {
			p = &pair{}
			pairs[k] = p
			order = append(order, k)
		}
		if r.Phase == formats.CgroupPhaseStart {
			p.start = r
		} else {
			p.end = r
		}
	}
	for _, k := range order {
		p := pairs[k]
		last, first := p.end, p.start
		t := CgroupThrottle{Version: k.v, Path: k.p}
		switch {
		case last != nil && first != nil:
			t.Periods = sub(last.NrPeriods, first.NrPeriods)
			t.ThrottledPeriods = sub(last.NrThrottled, first.NrThrottled)
			t.ThrottledMs = float64(sub(last.ThrottledUs, first.ThrottledUs)) / 1e3
		case last == nil:
			last, t.Partial = first, true
			fallthrough
		default:
			t.Partial = true
			t.Periods, t.ThrottledPeriods, t.ThrottledMs = last.NrPeriods, last.NrThrottled, float64(last.ThrottledUs)/1e3
		}
		if last.QuotaUs > 0 && last.PeriodUs > 0 {
			t.QuotaCPUs = float64(last.QuotaUs) / float64(last.PeriodUs)
		}
		if t.Periods > 0 {
			t.ThrottledPct = 100 * float64(t.ThrottledPeriods) / float64(t.Periods)
		}
		seen := map[uint32]bool{}
		for _, r := range []*formats.CgroupCPU{p.start, p.end} {
			if r == nil {
				continue
			}
			for _, pid := range r.PIDs {
				if !seen[pid] {
					seen[pid] = true
					t.PIDs = append(t.PIDs, pid)
					if v := perPID[pid]; v != nil {
						t.RunqueueMs += v[1] / 1e6
					}
				}
			}
		}
		sort.Slice(t.PIDs, func(i, j int) bool { return t.PIDs[i] < t.PIDs[j] })
		s.Cgroups = append(s.Cgroups, t)
		if t.ThrottledPeriods > 0 {
			data.throttles = append(data.throttles, t)
		}
	}
	sort.SliceStable(s.Cgroups, func(i, j int) bool { return s.Cgroups[i].ThrottledMs > s.Cgroups[j].ThrottledMs })
	return nil
}

func sub(a, b uint64) uint64 {
	if a < b {
		return 0 // a counter reset (cgroup recreated under the same path)
	}
	return a - b
}

// throttleOf returns the most throttled cgroup holding pid, nil when none
// was throttled.
func (d *offCPUData) throttleOf(pid uint32) *CgroupThrottle {
	var best *CgroupThrottle
	for i := range d.throttles {
		t := &d.throttles[i]
		for _, p := range t.PIDs {
			if p == pid && (best == nil || t.ThrottledMs > best.ThrottledMs) {
				best = t
			}
		}
	}
	return best
}

// pods sums off-CPU time per Kubernetes pod.
func (s *OffCPUSummary) pods(perPID map[uint32]*[2]float64, procs []Process) {
	type podKey struct{ ns, pod string }
	sums := map[podKey]*PodCPUWait{}
	podOf := map[uint32]podKey{}
	for _, p := range procs {
		v := perPID[p.PID]
		if p.Pod == "" || v == nil {
			continue
		}
		k := podKey{p.Namespace, p.Pod}
		podOf[p.PID] = k
		w := sums[k]
		if w == nil {
			w = &PodCPUWait{Namespace: k.ns, Pod: k.pod}
			sums[k] = w
		}
		w.BlockedMs += v[0] / 1e6
		w.RunqueueMs += v[1] / 1e6
	}
	for k, w := range sums {
		for _, t := range s.Cgroups {
			if t.ThrottledPeriods == 0 {
				continue
			}
			for _, pid := range t.PIDs {
				if podOf[pid] == k && (w.Throttling == nil || t.ThrottledMs > w.Throttling.ThrottledMs) {
					tt := t
					w.Throttling = &tt
				}
			}
		}
		s.Pods = append(s.Pods, *w)
	}
	sort.Slice(s.Pods, func(i, j int) bool {
		if s.Pods[i].RunqueueMs != s.Pods[j].RunqueueMs {
			return s.Pods[i].RunqueueMs > s.Pods[j].RunqueueMs
		}
		return s.Pods[i].Namespace+"/"+s.Pods[i].Pod < s.Pods[j].Namespace+"/"+s.Pods[j].Pod
	})
}
