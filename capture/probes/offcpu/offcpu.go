//go:build linux

// Package offcpu is the offcpu probe set: where target threads wait off
// the CPU (blocked, then in the run queue), with the stack they left it
// from, from the scheduler's BTF tracepoints; and the CPU throttling of
// their cgroups.
package offcpu

import (
	"encoding/binary"
	"fmt"
	"io"
	"strconv"
	"time"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/spf13/pflag"

	"github.com/bpfsnap/bpfsnap/capture/recorder"
	"github.com/bpfsnap/bpfsnap/formats"
	"github.com/bpfsnap/bpfsnap/internal/unwind"
)

// Defaults, measured on this project's 2-core VM (docs/architecture.md,
// "offcpu probe set"): intervals of 1 ms and more are what a slow request
// is made of and are rare enough to send one by one; shorter ones are
// summed per thread and stack over at most 10 ms, so a pair of threads
// switching 250k times a second sends a few hundred records a second, and
// a request's share of a summed row is off by at most that span at its
// edges.
const (
	defaultExact     = time.Millisecond
	defaultMerge     = 10 * time.Millisecond
	defaultStackSize = 8192
)

// New returns the offcpu probe set; its flags are bound by BindFlags.
func New() recorder.ProbeSet {
	return &offcpuProbe{exact: defaultExact, merge: defaultMerge, unwindFlag: string(recorder.UnwindAuto), stackSize: defaultStackSize}
}

type offcpuProbe struct {
	s        *recorder.Session
	exact    time.Duration
	merge    time.Duration
	floor    bool
	objs     bpfObjects
	links    []link.Link
	ring     *recorder.RingReader
	table    *formats.TableWriter[formats.OffCPUInterval]
	cgTable  *formats.TableWriter[formats.CgroupCPU]
	throttle *throttleReader
	drops    recorder.DropCounters

	unwindFlag string
	unwindMode recorder.UnwindMode
	stackSize  int
	unwound    recorder.UnwindCounts

	// keys maps the kernel's stack keys to the session's stack ids; only
	// the ring reader touches it (and Stop, after the reader ended).
	keys    map[uint64]uint64
	missing uint64 // intervals whose stack record never came
	skipped uint64 // scheduler events the kernel did not run the programs for, at Stop
}

// offcpuDropNames names the kernel counters in the order of enum offcpu_drop.
var offcpuDropNames = formats.DropNames("offcpu", "ringbuf_full", "stack_ringbuf_full", "thread_state_failed", "kernel_stack_failed")

func (*offcpuProbe) Name() string { return "offcpu" }

// Default is false: every context switch of a target runs the programs
// (~0.5–1 µs with a stack walk, see docs/architecture.md), which a server
// switching 100k times a second feels; it is asked for with -p offcpu.
func (*offcpuProbe) Default() bool { return false }

func (o *offcpuProbe) BindFlags(fs *pflag.FlagSet) {
	fs.DurationVar(&o.exact, "offcpu-exact", o.exact, "offcpu: off-CPU intervals at least this long are recorded one by one; shorter ones are summed per thread and stack")
	fs.DurationVar(&o.merge, "offcpu-merge", o.merge, "offcpu: the longest span one row of summed short intervals may cover")
	fs.StringVar(&o.unwindFlag, "offcpu-unwind", o.unwindFlag, "offcpu: user stacks: auto (frame pointers, and a copy of the stack unwound with CFI once per distinct stack) or fp")
	fs.IntVar(&o.stackSize, "offcpu-stack-size", o.stackSize, "offcpu: bytes of user stack copied per distinct stack for --offcpu-unwind auto")
	fs.BoolVar(&o.floor, "offcpu-floor", false, "offcpu: attach empty programs at the same hooks (benchmark floor)")
	_ = fs.MarkHidden("offcpu-floor")
}

