//go:build linux

// Package growth is the growth probe set: who makes memory resident, in
// any runtime. Changes of a target's resident-set counters (kmem:rss_stat,
// measured against the counters themselves, see growth.bpf.c), seeded at
// each page fault (exceptions:page_fault_user/kernel), byte-sampled in the
// kernel with kernel and user stacks; exact totals per process; and each
// process's RSS over the window from /proc. Where -p mem says which
// allocations are still held (through libc's allocator), growth says which
// code touched new memory, whatever allocates it (the Go runtime, a JVM,
// V8, mmap).
package growth

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/spf13/pflag"

	"github.com/bpfsnap/bpfsnap/capture/recorder"
	"github.com/bpfsnap/bpfsnap/formats"
	"github.com/bpfsnap/bpfsnap/internal/unwind"
)

// New returns the growth probe set with the defaults its flags give.
func New() recorder.ProbeSet {
	return &growthProbe{sampleBytes: defaultSampleBytes, unwindFlag: string(recorder.UnwindAuto),
		stackSize: defaultStackSize, rssEvery: defaultRSSEvery}
}

const (
	// defaultSampleBytes: one sampled event per 64 KiB made resident on
	// average. A fault-heavy workload touching 1 GB/s (260k faults/s)
	// then sends ~16k events/s; a leak of tens of MiB gets hundreds of
	// samples (a few % of error), and the exact totals are kept anyway.
	defaultSampleBytes = 64 << 10
	// defaultStackSize: bytes of user stack copied per sampled event for
	// --growth-unwind auto: a fault's leaf is often a frameless libc
	// function (memset, memcpy) that hides its caller from frame pointers.
	defaultStackSize = 8192
	// defaultRSSEvery: how often each followed process's RSS is read.
	defaultRSSEvery = 250 * time.Millisecond
	// maxRSSProcs bounds the processes whose RSS is read in a whole-host
	// capture (those that made memory resident first).
	maxRSSProcs = 256
)

type growthProbe struct {
	drops  recorder.DropCounters
	s      *recorder.Session
	objs   bpfObjects
	links  []link.Link
	ring   *recorder.RingReader
	events *formats.TableWriter[formats.GrowthEvent]
	rss    *formats.TableWriter[formats.RSSSample]
	stacks *recorder.StackRecorder

	// Flags.
	sampleBytes uint64
	unwindFlag  string
	unwindMode  recorder.UnwindMode
	stackSize   int
	rssEvery    time.Duration

	unwound unwind.Counts
	hdr     bpfGrowthEvent // decoding buffer of the ring reader

	mu       sync.Mutex
	followed map[uint32]bool // pids whose RSS is read
	stop     chan struct{}
	done     chan struct{}
}

// growthDropNames names the kernel counters in the order of enum
// growth_drop.
var growthDropNames = formats.DropNames("growth", "ringbuf_full", "kernel_stack_failed", "user_regs_missing", "unmeasured", "totals_full")

func (*growthProbe) Name() string  { return "growth" }
func (*growthProbe) Default() bool { return false } // a program on every page fault of the host: opt-in

func (g *growthProbe) BindFlags(fs *pflag.FlagSet) {
	fs.Uint64Var(&g.sampleBytes, "growth-sample", g.sampleBytes, "growth: record one growth event per this many bytes made resident, on average (Poisson byte sampling, figures scaled back; 0: every event); per-process totals are exact either way")
	fs.StringVar(&g.unwindFlag, "growth-unwind", g.unwindFlag, "growth: user stacks: fp (frame pointers), auto or dwarf (copy --growth-stack-size bytes of stack per sampled event and unwind with CFI)")
	fs.IntVar(&g.stackSize, "growth-stack-size", g.stackSize, "growth: bytes of user stack copied per sampled event for --growth-unwind auto|dwarf")
	fs.DurationVar(&g.rssEvery, "growth-rss-every", g.rssEvery, "growth: how often each process's RSS is read from /proc")
}

func (g *growthProbe) Validate() error {
	mode, ok := recorder.ParseUnwindMode(g.unwindFlag)
	if !ok {
		return fmt.Errorf("--growth-unwind %q: want fp, auto or dwarf", g.unwindFlag)
	}
	g.unwindMode = mode
	if g.sampleBytes > 1<<40 {
		return fmt.Errorf("--growth-sample %d: at most %d", g.sampleBytes, uint64(1<<40))
	}
	if g.rssEvery < 10*time.Millisecond {
		return fmt.Errorf("--growth-rss-every %s: at least 10ms", g.rssEvery)
	}
	if mode != recorder.UnwindFP {
		return recorder.CheckStackCopy("--growth-stack-size", g.stackSize)
	}
	return nil
}

