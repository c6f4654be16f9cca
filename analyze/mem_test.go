package analyze

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/bpfsnap/bpfsnap/formats"
)

func memManifest(details map[string]string) *formats.Manifest {
	return &formats.Manifest{
		Window: formats.Window{StartMonoNs: 1000, EndMonoNs: 1000 + 20e9},
		Probes: []formats.Probe{{Name: "mem", Attached: true, Details: details}},
	}
}

// outstanding sums a replay's groups of one kind by stack id.
func outstanding(groups map[groupKey]MemLeak, kind string) map[uint64][2]uint64 {
	out := map[uint64][2]uint64{}
	for k, l := range groups {
		if k.kind == kind {
			v := out[k.stack]
			out[k.stack] = [2]uint64{v[0] + l.Bytes, v[1] + l.Allocations}
		}
	}
	return out
}

func TestMemReplayHeap(t *testing.T) {
	const pid = 7
	ms := func(t uint64) uint64 { return 1000 + t*1e6 }
	rows := []formats.MemEvent{
		// Out of order on purpose: the replay sorts by time.
		{TimeNs: ms(3), PID: pid, Kind: formats.MemFree, Addr: 0x10},
		{TimeNs: ms(1), PID: pid, Kind: formats.MemMalloc, Addr: 0x10, Size: 100, StackID: 1, Weight: 1},
		{TimeNs: ms(2), PID: pid, Kind: formats.MemMalloc, Addr: 0x20, Size: 50, StackID: 2, Weight: 1},
		// realloc moves 0x20 (stack 2) to 0x30, owned by stack 3.
		{TimeNs: ms(4), PID: pid, Kind: formats.MemRealloc, Addr: 0x30, OldAddr: 0x20, Size: 80, StackID: 3, Weight: 1},
		// A free of a block from before the window.
		{TimeNs: ms(5), PID: pid, Kind: formats.MemFree, Addr: 0x999},
		// The same address in another process is another block.
		{TimeNs: ms(6), PID: pid + 1, Kind: formats.MemCalloc, Addr: 0x30, Size: 8, StackID: 4, Weight: 1},
		// A free from another thread (tid does not matter).
		{TimeNs: ms(7), PID: pid + 1, TID: 99, Kind: formats.MemFree, Addr: 0x30},
		// Weight 0 (an archive from before sampling) counts as 1.
		{TimeNs: ms(8), PID: pid, Kind: formats.MemMalloc, Addr: 0x40, Size: 10, StackID: 5},
	}
	s, groups := replayMem(rows, memManifest(nil))
	if s.Allocations != 5 || s.Frees != 3 || s.FreesOfUnknown != 1 {
		t.Errorf("allocations %d frees %d unknown %d", s.Allocations, s.Frees, s.FreesOfUnknown)
	}
	if s.OutstandingBytes != 90 || s.OutstandingBlocks != 2 || s.Estimated {
		t.Errorf("outstanding %d bytes in %d blocks (estimated %v)", s.OutstandingBytes, s.OutstandingBlocks, s.Estimated)
	}
	got := outstanding(groups, memHeap)
	want := map[uint64][2]uint64{3: {80, 1}, 5: {10, 1}}
	for id, w := range want {
		if got[id] != w {
			t.Errorf("stack %d: %v, want %v", id, got[id], w)
		}
	}
	for id := range got {
		if _, ok := want[id]; !ok && got[id][0] != 0 {
			t.Errorf("stack %d outstanding: %v", id, got[id])
		}
	}
}