func (o *offcpuProbe) Validate() error {
	if o.exact <= 0 || o.merge <= 0 {
		return fmt.Errorf("--offcpu-exact and --offcpu-merge must be positive")
	}
	mode, ok := recorder.ParseUnwindMode(o.unwindFlag)
	if !ok || mode == recorder.UnwindDWARF {
		return fmt.Errorf("--offcpu-unwind %q: want auto or fp", o.unwindFlag)
	}
	o.unwindMode = mode
	if mode == recorder.UnwindAuto {
		return recorder.CheckStackCopy("--offcpu-stack-size", o.stackSize)
	}
	return nil
}

func (o *offcpuProbe) Start(s *recorder.Session) (map[string]string, error) {
	o.s = s
	o.keys = map[uint64]uint64{}
	details := map[string]string{
		"hooks":  "tp_btf sched_switch, sched_waking, sched_wakeup_new",
		"exact":  o.exact.String(),
		"merge":  o.merge.String(),
		"unwind": string(o.unwindMode),
	}
	spec, err := loadBpf()
	if err != nil {
		return details, err
	}
	copyBytes := uint32(0)
	if o.unwindMode == recorder.UnwindAuto {
		copyBytes = uint32(o.stackSize)
		details["unwind.stack_bytes"] = strconv.Itoa(o.stackSize)
	}
	for name, v := range map[string]any{"exact_ns": uint64(o.exact), "merge_ns": uint64(o.merge), "copy_bytes": copyBytes} {
		if err := spec.Variables[name].Set(v); err != nil {
			return details, fmt.Errorf("setting %s: %w", name, err)
		}
	}
	if err := s.LoadObjects(spec, &o.objs); err != nil {
		return details, err
	}
	progs := []*ebpf.Program{o.objs.OffcpuSwitch, o.objs.OffcpuWaking, o.objs.OffcpuWakeupNew}
	if o.floor {
		details["floor"] = "empty programs"
		progs = []*ebpf.Program{o.objs.FloorSwitch, o.objs.FloorWaking, o.objs.FloorWakeupNew}
	} else {
		o.table = formats.NewTable[formats.OffCPUInterval](s.Writer(), formats.TableOffCPU)
		o.cgTable = formats.NewTable[formats.CgroupCPU](s.Writer(), formats.TableCgroupCPU)
		stacks := s.Stacks()
		if o.ring, err = s.ReadRing(o.objs.OffcpuEvents, func(raw []byte) { o.handle(stacks, raw) }); err != nil {
			return details, err
		}
	}
	for _, p := range progs {
		l, err := link.AttachTracing(link.TracingOptions{Program: p})
		if err != nil {
			return details, fmt.Errorf("attaching %s: %w", p, err)
		}
		o.links = append(o.links, l)
	}
	if !o.floor {
		o.throttle = newThrottleReader(s)
		_ = o.cgTable.Write(o.throttle.snapshot(formats.CgroupPhaseStart)...)
	}
	return details, nil
}

func (o *offcpuProbe) handle(stacks *recorder.StackRecorder, raw []byte) {
	if len(raw) < 4 {
		return
	}
	switch bpfOffcpuKind(binary.NativeEndian.Uint32(raw)) {
	case bpfOffcpuKindOFFCPU_INTERVAL:
		if len(raw) >= int(unsafe.Sizeof(bpfOffcpuInterval{})) {
			o.writeInterval((*bpfOffcpuInterval)(unsafe.Pointer(&raw[0])))
		}
	case bpfOffcpuKindOFFCPU_STACK:
		o.recordStack(stacks, raw)
	}
}

// stackHead is the part of an offcpu_stack record before the stack copy.
const stackHead = int(unsafe.Offsetof(bpfOffcpuStack{}.Copy))

// recordStack turns a stack record into a stack of the session's
// StackRecorder and remembers its key.
func (o *offcpuProbe) recordStack(stacks *recorder.StackRecorder, raw []byte) {
	if len(raw) < stackHead {
		return
	}
	st := (*bpfOffcpuStack)(unsafe.Pointer(&raw[0]))
	if _, ok := o.keys[st.Key]; ok {
		return // sent twice (two CPUs met it at once, or after an LRU eviction)
	}
	o.s.AwaitProcesses(recorder.MonoNow())
	copied := max(min(int(st.CopyBytes), len(raw)-stackHead), 0)
	id := stacks.RecordWalkOrCopy(st.Pid, recorder.StackOf(st.Kstack[:], st.KstackBytes), recorder.StackOf(st.Ustack[:], st.UstackBytes),
		unwind.Regs{PC: st.Ip, SP: st.Sp, BP: st.Bp}, raw[stackHead:stackHead+copied], o.unwindMode, &o.unwound.Counts)
	o.keys[st.Key] = id
}

