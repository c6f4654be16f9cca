package analyze

import (
	"sort"
	"strings"

	"github.com/bpfsnap/bpfsnap/formats"
)

// TimeSplit says where a request's time went: the serving thread's time
// between the request's arrival and its response, on the CPU, blocked off
// it (by wait class), or waiting in the run queue; with the stacks it ran
// and blocked in. For an endpoint it is summed over its requests.
type TimeSplit struct {
	// Requests counts the requests with a serving thread (the split
	// covers those); WallMs is their summed latency.
	Requests int64   `json:"requests"`
	WallMs   float64 `json:"wall_ms"`
	// OnCPUMs is, when the offcpu probe ran, the serving thread's time in
	// the request neither blocked nor in the run queue (exact, from the
	// scheduler); without it, CPU samples of the thread × the sampling
	// period (OnCPUSource says which).
	OnCPUMs     float64 `json:"on_cpu_ms"`
	OnCPUSource string  `json:"on_cpu_source"`
	// OffCPUMs is the time blocked; RunqueueMs runnable but not running
	// (CPU contention, throttling). Both 0 without the offcpu probe.
	OffCPUMs        float64            `json:"off_cpu_ms"`
	RunqueueMs      float64            `json:"runqueue_ms"`
	OffCPUByClassMs map[string]float64 `json:"off_cpu_by_class_ms,omitempty"`
	// Dominant is the largest part: "on_cpu", "runqueue" or a wait class
	// ("unknown" without the offcpu probe, unless on-CPU is most of it).
	Dominant   string `json:"dominant"`
	CPUSamples uint64 `json:"cpu_samples"`
	// CPUStacks are the top stacks the thread ran in (ms estimated from
	// samples); BlockedStacks the top stacks it blocked in, with their
	// wait class.
	CPUStacks     []TimedStack `json:"cpu_stacks"`
	BlockedStacks []TimedStack `json:"blocked_stacks"`
	// Throttling is the CPU throttling during the window of the
	// process's most throttled cgroup, when it was throttled.
	Throttling *CgroupThrottle `json:"throttling,omitempty"`
}

// On-CPU sources.
const (
	OnCPUFromScheduler = "scheduler"
	OnCPUFromSamples   = "cpu_samples"
)

// servedRequest is what the time split needs of a server's request row.
type servedRequest struct {
	PID                     uint32
	TID                     uint32 // a thread of the socket's owner
	RequestTID, ResponseTID uint32 // the threads that handled each message (0: unknown)
	RequestNs, ResponseNs   uint64
}

// servingThreads are the threads whose time inside a request is the
// request's: the thread that read the request and the one that wrote the
// response where the capture knew them (request_tid, response_tid; a
// server's reader is seen only where the hook ran in its context), else
// the socket owner's thread (tid), for archives that predate those
// columns.
func servingThreads(r servedRequest) []uint32 {
	switch {
	case r.RequestTID != 0 && r.ResponseTID != 0:
		return []uint32{r.RequestTID, r.ResponseTID}
	case r.ResponseTID != 0:
		return []uint32{r.ResponseTID}
	case r.RequestTID != 0:
		return []uint32{r.RequestTID}
	case r.TID != 0:
		return []uint32{r.TID}
	}
	return nil
}

// Limits of the stacks listed per endpoint and per slow request.
const (
	endpointStacks = 5
	requestStacks  = 3
)

// cpuIndex holds each thread's CPU samples, by time.
type cpuIndex struct {
	times    map[uint32][]uint64
	stacks   map[uint32][]uint64
	periodNs float64
}

// timeSplitter attributes serving threads' time to requests: the HTTP
// analysis hands it every server request (add) and the summary at the end
// (finish).
type timeSplitter struct {
	a        *formats.Archive
	debugDir string
	off      *offCPUData // nil without the offcpu probe
	cpu      *cpuIndex   // nil without CPU samples
	parts    []clipped   // scratch of offCPU
}

// splitAcc sums the time split of requests.
type splitAcc struct {
	requests                int64
	wall, on, blocked, runq float64 // ns
	byClass                 map[string]float64
	samples                 uint64
	cpuStacks               map[uint64]uint64
	blockedStacks           map[blockedKey]*[2]float64
}

type blockedKey struct {
	stack uint64
	class string
}

var cpuIndexColumns = []formats.ColumnSpec{
	{Name: "time_ns", Kind: formats.ColumnInt64},
	{Name: "tid", Kind: formats.ColumnInt32},
	{Name: "stack_id", Kind: formats.ColumnInt64},
}

