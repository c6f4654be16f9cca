//go:build linux

package cpu

import (
	"fmt"
	"strconv"
	"unsafe"

	"github.com/spf13/pflag"

	"github.com/bpfsnap/bpfsnap/capture/recorder"
	"github.com/bpfsnap/bpfsnap/formats"
)

// New returns the cpu probe set; its flags are bound by BindFlags.
func New() recorder.ProbeSet {
	// The defaults live here, not only in BindFlags, so a set made without
	// flags (the in-process tests, a library user) samples like the CLI.
	// 99 Hz, as perf's users do: not a multiple of common timer ticks, so
	// sampling does not lock step with periodic work, and cheap (<1%).
	// 16 KiB of stack, the most the BPF buffer holds, where perf copies
	// 8 KiB: OpenSSL's RSA exponentiation keeps an 11 KiB frame, and with
	// 8 KiB a third of a TLS server's handshake samples stopped inside it
	// (docs/architecture.md, DWARF unwinding).
	return &cpuProbe{freq: 99, unwindFlag: string(recorder.UnwindAuto), stackSize: recorder.MaxStackCopy}
}

// cpuProbe samples on-CPU stacks with a perf_event program on the software
// cpu-clock event of every CPU.
type cpuProbe struct {
	drops recorder.DropCounters
	s     *recorder.Session
	freq  uint64
	objs  bpfObjects
	perf  *recorder.PerfLinks
	ring  *recorder.RingReader
	table *formats.TableWriter[formats.CPUSample]

	// --unwind auto|dwarf samples through cpu_dwarf.go instead.
	unwindFlag string
	unwindMode recorder.UnwindMode
	stackSize  int
	keepStack  bool
	dwarf      *dwarfSampler
}

// cpuDropNames names the kernel counters in the order of enum cpu_drop.
var cpuDropNames = formats.DropNames("cpu", "ringbuf_full", "kernel_stack_failed", "user_stack_failed")

func (*cpuProbe) Name() string  { return "cpu" }
func (*cpuProbe) Default() bool { return true }

func (c *cpuProbe) BindFlags(fs *pflag.FlagSet) {
	fs.Uint64Var(&c.freq, "freq", c.freq, "cpu: samples per second per CPU")
	fs.StringVar(&c.unwindFlag, "unwind", c.unwindFlag, "cpu: user stack unwinding: auto (CFI where the binary has it, frame pointers elsewhere), fp, dwarf")
	fs.IntVar(&c.stackSize, "stack-size", c.stackSize, "cpu: bytes of user stack copied per sample for --unwind auto|dwarf (like perf --call-graph dwarf,SIZE)")
	fs.BoolVar(&c.keepStack, "keep-stack-bytes", false, "cpu: also store the raw user stack copies in the archive (they may hold secrets)")
}

func (c *cpuProbe) Validate() error {
	if c.freq == 0 || c.freq > 10000 {
		return fmt.Errorf("--freq %d is outside 1..10000 Hz", c.freq)
	}
	mode, ok := recorder.ParseUnwindMode(c.unwindFlag)
	if !ok {
		return fmt.Errorf("--unwind %q: want auto, fp or dwarf", c.unwindFlag)
	}
	c.unwindMode = mode
	if mode != recorder.UnwindFP {
		return recorder.CheckStackCopy("--stack-size", c.stackSize)
	}
	return nil
}

// Start runs after Validate (the unwind mode is parsed there).
func (c *cpuProbe) Start(s *recorder.Session) (map[string]string, error) {
	c.s = s
	details := map[string]string{"freq": strconv.FormatUint(c.freq, 10), "event": "cpu-clock", "unwind": "frame pointers"}
	if c.unwindMode != recorder.UnwindFP {
		return details, c.startDWARF(s, details)
	}
	spec, err := loadBpf()
	if err != nil {
		return details, err
	}
	if err := s.LoadObjects(spec, &c.objs); err != nil {
		return details, err
	}
	c.table = formats.NewTable[formats.CPUSample](s.Writer(), formats.TableCPUSamples)
	stacks := s.Stacks()
	c.ring, err = s.ReadRing(c.objs.CpuSamples, func(raw []byte) { c.handle(stacks, raw) })
	if err != nil {
		return details, err
	}
	if c.perf, err = recorder.AttachCPUClock(c.objs.SampleCpu, c.freq); err != nil {
		return details, err
	}
	return details, nil
}

func (c *cpuProbe) handle(stacks *recorder.StackRecorder, raw []byte) {
	if len(raw) < int(unsafe.Sizeof(bpfCpuSample{})) {
		return
	}
	ev := (*bpfCpuSample)(unsafe.Pointer(&raw[0]))
	c.s.AwaitProcesses(ev.TimeNs)
	kernel := returnAddresses(stackOf(ev.Kstack[:], ev.KstackBytes))
	// rbp followed through code without frame pointers yields data:
	// keep the walk up to the first frame that is no return address.
	user := returnAddresses(stacks.TrimFramePointerStack(ev.Pid, stackOf(ev.Ustack[:], ev.UstackBytes)))
	_ = c.table.Write(formats.CPUSample{
		TimeNs:   ev.TimeNs,
		CPU:      ev.Cpu,
		PID:      ev.Pid,
		TID:      ev.Tid,
		CgroupID: ev.CgroupId,
		Comm:     recorder.CString(ev.Comm[:]),
		StackID:  stacks.Record(ev.Pid, kernel, user),
	})
}

// stackOf trims a bpf_get_stack buffer to the frames it filled.
func stackOf(buf []uint64, nbytes int32) []uint64 {
	n := int(nbytes) / 8
	if n <= 0 {
		return nil
	}
	return buf[:min(n, len(buf))]
}

// returnAddresses copies a stack and moves every frame but the leaf back by
// one byte: those are return addresses, which point after the call and may
// already belong to the next function or line.
func returnAddresses(raw []uint64) []uint64 {
	if len(raw) == 0 {
		return nil
	}
	out := make([]uint64, len(raw))
	for i, pc := range raw {
		out[i] = pc
		if i > 0 && pc > 0 {
			out[i]--
		}
	}
	return out
}

func (c *cpuProbe) Drops() map[string]uint64 {
	if c.dwarf != nil {
		return c.dwarf.drops()
	}
	out := c.drops.Read(c.objs.Drops, cpuDropNames)
	if c.s != nil {
		for k, v := range c.s.Stacks().UnwindDrops("cpu") {
			out[k] = v
		}
	}
	return out
}

func (c *cpuProbe) Stop(s *recorder.Session) error {
	if c.dwarf != nil {
		return c.dwarf.stop(s)
	}
	c.perf.Close()
	c.ring.Stop()
	recorder.MergeProbeDetails(s, "cpu", s.Stacks().FramePointerDetails())
	c.drops.Freeze(c.objs.Drops, cpuDropNames)
	return c.objs.Close()
}
