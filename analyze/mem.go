package analyze

import (
	"math"
	"path"
	"sort"
	"strconv"
	"strings"

	"github.com/bpfsnap/bpfsnap/formats"
)

// MemSummary is the `mem` section of analyze: what the replay of every
// allocation, free, mapping and unmapping leaves outstanding at the end of
// the window.
type MemSummary struct {
	// OutstandingBytes and OutstandingBlocks count heap blocks allocated in
	// the window and not freed by its end.
	OutstandingBytes  uint64 `json:"outstanding_bytes"`
	OutstandingBlocks uint64 `json:"outstanding_allocations"`
	Allocations       uint64 `json:"allocations"`
	Frees             uint64 `json:"frees"`
	// FreesOfUnknown counts frees of blocks allocated before the window
	// (or by an untraced path): ignored, not subtracted from anything.
	FreesOfUnknown uint64    `json:"frees_of_unknown"`
	Leaks          []MemLeak `json:"leaks"`
	// SeriesStepS is the time step of every Growth series.
	SeriesStepS float64 `json:"series_step_s"`
	// SampleBytes is the capture's --mem-sample (0: every allocation was
	// recorded). When set, heap figures are estimates: each recorded
	// allocation counts for its weight (1/probability of being sampled).
	SampleBytes uint64 `json:"sample_bytes"`
	Estimated   bool   `json:"estimated"`

	// Anonymous mappings (mmap, mremap) and program break growth (brk)
	// made in the window and still there at its end. MappedBytes are the
	// program's own; AllocatorMappedBytes were made by the C allocator
	// inside a malloc-family call, backing heap blocks counted above.
	MappedBytes          uint64 `json:"mapped_bytes"`
	AllocatorMappedBytes uint64 `json:"allocator_mapped_bytes"`
	Maps                 uint64 `json:"mmaps"` // mmap, mremap and brk calls that grew memory
	Unmaps               uint64 `json:"munmaps"`
	// UnmapsOfUnknown counts munmaps (and brk shrinks) of memory mapped
	// before the window, or of file mappings, which are not traced.
	UnmapsOfUnknown uint64 `json:"munmaps_of_unknown"`
	// Mappings are the outstanding mappings grouped by stack, ranked like
	// Leaks, the program's own before the allocator's.
	Mappings []MemLeak `json:"mappings"`
	// OutsideLibc lists the processes whose memory grows outside the C
	// library's allocator (the Go runtime, a JVM, a custom allocator):
	// their heap is not in Leaks, only their mappings are traced, and the
	// growth analysis (-p growth) is the one that sees them. Largest
	// steady growth first.
	OutsideLibc []MemOutsideLibc `json:"outside_libc,omitempty"`
}

// MemOutsideLibc is a process that allocates outside libc: its runtime's
// own mappings grow while it makes few or no allocations through libc.
type MemOutsideLibc struct {
	PID     uint32 `json:"pid"`
	Process string `json:"process"`
	// Runtime names the allocator its mapping stacks show ("Go runtime",
	// "JVM", ".NET runtime", "V8"); empty when none is recognized.
	Runtime string `json:"runtime,omitempty"`
	// LibcAllocations counts its allocations through libc in the window;
	// LibcOutstandingBytes what of them is still held.
	LibcAllocations      uint64 `json:"libc_allocations"`
	LibcOutstandingBytes uint64 `json:"libc_outstanding_bytes"`
	// MappedBytes are its own anonymous mappings outstanding at the end
	// (address space a runtime reserved included); GrowingBytes those of
	// them at stacks that grew steadily over the window.
	MappedBytes  uint64 `json:"mapped_bytes"`
	GrowingBytes uint64 `json:"growing_bytes"`
	Hint         string `json:"hint"`
}

// OutsideLibcHint is what to do about a process that allocates outside libc.
const OutsideLibcHint = "-p mem traces the C library's allocator only, so its heap is not in the leak list; capture with -p growth to see which code makes its memory grow"