func (g *growthProbe) Start(s *recorder.Session) (map[string]string, error) {
	g.s = s
	g.followed = map[uint32]bool{}
	copyBytes := uint32(0)
	details := map[string]string{
		"sample_bytes": strconv.FormatUint(g.sampleBytes, 10),
		"unwind":       string(g.unwindMode),
		"page_size":    strconv.Itoa(os.Getpagesize()),
		"rss_every":    g.rssEvery.String(),
		"hooks":        "tp_btf/rss_stat, tp_btf/page_fault_user, tp_btf/page_fault_kernel",
	}
	if g.unwindMode != recorder.UnwindFP {
		copyBytes = uint32(g.stackSize)
		details["unwind.stack_bytes"] = strconv.Itoa(g.stackSize)
	}
	spec, err := loadBpf()
	if err != nil {
		return details, err
	}
	shift := 0
	for 1<<shift < os.Getpagesize() {
		shift++
	}
	cpus, err := ebpf.PossibleCPU()
	if err != nil {
		return details, err
	}
	vars := map[string]any{"sample_bytes": g.sampleBytes, "log2_mantissa": recorder.Log2MantissaTable(),
		"stack_size": copyBytes, "page_shift": uint32(shift), "nr_cpus": uint32(cpus)}
	if err := recorder.SetVariables(spec, vars); err != nil {
		return details, err
	}
	if err := s.LoadObjects(spec, &g.objs); err != nil {
		return details, err
	}
	g.events = formats.NewTable[formats.GrowthEvent](s.Writer(), formats.TableGrowthEvents)
	g.rss = formats.NewTable[formats.RSSSample](s.Writer(), formats.TableRSSSamples)
	g.stacks = s.Stacks()
	if g.ring, err = s.ReadRing(g.objs.GrowthEvents, g.handle); err != nil {
		return details, err
	}
	for _, p := range []struct {
		name string
		prog *ebpf.Program
	}{{"rss_stat", g.objs.RssChange}, {"page_fault_user", g.objs.FaultUser}, {"page_fault_kernel", g.objs.FaultKernel}} {
		l, err := link.AttachTracing(link.TracingOptions{Program: p.prog})
		if err != nil {
			return details, fmt.Errorf("attaching tp_btf/%s: %w", p.name, err)
		}
		g.links = append(g.links, l)
	}
	if s.Filtered() {
		for _, pid := range s.TargetPIDs() {
			g.follow(pid)
		}
		s.OnProcess(func(ev formats.ProcessEvent) {
			if ev.Kind == formats.ProcessFork || ev.Kind == formats.ProcessScan {
				g.follow(ev.PID)
			}
		})
	}
	g.stop, g.done = make(chan struct{}), make(chan struct{})
	go g.sampleRSS()
	return details, nil
}

// follow adds a process to those whose RSS is read.
func (g *growthProbe) follow(pid uint32) {
	g.mu.Lock()
	if len(g.followed) < maxRSSProcs || g.followed[pid] {
		g.followed[pid] = true
	}
	g.mu.Unlock()
}

// kinds names the table's kind of each growth_kind.
var kinds = map[bpfGrowthKind]string{
	bpfGrowthKindGROWTH_ANON: formats.GrowthAnon, bpfGrowthKindGROWTH_FILE: formats.GrowthFile, bpfGrowthKindGROWTH_SHMEM: formats.GrowthShmem,
}

var (
	growthHeadSize = int(unsafe.Offsetof(bpfGrowthEvent{}.Stack))
)

func (g *growthProbe) handle(raw []byte) {
	if len(raw) < growthHeadSize {
		return
	}
	// The record ends after the copied stack bytes: copy the head out and
	// view the stack in place.
	head := unsafe.Slice((*byte)(unsafe.Pointer(&g.hdr)), growthHeadSize)
	copy(head, raw[:growthHeadSize])
	h := &g.hdr
	kind, ok := kinds[bpfGrowthKind(h.Kind)]
	if !ok {
		return
	}
	g.s.AwaitProcesses(h.TimeNs)
	flags := bpfGrowthFlag(h.Flags)
	row := formats.GrowthEvent{TimeNs: h.TimeNs, PID: h.Pid, TID: h.Tid, Kind: kind, Bytes: h.Bytes, Weight: 1,
		Fault: flags&bpfGrowthFlagGROWTH_F_FAULT != 0, Addr: h.Addr, Unmeasured: flags&bpfGrowthFlagGROWTH_F_UNMEASURED != 0}
	if flags&bpfGrowthFlagGROWTH_F_SAMPLED != 0 {
		row.Weight = formats.MemSampleWeight(h.Bytes, g.sampleBytes)
	}
	// The registers were read where the thread entered the kernel: the
	// leaf is the faulting instruction itself, not a return.
	nb := max(min(int(h.StackBytes), len(raw)-growthHeadSize), 0)
	row.StackID = g.stacks.RecordWalkOrCopy(h.Pid, recorder.StackOf(h.Kstack[:], h.KstackBytes), recorder.StackOf(h.Ustack[:], h.UstackBytes),
		unwind.Regs{PC: h.Ip, SP: h.Sp, BP: h.Bp}, raw[growthHeadSize:growthHeadSize+nb], g.unwindMode, &g.unwound)
	if !g.s.Filtered() {
		g.follow(h.Pid)
	}
	_ = g.events.Write(row)
}