func (o *offcpuProbe) writeInterval(iv *bpfOffcpuInterval) {
	row := formats.OffCPUInterval{
		StartNs: iv.StartNs, EndNs: iv.EndNs, BlockedNs: iv.BlockedNs, RunqueueNs: iv.RunqNs,
		Count: iv.Count, PID: iv.Pid, TID: iv.Tid, State: iv.State, Syscall: iv.Syscall,
		WakerPID: iv.WakerPid, WakerTID: iv.WakerTid,
		Preempted: iv.Flags&uint32(bpfOffcpuFlagOFFCPU_PREEMPTED) != 0,
		NewThread: iv.Flags&uint32(bpfOffcpuFlagOFFCPU_NEW) != 0,
		IOWait:    iv.Flags&uint32(bpfOffcpuFlagOFFCPU_IOWAIT) != 0,
		NoWakeup:  iv.Flags&uint32(bpfOffcpuFlagOFFCPU_NO_WAKEUP) != 0,
		Open:      iv.Flags&uint32(bpfOffcpuFlagOFFCPU_OPEN) != 0,
	}
	if iv.StackKey != 0 {
		if id, ok := o.keys[iv.StackKey]; ok {
			row.StackID = id
		} else {
			o.missing++
		}
	}
	_ = o.table.Write(row)
}

// drain has the kernel send what it still holds once the scheduler
// programs are detached (the offcpu_drain task iterator): each thread's
// accumulated short intervals, and the interval of a thread still off the
// CPU, as open up to now. The records go through the ring, which is
// drained after.
func (o *offcpuProbe) drain() error {
	it, err := link.AttachIter(link.IterOptions{Program: o.objs.OffcpuDrain})
	if err != nil {
		return err
	}
	defer it.Close()
	r, err := it.Open()
	if err != nil {
		return err
	}
	defer r.Close()
	_, err = io.Copy(io.Discard, r) // reading runs the iterator
	return err
}

func (o *offcpuProbe) Drops() map[string]uint64 {
	out := o.drops.Read(o.objs.Drops, offcpuDropNames)
	if o.missing > 0 {
		out["offcpu.stack_missing"] = o.missing
	}
	skipped := o.skipped
	if o.links != nil {
		skipped = recorder.RecursionMisses(o.objs.OffcpuSwitch, o.objs.OffcpuWaking, o.objs.OffcpuWakeupNew)
	}
	if skipped > 0 {
		out["offcpu.runs_skipped"] = skipped
	}
	if o.throttle != nil && o.throttle.unreadable > 0 {
		out["offcpu.cgroup_unreadable"] = o.throttle.unreadable
	}
	o.unwound.AddDrops("offcpu", out)
	return out
}

func (o *offcpuProbe) Stop(s *recorder.Session) error {
	for _, l := range o.links {
		l.Close()
	}
	o.links = nil
	if o.ring != nil {
		if err := o.drain(); err != nil {
			s.Warnf("offcpu: the intervals still held in the kernel at the end were not read: %v", err)
		}
		o.ring.Stop()
	}
	if o.throttle != nil {
		_ = o.cgTable.Write(o.throttle.snapshot(formats.CgroupPhaseEnd)...)
	}
	if d := o.unwound.Details(); d != nil {
		recorder.MergeProbeDetails(s, "offcpu", d)
	}
	o.drops.Freeze(o.objs.Drops, offcpuDropNames)
	o.skipped = recorder.RecursionMisses(o.objs.OffcpuSwitch, o.objs.OffcpuWaking, o.objs.OffcpuWakeupNew)
	return o.objs.Close()
}