func TestMemReplayMappings(t *testing.T) {
	const pid, page = 3, 4096
	A := uint64(0x7f0000000000)
	rows := []formats.MemEvent{
		// 4 pages mapped (length rounded up), middle page unmapped: two
		// pieces of the same stack remain.
		{TimeNs: 1, PID: pid, Kind: formats.MemMmap, Addr: A, Size: 4*page - 100, StackID: 1},
		{TimeNs: 2, PID: pid, Kind: formats.MemMunmap, Addr: A + page, Size: page},
		// A munmap across the end of the first piece and beyond: only the
		// traced part counts.
		{TimeNs: 3, PID: pid, Kind: formats.MemMunmap, Addr: A + 3*page, Size: 10 * page},
		// An munmap of something never traced (a file mapping).
		{TimeNs: 4, PID: pid, Kind: formats.MemMunmap, Addr: 0x1000, Size: page},
		// mremap moves a 2-page mapping to 3 pages elsewhere: stack 3.
		{TimeNs: 5, PID: pid, Kind: formats.MemMmap, Addr: A + 100*page, Size: 2 * page, StackID: 2},
		{TimeNs: 6, PID: pid, Kind: formats.MemMremap, Addr: A + 200*page, OldAddr: A + 100*page, OldSize: 2 * page, Size: 3 * page, StackID: 3},
		// MAP_FIXED over part of the mremap'd mapping replaces that page.
		{TimeNs: 7, PID: pid, Kind: formats.MemMmap, Addr: A + 202*page, Size: page, StackID: 4},
		// The allocator's own mapping is told apart.
		{TimeNs: 8, PID: pid, Kind: formats.MemMmap, Addr: A + 300*page, Size: 33 * page, StackID: 5, InAllocator: true},
		// brk: grow by 3 pages + 16 bytes, shrink by 1 page.
		{TimeNs: 9, PID: pid, Kind: formats.MemBrk, OldAddr: 0x500000, Addr: 0x500000 + 3*page + 16, StackID: 6, InAllocator: true},
		{TimeNs: 10, PID: pid, Kind: formats.MemBrk, OldAddr: 0x500000 + 3*page + 16, Addr: 0x500000 + 2*page + 16, StackID: 7, InAllocator: true},
	}
	s, groups := replayMem(rows, memManifest(map[string]string{"page_size": "4096"}))
	mm := outstanding(groups, memMmap)
	want := map[uint64][2]uint64{1: {2 * page, 2}, 2: {0, 0}, 3: {2 * page, 1}, 4: {page, 1}, 5: {33 * page, 1}}
	for id, w := range want {
		if mm[id] != w {
			t.Errorf("mmap stack %d: %v, want %v", id, mm[id], w)
		}
	}
	brk := outstanding(groups, memBrk)
	if brk[6] != [2]uint64{2*page + 16, 1} || brk[7][0] != 0 {
		t.Errorf("brk: %v", brk)
	}
	if s.MappedBytes != 5*page || s.AllocatorMappedBytes != 33*page+2*page+16 {
		t.Errorf("mapped %d, allocator %d", s.MappedBytes, s.AllocatorMappedBytes)
	}
	if s.Unmaps != 4 || s.UnmapsOfUnknown != 1 || s.Maps != 6 {
		t.Errorf("maps %d unmaps %d unknown %d", s.Maps, s.Unmaps, s.UnmapsOfUnknown)
	}
	// The heap figures are untouched by mappings.
	if s.OutstandingBytes != 0 || s.Allocations != 0 {
		t.Errorf("heap: %d bytes, %d allocations", s.OutstandingBytes, s.Allocations)
	}
}

// regionSet keeps its invariant (sorted, disjoint) and its byte count
// under random maps and unmaps, checked against a page bitmap.
func TestRegionSetRandom(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var rs regionSet
	pages := make([]bool, 256)
	for i := 0; i < 5000; i++ {
		a := uint64(rng.IntN(250))
		b := a + 1 + uint64(rng.IntN(6))
		if rng.IntN(2) == 0 {
			rs.remove(a, b, func(groupKey, uint64) {})
			rs.add(region{start: a, end: b})
			for p := a; p < b; p++ {
				pages[p] = true
			}
		} else {
			var removed uint64
			rs.remove(a, b, func(_ groupKey, n uint64) { removed += n })
			var want uint64
			for p := a; p < b; p++ {
				if pages[p] {
					want++
				}
				pages[p] = false
			}
			if removed != want {
				t.Fatalf("step %d: removed %d, want %d", i, removed, want)
			}
		}
		for j := 1; j < len(rs); j++ {
			if rs[j-1].end > rs[j].start || rs[j].start >= rs[j].end {
				t.Fatalf("step %d: regions overlap or are empty: %v %v", i, rs[j-1], rs[j])
			}
		}
	}
	for p := range pages {
		in := false
		for _, r := range rs {
			in = in || (uint64(p) >= r.start && uint64(p) < r.end)
		}
		if in != pages[p] {
			t.Fatalf("page %d: in regions %v, bitmap %v", p, in, pages[p])
		}
	}
}