// MemLeak is one allocation stack with outstanding memory: a leak
// candidate. Candidates are ranked by how steadily they grew, then bytes.
type MemLeak struct {
	PID     uint32 `json:"pid"`
	Process string `json:"process"`
	// Kind is "heap" (C allocator), "mmap" (anonymous mmap/mremap) or
	// "brk" (program break growth).
	Kind string `json:"kind"`
	// ByAllocator marks mappings the C allocator made for its heap.
	ByAllocator bool   `json:"by_allocator,omitempty"`
	Bytes       uint64 `json:"bytes"`
	// Allocations counts outstanding blocks (heap) or mapped regions (a
	// mapping split by a partial munmap counts twice).
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
	defaultPage    = 4096
)

// Group kinds.
const (
	memHeap = "heap"
	memMmap = "mmap"
	memBrk  = "brk"
)

type block struct {
	size   uint64
	weight float64
	time   uint64
	stack  uint64
}

// groupKey is what outstanding memory is grouped by.
type groupKey struct {
	pid     uint32
	stack   uint64
	kind    string
	byAlloc bool
}

// region is one mapped address range [start, end) of a process.
type region struct {
	start, end, time uint64
	key              groupKey
}

// regionSet holds a process's traced mappings: sorted by start, never
// overlapping.
type regionSet []region

// remove unmaps [a, b): regions inside it go, regions across its edges are
// cut (a partial munmap leaves the rest of a mapping in place, as the
// kernel does). gone is told each group's bytes removed.
func (rs *regionSet) remove(a, b uint64, gone func(groupKey, uint64)) uint64 {
	s := *rs
	i := sort.Search(len(s), func(i int) bool { return s[i].end > a })
	j := i
	var keep []region
	var removed uint64
	for ; j < len(s) && s[j].start < b; j++ {
		r := s[j]
		lo, hi := max(r.start, a), min(r.end, b)
		removed += hi - lo
		gone(r.key, hi-lo)
		if r.start < a {
			keep = append(keep, region{start: r.start, end: a, time: r.time, key: r.key})
		}
		if r.end > b {
			keep = append(keep, region{start: b, end: r.end, time: r.time, key: r.key})
		}
	}
	if j > i {
		*rs = append(s[:i], append(keep, s[j:]...)...)
	}
	return removed
}

// add maps r; the caller has removed whatever overlapped it.
func (rs *regionSet) add(r region) {
	s := *rs
	i := sort.Search(len(s), func(i int) bool { return s[i].start >= r.start })
	s = append(s, region{})
	copy(s[i+1:], s[i:])
	s[i] = r
	*rs = s
}

// memReplay is the state of one replay.
type memReplay struct {
	s       *MemSummary
	start   uint64
	step    uint64
	page    uint64
	blocks  map[uint32]map[uint64]block
	regions map[uint32]*regionSet
	current map[groupKey]float64
	series  map[groupKey][]uint64
	allocs  float64
	frees   float64
}

func (r *memReplay) bucketOf(t uint64) int {
	if t < r.start {
		return 0
	}
	return min(int((t-r.start)/r.step), memSeriesSteps-1)
}

// change adds delta bytes to a group at time t and marks its series.
func (r *memReplay) change(k groupKey, delta float64, t uint64) {
	r.current[k] += delta
	sr := r.series[k]
	if sr == nil {
		sr = make([]uint64, memSeriesSteps)
		r.series[k] = sr
	}
	// The value at a step is the outstanding bytes at its end: set it for
	// this step and, lazily, carry it forward (carryForward).
	sr[r.bucketOf(t)] = uint64(math.Round(max(r.current[k], 0))) + 1 // +1 marks "set"
}

func (r *memReplay) release(pid uint32, addr, t uint64) bool {
	bl, ok := r.blocks[pid][addr]
	if !ok {
		return false
	}
	delete(r.blocks[pid], addr)
	r.frees += bl.weight
	r.change(groupKey{pid: pid, stack: bl.stack, kind: memHeap}, -float64(bl.size)*bl.weight, t)
	return true
}