// newTimeSplitter returns nil when there is nothing to split with.
func newTimeSplitter(a *formats.Archive, opts Options, off *offCPUData) (*timeSplitter, error) {
	t := &timeSplitter{a: a, debugDir: opts.DebugDir, off: off}
	if a.HasTable(formats.TableCPUSamples) {
		idx := &cpuIndex{times: map[uint32][]uint64{}, stacks: map[uint32][]uint64{}, periodNs: float64(samplingPeriodNs(a.Manifest()))}
		err := formats.ReadColumns(a, formats.TableCPUSamples, cpuIndexColumns, func(c *formats.ColumnBatch) error {
			ts, tids, ids := c.Columns[0].Int64, c.Columns[1].Int32, c.Columns[2].Int64
			for i := 0; i < c.Rows; i++ {
				tid := uint32(tids[i])
				idx.times[tid] = append(idx.times[tid], uint64(ts[i]))
				idx.stacks[tid] = append(idx.stacks[tid], uint64(ids[i]))
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
		for tid, ts := range idx.times {
			st := idx.stacks[tid]
			if !sort.SliceIsSorted(ts, func(i, j int) bool { return ts[i] < ts[j] }) {
				sort.Sort(byTime{ts, st})
			}
		}
		if idx.periodNs > 0 {
			t.cpu = idx
		}
	}
	if t.off == nil && t.cpu == nil {
		return nil, nil
	}
	return t, nil
}

type byTime struct{ t, s []uint64 }

func (b byTime) Len() int           { return len(b.t) }
func (b byTime) Less(i, j int) bool { return b.t[i] < b.t[j] }
func (b byTime) Swap(i, j int) {
	b.t[i], b.t[j] = b.t[j], b.t[i]
	b.s[i], b.s[j] = b.s[j], b.s[i]
}

// add sums one request into acc (made when nil) and returns it.
func (t *timeSplitter) add(acc *splitAcc, r servedRequest) *splitAcc {
	if acc == nil {
		acc = &splitAcc{byClass: map[string]float64{}, cpuStacks: map[uint64]uint64{}, blockedStacks: map[blockedKey]*[2]float64{}}
	}
	threads := servingThreads(r)
	if len(threads) == 0 || r.ResponseNs <= r.RequestNs {
		return acc
	}
	if len(threads) == 2 && threads[0] == threads[1] {
		threads = threads[:1]
	}
	share := 1 / float64(len(threads))
	wall := float64(r.ResponseNs - r.RequestNs)
	acc.requests++
	acc.wall += wall
	for _, tid := range threads {
		var blocked, runq float64
		if t.off != nil {
			blocked, runq = t.offCPU(acc, tid, r, share)
		}
		samples := t.samples(acc, tid, r)
		if t.off != nil {
			acc.on += max(wall-blocked-runq, 0) * share
		} else {
			acc.on += float64(samples) * t.cpu.periodNs * share
		}
	}
	return acc
}

// offCPU adds the thread's off-CPU time inside the request to acc and
// returns it (before the share of several threads). Rows of one interval
// are exact; rows of summed short intervals are spread over their span,
// which may overlap an exact row's time, so they are scaled down to the
// part of the request the exact rows leave.
func (t *timeSplitter) offCPU(acc *splitAcc, tid uint32, r servedRequest, share float64) (blocked, runq float64) {
	idx := t.off.index
	parts := t.parts[:0]
	var exact, summed float64
	collect := func(row *offRow) float64 {
		if row.pid != r.PID {
			return 0
		}
		bl, rq := row.clip(r.RequestNs, r.ResponseNs)
		if bl == 0 && rq == 0 {
			return 0
		}
		parts = append(parts, clipped{row, bl, rq})
		return bl + rq
	}
	// Exact rows do not overlap: the first ending after the request's
	// start, then on while they start before its end.
	ex := idx.exact[tid]
	for i := sort.Search(len(ex), func(i int) bool { return ex[i].end > r.RequestNs }); i < len(ex) && ex[i].start < r.ResponseNs; i++ {
		exact += collect(&ex[i])
	}
	nExact := len(parts)
	// Summed rows span at most maxSpan.
	su := idx.summed[tid]
	from := r.RequestNs - min(r.RequestNs, idx.maxSpan[tid])
	for i := sort.Search(len(su), func(i int) bool { return su[i].start >= from }); i < len(su) && su[i].start < r.ResponseNs; i++ {
		summed += collect(&su[i])
	}
	scale := 1.0
	if room := float64(r.ResponseNs-r.RequestNs) - exact; summed > room {
		scale = max(room, 0) / summed
	}
	for i, p := range parts {
		bl, rq := p.blocked, p.runq
		if i >= nExact {
			bl, rq = bl*scale, rq*scale
		}
		blocked += bl
		runq += rq
		acc.blocked += bl * share
		acc.runq += rq * share
		if bl > 0 {
			acc.byClass[p.row.class] += bl * share
		}
		k := blockedKey{p.row.stack, p.row.class}
		v := acc.blockedStacks[k]
		if v == nil {
			v = new([2]float64)
			acc.blockedStacks[k] = v
		}
		v[0] += bl * share
		v[1] += rq * share
	}
	t.parts = parts
	return blocked, runq
}

// clipped is a row's part inside a request.
type clipped struct {
	row           *offRow
	blocked, runq float64
}

// samples counts the thread's CPU samples inside the request into acc.
func (t *timeSplitter) samples(acc *splitAcc, tid uint32, r servedRequest) uint64 {
	if t.cpu == nil {
		return 0
	}
	ts, st := t.cpu.times[tid], t.cpu.stacks[tid]
	var n uint64
	for i := sort.Search(len(ts), func(i int) bool { return ts[i] >= r.RequestNs }); i < len(ts) && ts[i] < r.ResponseNs; i++ {
		acc.cpuStacks[st[i]]++
		n++
	}
	acc.samples += n
	return n
}

// finish turns the sums into the endpoints' and the slowest requests'
// time splits.
func (t *timeSplitter) finish(s *HTTPSummary) error {
	slow := make([]*splitAcc, len(s.Slowest))
	for i := range s.Slowest {
		if s.Slowest[i].Role == formats.RoleServer {
			slow[i] = t.add(nil, s.Slowest[i].served)
		}
	}
	// The CPU stacks listed are resolved in one read of the stacks table.
	ids := map[uint64]bool{}
	collect := func(acc *splitAcc, n int) {
		if acc != nil {
			for _, id := range topCPU(acc.cpuStacks, n) {
				ids[id] = true
			}
		}
	}
	for i := range s.Endpoints {
		collect(s.Endpoints[i].split, endpointStacks)
	}
	for _, acc := range slow {
		collect(acc, requestStacks)
	}
	var frames map[uint64][]*formats.Frame
	if len(ids) > 0 {
		list := make([]uint64, 0, len(ids))
		for id := range ids {
			list = append(list, id)
		}
		st, err := ResolveStacks(t.a, list, t.debugDir)
		if err != nil {
			return err
		}
		frames = st.Frames
	}
	for i := range s.Endpoints {
		e := &s.Endpoints[i]
		if e.split != nil && e.split.requests > 0 {
			e.TimeSplit = t.result(e.split, e.PID, frames, endpointStacks)
		}
		e.split = nil
	}
	for i, acc := range slow {
		if acc != nil && acc.requests > 0 {
			s.Slowest[i].TimeSplit = t.result(acc, s.Slowest[i].PID, frames, requestStacks)
		}
	}
	return nil
}

// topCPU returns the n stack ids with the most samples.
func topCPU(m map[uint64]uint64, n int) []uint64 {
	ids := make([]uint64, 0, len(m))
	for id := range m {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool {
		if m[ids[i]] != m[ids[j]] {
			return m[ids[i]] > m[ids[j]]
		}
		return ids[i] < ids[j]
	})
	return ids[:min(n, len(ids))]
}

func (t *timeSplitter) result(acc *splitAcc, pid uint32, cpuFrames map[uint64][]*formats.Frame, n int) *TimeSplit {
	ts := &TimeSplit{Requests: acc.requests, WallMs: acc.wall / 1e6, OnCPUMs: acc.on / 1e6, OffCPUMs: acc.blocked / 1e6,
		RunqueueMs: acc.runq / 1e6, CPUSamples: acc.samples, OnCPUSource: OnCPUFromSamples,
		CPUStacks: []TimedStack{}, BlockedStacks: []TimedStack{}}
	if t.off != nil {
		ts.OnCPUSource = OnCPUFromScheduler
		ts.OffCPUByClassMs = map[string]float64{}
		for c, v := range acc.byClass {
			ts.OffCPUByClassMs[c] = v / 1e6
		}
		ts.Throttling = t.off.throttleOf(pid)
	}
	ts.setDominant()
	if t.cpu != nil {
		for _, id := range topCPU(acc.cpuStacks, n) {
			names := []string{"[no stack]"}
			if fr := cpuFrames[id]; len(fr) > 0 {
				names = stackNames(fr)
			}
			ts.CPUStacks = append(ts.CPUStacks, TimedStack{Stack: names, Ms: float64(acc.cpuStacks[id]) * t.cpu.periodNs / 1e6})
		}
	}
	keys := make([]blockedKey, 0, len(acc.blockedStacks))
	for k, v := range acc.blockedStacks {
		if v[0] > 0 {
			keys = append(keys, k)
		}
	}
	sort.Slice(keys, func(i, j int) bool {
		a, b := acc.blockedStacks[keys[i]][0], acc.blockedStacks[keys[j]][0]
		if a != b {
			return a > b
		}
		if keys[i].stack != keys[j].stack {
			return keys[i].stack < keys[j].stack
		}
		return keys[i].class < keys[j].class
	})
	for _, k := range keys[:min(n, len(keys))] {
		names := []string{"[no stack]"}
		if fr := t.off.index.frames[k.stack]; len(fr) > 0 {
			names = stackNames(fr)
		}
		v := acc.blockedStacks[k]
		ts.BlockedStacks = append(ts.BlockedStacks, TimedStack{Stack: names, Class: k.class, Ms: v[0] / 1e6, RunqueueMs: v[1] / 1e6})
	}
	return ts
}

// setDominant names the largest part of the split. Without the offcpu
// probe only on-CPU time is known: it is dominant when it covers at least
// half of the time, else the answer is "unknown".
func (ts *TimeSplit) setDominant() {
	if ts.OnCPUSource == OnCPUFromSamples {
		ts.Dominant = "unknown"
		if ts.OnCPUMs >= ts.WallMs/2 {
			ts.Dominant = "on_cpu"
		}
		return
	}
	ts.Dominant = "on_cpu"
	best := ts.OnCPUMs
	if ts.RunqueueMs > best {
		ts.Dominant, best = "runqueue", ts.RunqueueMs
	}
	for _, c := range WaitClasses {
		if v := ts.OffCPUByClassMs[c]; v > best {
			ts.Dominant, best = c, v
		}
	}
}

// Share is a part of the split as a fraction of the wall time.
func (ts *TimeSplit) Share(ms float64) float64 {
	if ts.WallMs <= 0 {
		return 0
	}
	return ms / ts.WallMs
}

// DominantMs is the time of the dominant part.
func (ts *TimeSplit) DominantMs() float64 {
	switch ts.Dominant {
	case "on_cpu":
		return ts.OnCPUMs
	case "runqueue":
		return ts.RunqueueMs
	}
	return ts.OffCPUByClassMs[ts.Dominant]
}

// SlowRequestsSplit sums the time splits of the slowest server requests:
// where the slow requests' time went. Nil when none has a split.
func SlowRequestsSplit(h *HTTPSummary) *TimeSplit {
	if h == nil {
		return nil
	}
	var sum *TimeSplit
	type stackKey struct{ stack, class string }
	blocked := map[stackKey]*TimedStack{}
	var order []stackKey
	for _, x := range h.Slowest {
		ts := x.TimeSplit
		if ts == nil {
			continue
		}
		if sum == nil {
			sum = &TimeSplit{OnCPUSource: ts.OnCPUSource, CPUStacks: []TimedStack{}, BlockedStacks: []TimedStack{}}
		}
		sum.Requests += ts.Requests
		sum.WallMs += ts.WallMs
		sum.OnCPUMs += ts.OnCPUMs
		sum.OffCPUMs += ts.OffCPUMs
		sum.RunqueueMs += ts.RunqueueMs
		sum.CPUSamples += ts.CPUSamples
		for c, v := range ts.OffCPUByClassMs {
			if sum.OffCPUByClassMs == nil {
				sum.OffCPUByClassMs = map[string]float64{}
			}
			sum.OffCPUByClassMs[c] += v
		}
		for _, st := range ts.BlockedStacks {
			k := stackKey{strings.Join(st.Stack, ";"), st.Class}
			if b := blocked[k]; b != nil {
				b.Ms += st.Ms
				b.RunqueueMs += st.RunqueueMs
				continue
			}
			c := st
			blocked[k] = &c
			order = append(order, k)
		}
		if sum.Throttling == nil {
			sum.Throttling = ts.Throttling
		}
	}
	if sum == nil {
		return nil
	}
	for _, k := range order {
		sum.BlockedStacks = append(sum.BlockedStacks, *blocked[k])
	}
	sort.SliceStable(sum.BlockedStacks, func(i, j int) bool { return sum.BlockedStacks[i].Ms > sum.BlockedStacks[j].Ms })
	sum.BlockedStacks = sum.BlockedStacks[:min(endpointStacks, len(sum.BlockedStacks))]
	sum.setDominant()
	return sum
}