// Byte-sampled rows are scaled back by their weights: a simulated Poisson
// sample of a known population estimates its outstanding bytes within a
// few percent.
func TestMemReplaySampledEstimate(t *testing.T) {
	const N = 64 << 10
	rng := rand.New(rand.NewPCG(3, 4))
	var rows []formats.MemEvent
	var trueBytes float64
	left := rng.ExpFloat64() * N
	for i := 0; i < 200000; i++ {
		size := uint64(16 + rng.IntN(2000))
		leak := i%10 == 0
		if leak {
			trueBytes += float64(size)
		}
		left -= float64(size)
		if left > 0 {
			continue
		}
		left = rng.ExpFloat64() * N
		addr := uint64(0x1000 + 16*i)
		rows = append(rows, formats.MemEvent{TimeNs: uint64(1000 + i), PID: 1, Kind: formats.MemMalloc, Addr: addr, Size: size, StackID: 9,
			Weight: formats.MemSampleWeight(size, N)})
		if !leak {
			rows = append(rows, formats.MemEvent{TimeNs: uint64(1000 + i), PID: 1, Kind: formats.MemFree, Addr: addr})
		}
	}
	s, groups := replayMem(rows, memManifest(map[string]string{"sample_bytes": "65536"}))
	if !s.Estimated || s.SampleBytes != N {
		t.Errorf("estimated %v, sample bytes %d", s.Estimated, s.SampleBytes)
	}
	got := float64(s.OutstandingBytes)
	if math.Abs(got-trueBytes)/trueBytes > 0.05 {
		t.Errorf("estimated %0.f outstanding bytes, true %0.f", got, trueBytes)
	}
	if l := groups[groupKey{pid: 1, stack: 9, kind: memHeap}]; l.Bytes != s.OutstandingBytes {
		t.Errorf("group %d bytes, summary %d", l.Bytes, s.OutstandingBytes)
	}
	// ~200000 allocations estimated from a few thousand rows.
	if math.Abs(float64(s.Allocations)-200000)/200000 > 0.05 {
		t.Errorf("estimated %d allocations", s.Allocations)
	}
}

func TestMemFoldedLeavesAllocatorMappingsOut(t *testing.T) {
	s := &MemSummary{
		Leaks:    []MemLeak{{Process: "p", Kind: memHeap, Bytes: 10, Stack: []string{"leaf", "main"}}},
		Mappings: []MemLeak{{Process: "p", Kind: memMmap, Bytes: 4096, Stack: []string{"main"}}, {Process: "p", Kind: memBrk, ByAllocator: true, Bytes: 1 << 20}},
	}
	f := MemFolded(s)
	if len(f) != 2 || f[0].Count != 10 || f[1].Count != 4096 || f[1].Frames[len(f[1].Frames)-1] != "[mmap]" {
		t.Errorf("folded %+v", f)
	}
}

// An exec ends everything the old program held.
func TestMemReplayExec(t *testing.T) {
	rows := []formats.MemEvent{
		{TimeNs: 1, PID: 5, Kind: formats.MemMalloc, Addr: 0x10, Size: 100, StackID: 1, Weight: 1},
		{TimeNs: 2, PID: 5, Kind: formats.MemMmap, Addr: 0x100000, Size: 4096, StackID: 2},
		{TimeNs: 3, PID: 5, Kind: memExecKind},
		{TimeNs: 4, PID: 5, Kind: formats.MemMalloc, Addr: 0x10, Size: 7, StackID: 3, Weight: 1},
		{TimeNs: 5, PID: 6, Kind: memExecKind}, // another process
	}
	s, groups := replayMem(rows, memManifest(nil))
	if s.OutstandingBytes != 7 || s.MappedBytes != 0 {
		t.Errorf("outstanding %d, mapped %d", s.OutstandingBytes, s.MappedBytes)
	}
	if h := outstanding(groups, memHeap); h[1][0] != 0 || h[3] != [2]uint64{7, 1} {
		t.Errorf("heap groups %v", h)
	}
}