func (r *memReplay) heap(ev formats.MemEvent) {
	if r.blocks[ev.PID] == nil {
		r.blocks[ev.PID] = map[uint64]block{}
	}
	w := ev.Weight
	if w <= 0 || math.IsNaN(w) || math.IsInf(w, 0) {
		w = 1 // archives before sampling, or a corrupt row
	}
	if ev.Kind == formats.MemFree {
		r.s.Frees++
		if !r.release(ev.PID, ev.Addr, ev.TimeNs) {
			r.s.FreesOfUnknown++
		}
		return
	}
	r.s.Allocations++
	r.allocs += w
	if ev.OldAddr != 0 {
		// realloc hands the old block back (whatever stack made it) and
		// the new one belongs to the realloc's call site.
		if !r.release(ev.PID, ev.OldAddr, ev.TimeNs) {
			r.s.FreesOfUnknown++
		}
	}
	if old, dup := r.blocks[ev.PID][ev.Addr]; dup {
		// An address handed out twice without a free in between: the
		// free was missed; the old block is gone.
		r.change(groupKey{pid: ev.PID, stack: old.stack, kind: memHeap}, -float64(old.size)*old.weight, ev.TimeNs)
	}
	r.blocks[ev.PID][ev.Addr] = block{size: ev.Size, weight: w, time: ev.TimeNs, stack: ev.StackID}
	r.change(groupKey{pid: ev.PID, stack: ev.StackID, kind: memHeap}, float64(ev.Size)*w, ev.TimeNs)
}

func (r *memReplay) pageUp(n uint64) uint64 {
	return (n + r.page - 1) / r.page * r.page
}

// unmap removes [a, b) of a process's mappings; it reports whether any
// traced mapping was there.
func (r *memReplay) unmap(pid uint32, a, b, t uint64) bool {
	rs := r.regions[pid]
	if rs == nil || b <= a {
		return false
	}
	return rs.remove(a, b, func(k groupKey, n uint64) { r.change(k, -float64(n), t) }) > 0
}

func (r *memReplay) mapRange(ev formats.MemEvent, a, b uint64, kind string) {
	if b <= a {
		return
	}
	// Whatever was traced there is gone (MAP_FIXED over a mapping, or an
	// unmap we missed).
	r.unmap(ev.PID, a, b, ev.TimeNs)
	rs := r.regions[ev.PID]
	if rs == nil {
		rs = &regionSet{}
		r.regions[ev.PID] = rs
	}
	k := groupKey{pid: ev.PID, stack: ev.StackID, kind: kind, byAlloc: ev.InAllocator}
	rs.add(region{start: a, end: b, time: ev.TimeNs, key: k})
	r.s.Maps++
	r.change(k, float64(b-a), ev.TimeNs)
}

// mapping replays mmap, munmap, mremap and brk. Lengths are rounded up to
// pages as the kernel does; brk moves the break by exact bytes.
func (r *memReplay) mapping(ev formats.MemEvent) {
	switch ev.Kind {
	case formats.MemMmap:
		r.mapRange(ev, ev.Addr, ev.Addr+r.pageUp(ev.Size), memMmap)
	case formats.MemMunmap:
		r.s.Unmaps++
		if !r.unmap(ev.PID, ev.Addr, ev.Addr+r.pageUp(ev.Size), ev.TimeNs) {
			r.s.UnmapsOfUnknown++
		}
	case formats.MemMremap:
		// The old range goes, the new one belongs to the mremap's stack
		// (as a realloc's block does).
		r.unmap(ev.PID, ev.OldAddr, ev.OldAddr+r.pageUp(ev.OldSize), ev.TimeNs)
		r.mapRange(ev, ev.Addr, ev.Addr+r.pageUp(ev.Size), memMmap)
	case formats.MemBrk:
		switch {
		case ev.Addr > ev.OldAddr:
			r.mapRange(ev, ev.OldAddr, ev.Addr, memBrk)
		case ev.Addr < ev.OldAddr:
			r.s.Unmaps++
			if !r.unmap(ev.PID, ev.Addr, ev.OldAddr, ev.TimeNs) {
				r.s.UnmapsOfUnknown++
			}
		}
	}
}

// memExecKind marks a process's exec among the replayed rows (from the
// processes table; never a mem_events kind).
const memExecKind = "\x00exec"