// sampleRSS reads the followed processes' memory every rssEvery until Stop.
func (g *growthProbe) sampleRSS() {
	defer close(g.done)
	tick := time.NewTicker(g.rssEvery)
	defer tick.Stop()
	g.readRSS()
	for {
		select {
		case <-g.stop:
			g.readRSS()
			return
		case <-tick.C:
			g.readRSS()
		}
	}
}

func (g *growthProbe) readRSS() {
	g.mu.Lock()
	pids := make([]uint32, 0, len(g.followed))
	for pid := range g.followed {
		pids = append(pids, pid)
	}
	g.mu.Unlock()
	sort.Slice(pids, func(i, j int) bool { return pids[i] < pids[j] })
	for _, pid := range pids {
		now := recorder.MonoNow()
		data, err := os.ReadFile(filepath.Join(g.s.ProcRoot(), recorder.Itoa(pid), "status"))
		if err != nil {
			continue // exited: its last reading stands
		}
		if row, ok := parseStatus(string(data)); ok {
			row.TimeNs, row.PID = now, pid
			_ = g.rss.Write(row)
		}
	}
}

// parseStatus reads the memory lines of /proc/PID/status (kB) into bytes.
func parseStatus(status string) (formats.RSSSample, bool) {
	var r formats.RSSSample
	fields := map[string]*uint64{"VmRSS": &r.RSS, "RssAnon": &r.RSSAnon, "RssFile": &r.RSSFile,
		"RssShmem": &r.RSSShmem, "VmData": &r.VMData, "VmSize": &r.VMSize}
	seen := false
	for _, l := range strings.Split(status, "\n") {
		key, rest, ok := strings.Cut(l, ":")
		if !ok {
			continue
		}
		dst := fields[key]
		if dst == nil {
			continue
		}
		f := strings.Fields(rest)
		if len(f) == 0 {
			continue
		}
		kb, err := strconv.ParseUint(f[0], 10, 64)
		if err != nil {
			continue
		}
		*dst = kb << 10
		seen = true
	}
	return r, seen // kernel threads have no Vm lines
}

func (g *growthProbe) Drops() map[string]uint64 {
	out := g.drops.Read(g.objs.Drops, growthDropNames)
	for reason, n := range g.unwound.Map() {
		if reason != unwind.ReasonEnd.String() {
			out["growth.unwind_"+reason] = n
		}
	}
	return out
}

func (g *growthProbe) Stop(s *recorder.Session) error {
	for _, l := range g.links {
		l.Close()
	}
	g.links = nil
	if g.stop != nil {
		close(g.stop)
		<-g.done
	}
	if g.ring != nil {
		g.ring.Stop()
	}
	var err error
	// The kernel's totals span the whole run; a flight recorder's archive
	// holds its last window only, whose growth the sampled rows estimate.
	if g.objs.Totals != nil && s.Ring() == 0 {
		err = g.writeTotals(s)
	}
	if total := g.unwound.Total(); total > 0 {
		complete := g.unwound.Map()[unwind.ReasonEnd.String()]
		recorder.MergeProbeDetails(s, "growth", map[string]string{"unwind.walks": strconv.FormatUint(total, 10),
			"unwind.complete":     strconv.FormatUint(complete, 10),
			"unwind.complete_pct": strconv.FormatFloat(100*float64(complete)/float64(total), 'f', 1, 64)})
	}
	g.drops.Freeze(g.objs.Drops, growthDropNames)
	return errors.Join(err, g.objs.Close())
}

// writeTotals writes the kernel's exact per-process totals (summed over
// CPUs), largest first.
func (g *growthProbe) writeTotals(s *recorder.Session) error {
	var rows []formats.GrowthTotal
	var pid uint32
	var perCPU []bpfGrowthTotal
	it := g.objs.Totals.Iterate()
	for it.Next(&pid, &perCPU) {
		r := formats.GrowthTotal{PID: pid}
		for _, t := range perCPU {
			r.FileBytes += t.Bytes[0]
			r.AnonBytes += t.Bytes[1]
			r.ShmemBytes += t.Bytes[3]
			r.Changes += t.Changes
		}
		rows = append(rows, r)
	}
	if err := it.Err(); err != nil {
		s.Warnf("growth: reading the per-process totals: %v", err)
	}
	sort.Slice(rows, func(i, j int) bool {
		return rows[i].AnonBytes+rows[i].ShmemBytes > rows[j].AnonBytes+rows[j].ShmemBytes
	})
	if len(rows) == 0 {
		return nil
	}
	return formats.NewTable[formats.GrowthTotal](s.Writer(), formats.TableGrowthTotals).Write(rows...)
}

// Event is the ring record of a growth event (struct growth_event of
// growth.bpf.c), for benchmarks that build records without a kernel.
type Event = bpfGrowthEvent