func TestMadeByAllocator(t *testing.T) {
	libc := "/usr/lib/x86_64-linux-gnu/libc.so.6"
	fr := func(module, fn string) *formats.Frame { return &formats.Frame{Module: module, Function: fn} }
	for _, c := range []struct {
		name   string
		frames []*formats.Frame
		want   bool
	}{
		{"arena made in free", []*formats.Frame{fr(libc, "mmap64"), fr(libc, ""), fr(libc, "__libc_free"), fr("/x/prog", "threadentry")}, true},
		{"the program's mmap", []*formats.Frame{fr(libc, "mmap64"), fr("/x/prog", "leak_mmap"), fr(libc, "__libc_start_main")}, false},
		{"free above the program's frame", []*formats.Frame{fr(libc, "mmap64"), fr("/x/prog", "f"), fr(libc, "free")}, false},
		{"a thread stack", []*formats.Frame{fr(libc, "mmap64"), fr(libc, "pthread_create")}, false},
	} {
		if got := madeByAllocator(c.frames); got != c.want {
			t.Errorf("%s: %v", c.name, got)
		}
	}
}

// Processes whose memory grows outside libc are named, by their runtime's
// frames or by their numbers; a C program that maps memory and allocates
// through libc is not.
func TestOutsideLibc(t *testing.T) {
	libc := "/usr/lib/x86_64-linux-gnu/libc.so.6"
	stacks := &Stacks{Frames: map[uint64][]*formats.Frame{
		1: {{Module: libc, Function: "mmap64"}, {Module: "/srv/api", Function: "runtime.sysMap"}},
		2: {{Module: libc, Function: "mmap64"}, {Module: "/srv/cache", Function: "arena_grow"}},
		3: {{Module: libc, Function: "mmap64"}, {Module: "/srv/c", Function: "leak_mmap"}},
		4: {{Module: "/srv/c", Function: "leak_malloc"}},
		5: {{Module: "/opt/jdk/lib/server/libjvm.so", Function: "os::commit_memory"}},
	}}
	const mib = 1 << 20
	groups := map[groupKey]MemLeak{
		{pid: 10, stack: 1, kind: memMmap}:                {PID: 10, Bytes: 2 * mib, Steady: true},  // Go: any size
		{pid: 20, stack: 2, kind: memMmap}:                {PID: 20, Bytes: 40 * mib, Steady: true}, // its own allocator
		{pid: 30, stack: 3, kind: memMmap}:                {PID: 30, Bytes: 40 * mib, Steady: true}, // C, many libc allocations
		{pid: 30, stack: 4, kind: memHeap}:                {PID: 30, Bytes: 10 * mib},
		{pid: 40, stack: 5, kind: memMmap}:                {PID: 40, Bytes: 1 * mib},               // a JVM
		{pid: 50, stack: 2, kind: memMmap}:                {PID: 50, Bytes: 4 * mib, Steady: true}, // too little to tell
		{pid: 60, stack: 2, kind: memMmap, byAlloc: true}: {PID: 60, Bytes: 64 * mib, ByAllocator: true},
	}
	var rows []formats.MemEvent
	for i := 0; i < 5000; i++ {
		rows = append(rows, formats.MemEvent{PID: 30, Kind: formats.MemMalloc})
	}
	rows = append(rows, formats.MemEvent{PID: 20, Kind: formats.MemMalloc})
	got := outsideLibc(rows, groups, stacks, map[uint32]string{10: "api", 20: "cache", 40: "java"})
	want := map[uint32]string{10: "Go runtime", 20: "", 40: "JVM"}
	if len(got) != len(want) {
		t.Fatalf("listed %+v, want pids %v", got, want)
	}
	for _, o := range got {
		if rt, ok := want[o.PID]; !ok || o.Runtime != rt || o.Hint != OutsideLibcHint {
			t.Errorf("%+v: want runtime %q", o, rt)
		}
	}
	if got[0].PID != 20 || got[0].GrowingBytes != 40*mib || got[0].LibcAllocations != 1 {
		t.Errorf("largest growth first: %+v", got[0])
	}
}