// exec forgets everything a process held: a new program has a new address
// space.
func (r *memReplay) exec(pid uint32, t uint64) {
	for _, bl := range r.blocks[pid] {
		r.change(groupKey{pid: pid, stack: bl.stack, kind: memHeap}, -float64(bl.size)*bl.weight, t)
	}
	delete(r.blocks, pid)
	if rs := r.regions[pid]; rs != nil {
		rs.remove(0, math.MaxUint64, func(k groupKey, n uint64) { r.change(k, -float64(n), t) })
		delete(r.regions, pid)
	}
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
	// An exec replaces the process's memory: what the old program held
	// is gone (the held child of `capture -- COMMAND` is bpfsnap itself
	// until it execs).
	if a.HasTable(formats.TableProcesses) {
		err := formats.ReadTable(a, formats.TableProcesses, func(batch []formats.ProcessEvent) error {
			for _, p := range batch {
				if p.Kind == formats.ProcessExec && b.Keep(p.PID, p.TimeNs) {
					rows = append(rows, formats.MemEvent{TimeNs: p.TimeNs, PID: p.PID, Kind: memExecKind})
				}
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	s, groups := replayMem(rows, m)
	names := processNames(procs)
	var ids []uint64
	for k := range groups {
		ids = append(ids, k.stack)
	}
	stacks, err := ResolveStacks(a, ids, opts.DebugDir)
	if err != nil {
		return nil, err
	}
	for k := range groups {
		l := groups[k]
		l.Process = names[l.PID]
		for _, f := range stacks.Frames[l.StackID] {
			l.Stack = append(l.Stack, SafeFrameName(FrameName(f)))
		}
		if k.kind != memHeap && !l.ByAllocator && madeByAllocator(stacks.Frames[l.StackID]) {
			// glibc creates a thread's arena inside free (no return
			// probe there, so in_allocator is not set): the allocator's.
			l.ByAllocator = true
			s.MappedBytes -= l.Bytes
			s.AllocatorMappedBytes += l.Bytes
		}
		groups[k] = l
	}
	s.OutsideLibc = outsideLibc(rows, groups, stacks, names)
	for k, l := range groups {
		if k.kind == memHeap {
			s.Leaks = append(s.Leaks, l)
		} else {
			s.Mappings = append(s.Mappings, l)
		}
	}
	rankLeaks(s.Leaks)
	rankLeaks(s.Mappings)
	if len(s.Leaks) > maxLeaks {
		s.Leaks = s.Leaks[:maxLeaks]
	}
	if len(s.Mappings) > maxLeaks {
		s.Mappings = s.Mappings[:maxLeaks]
	}
	return s, nil
}

// replayMem replays rows (any order) and returns the summary's totals and
// the outstanding memory per group, without stack names.
func replayMem(rows []formats.MemEvent, m *formats.Manifest) (*MemSummary, map[groupKey]MemLeak) {
	// Per-CPU ring buffers do not promise global order; replay needs it.
	sort.SliceStable(rows, func(i, j int) bool { return rows[i].TimeNs < rows[j].TimeNs })
	start, end := m.Window.StartMonoNs, m.Window.EndMonoNs
	if len(rows) > 0 && (end <= start || rows[len(rows)-1].TimeNs > end) {
		end = rows[len(rows)-1].TimeNs
	}
	r := &memReplay{
		s:       &MemSummary{},
		start:   start,
		step:    max((end-start)/memSeriesSteps, 1),
		page:    defaultPage,
		blocks:  map[uint32]map[uint64]block{},
		regions: map[uint32]*regionSet{},
		current: map[groupKey]float64{},
		series:  map[groupKey][]uint64{},
	}
	r.s.SeriesStepS = float64(r.step) / 1e9
	if p := m.Probe("mem"); p != nil {
		if v, err := strconv.ParseUint(p.Details["page_size"], 10, 64); err == nil && v > 0 && v&(v-1) == 0 && v <= 1<<30 {
			r.page = v
		}
		if v, err := strconv.ParseUint(p.Details["sample_bytes"], 10, 64); err == nil {
			r.s.SampleBytes = v
			r.s.Estimated = v > 0
		}
	}
	for _, ev := range rows {
		switch ev.Kind {
		case formats.MemMmap, formats.MemMunmap, formats.MemMremap, formats.MemBrk:
			r.mapping(ev)
		case formats.MemMalloc, formats.MemCalloc, formats.MemRealloc, formats.MemMemalign, formats.MemPosixMemalign, formats.MemFree:
			r.heap(ev)
		case memExecKind:
			r.exec(ev.PID, ev.TimeNs)
		}
	}
	if r.s.Estimated {
		r.s.Allocations = uint64(math.Round(r.allocs))
		r.s.Frees = uint64(math.Round(r.frees))
	}
	// Outstanding memory, grouped.
	type agg struct {
		bytes, count float64
		oldest       uint64
	}
	aggs := map[groupKey]*agg{}
	add := func(k groupKey, bytes, count float64, t uint64) {
		g := aggs[k]
		if g == nil {
			g = &agg{oldest: t}
			aggs[k] = g
		}
		g.bytes += bytes
		g.count += count
		g.oldest = min(g.oldest, t)
	}
	var heapBytes, heapCount float64
	for pid, bs := range r.blocks {
		for _, bl := range bs {
			add(groupKey{pid: pid, stack: bl.stack, kind: memHeap}, float64(bl.size)*bl.weight, bl.weight, bl.time)
			heapBytes += float64(bl.size) * bl.weight
			heapCount += bl.weight
		}
	}
	r.s.OutstandingBytes = uint64(math.Round(heapBytes))
	r.s.OutstandingBlocks = uint64(math.Round(heapCount))
	for _, rs := range r.regions {
		for _, reg := range *rs {
			add(reg.key, float64(reg.end-reg.start), 1, reg.time)
			if reg.key.byAlloc {
				r.s.AllocatorMappedBytes += reg.end - reg.start
			} else {
				r.s.MappedBytes += reg.end - reg.start
			}
		}
	}
	groups := map[groupKey]MemLeak{}
	for k, g := range aggs {
		l := MemLeak{PID: k.pid, Kind: k.kind, ByAllocator: k.byAlloc,
			Bytes: uint64(math.Round(g.bytes)), Allocations: uint64(math.Round(g.count)),
			OldestAgeS: float64(int64(end)-int64(g.oldest)) / 1e9, StackID: k.stack, Growth: carryForward(r.series[k])}
		rises := 0
		for i := 1; i < len(l.Growth); i++ {
			if l.Growth[i] > l.Growth[i-1] {
				rises++
			}
		}
		l.Steady = rises >= len(l.Growth)/3
		groups[k] = l
	}
	return r.s, groups
}

// rankLeaks orders candidates: the program's own memory before the
// allocator's mappings, steady growth first, then bytes.
func rankLeaks(ls []MemLeak) {
	sort.Slice(ls, func(i, j int) bool {
		a, b := ls[i], ls[j]
		if a.ByAllocator != b.ByAllocator {
			return !a.ByAllocator
		}
		if a.Steady != b.Steady {
			return a.Steady
		}
		if a.Bytes != b.Bytes {
			return a.Bytes > b.Bytes
		}
		if a.PID != b.PID {
			return a.PID < b.PID
		}
		return a.StackID < b.StackID
	})
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
// stacks, for a flame graph of memory: heap blocks, plus the program's own
// anonymous mappings under a "[mmap]"/"[brk]" leaf (the allocator's are
// left out: the heap blocks they back are already drawn).
func MemFolded(s *MemSummary) []FoldedStack {
	var out []FoldedStack
	add := func(l MemLeak, leaf string) {
		frames := []string{SafeFrameName(l.Process)}
		for i := len(l.Stack) - 1; i >= 0; i-- {
			frames = append(frames, l.Stack[i])
		}
		if len(l.Stack) == 0 {
			frames = append(frames, "[no stack]")
		}
		if leaf != "" {
			frames = append(frames, leaf)
		}
		out = append(out, FoldedStack{Frames: frames, Count: l.Bytes})
	}
	for _, l := range s.Leaks {
		add(l, "")
	}
	for _, l := range s.Mappings {
		if !l.ByAllocator {
			add(l, "["+l.Kind+"]")
		}
	}
	return out
}

// libcAllocator are the C library's allocator entry points: a mapping made
// below one of them (the leaf's frames in libc up to it) backs the heap.
var libcAllocator = map[string]bool{
	"free": true, "__libc_free": true, "cfree": true, "__free": true,
	"malloc": true, "__libc_malloc": true, "calloc": true, "__libc_calloc": true,
	"realloc": true, "__libc_realloc": true, "reallocarray": true,
	"memalign": true, "__libc_memalign": true, "aligned_alloc": true, "posix_memalign": true,
	"valloc": true, "__libc_valloc": true, "pvalloc": true, "__libc_pvalloc": true,
}

// isLibc reports whether a module is the C library (glibc or musl).
func isLibc(module string) bool {
	base := path.Base(module)
	return strings.HasPrefix(base, "libc.so") || strings.HasPrefix(base, "libc-") || strings.HasPrefix(base, "ld-musl")
}

// madeByAllocator reports whether a mapping's stack (leaf first) runs
// through a libc allocator entry point before it leaves libc.
func madeByAllocator(frames []*formats.Frame) bool {
	for _, f := range frames {
		if f.Kernel {
			continue
		}
		if !isLibc(f.Module) {
			return false
		}
		if libcAllocator[f.Function] {
			return true
		}
	}
	return false
}

// runtimeOf names the allocator a mapping's frames belong to, if any.
func runtimeOf(frames []*formats.Frame) string {
	for _, f := range frames {
		base := path.Base(f.Module)
		switch {
		case f.Kernel:
		case strings.HasPrefix(f.Function, "runtime.") && !isLibc(f.Module):
			return "Go runtime"
		case strings.HasPrefix(base, "libjvm.so"):
			return "JVM"
		case strings.HasPrefix(base, "libcoreclr.so"):
			return ".NET runtime"
		case strings.HasPrefix(f.Function, "v8::internal::"):
			return "V8"
		}
	}
	return ""
}

// Thresholds of the generic rule for a process that allocates outside libc
// when no runtime is recognized: its own mappings grew steadily by at least
// minOutsideGrowth, sixteen times what it holds through libc, with fewer
// libc allocations than one per 64 KiB of that growth.
const (
	minOutsideGrowth    = 8 << 20
	outsideGrowthFactor = 16
	bytesPerLibcAlloc   = 64 << 10
)

// outsideLibc finds the processes whose memory grows outside libc: their
// mapping stacks show a runtime's allocator, or their mappings grow while
// libc sees almost nothing of them.
func outsideLibc(rows []formats.MemEvent, groups map[groupKey]MemLeak, stacks *Stacks, names map[uint32]string) []MemOutsideLibc {
	allocs := map[uint32]uint64{}
	for _, ev := range rows {
		switch ev.Kind {
		case formats.MemMalloc, formats.MemCalloc, formats.MemRealloc, formats.MemMemalign, formats.MemPosixMemalign:
			allocs[ev.PID]++
		}
	}
	per := map[uint32]*MemOutsideLibc{}
	get := func(pid uint32) *MemOutsideLibc {
		o := per[pid]
		if o == nil {
			o = &MemOutsideLibc{PID: pid, Process: names[pid], LibcAllocations: allocs[pid], Hint: OutsideLibcHint}
			per[pid] = o
		}
		return o
	}
	for k, l := range groups {
		switch {
		case k.kind == memHeap:
			get(k.pid).LibcOutstandingBytes += l.Bytes
		case !l.ByAllocator:
			o := get(k.pid)
			o.MappedBytes += l.Bytes
			if l.Steady {
				o.GrowingBytes += l.Bytes
			}
			if o.Runtime == "" {
				o.Runtime = runtimeOf(stacks.Frames[k.stack])
			}
		}
	}
	var out []MemOutsideLibc
	for _, o := range per {
		generic := o.GrowingBytes >= minOutsideGrowth && o.GrowingBytes > outsideGrowthFactor*o.LibcOutstandingBytes &&
			o.LibcAllocations*bytesPerLibcAlloc < o.GrowingBytes
		if o.Runtime != "" && o.MappedBytes > 0 || generic {
			out = append(out, *o)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].GrowingBytes != out[j].GrowingBytes {
			return out[i].GrowingBytes > out[j].GrowingBytes
		}
		if out[i].MappedBytes != out[j].MappedBytes {
			return out[i].MappedBytes > out[j].MappedBytes
		}
		return out[i].PID < out[j].PID
	})
	return out
}
