//go:build linux

package cpu

import (
	"fmt"
	"strconv"
	"unsafe"

	"github.com/bpfsnap/bpfsnap/capture/recorder"
	"github.com/bpfsnap/bpfsnap/formats"
	"github.com/bpfsnap/bpfsnap/internal/unwind"
)

// unwindDropNames names the kernel counters in the order of enum unwind_drop.
var unwindDropNames = formats.DropNames("cpu", "ringbuf_full", "kernel_stack_failed", "user_stack_failed", "user_regs_missing")

// dwarfSampler is the cpu probe's sampler for --unwind auto|dwarf: the BPF
// program copies user registers and the top of the user stack, and the ring
// reader unwinds each sample with the binaries' CFI as it arrives (bounded
// memory: the raw bytes never outlive the callback).
type dwarfSampler struct {
	kdrops    recorder.DropCounters
	mode      recorder.UnwindMode
	stackSize int
	objs      dwarfObjects
	perf      *recorder.PerfLinks
	ring      *recorder.RingReader
	stacks    *recorder.StackRecorder
	raw       *formats.TableWriter[formats.StackBytes] // only with --keep-stack-bytes
}

func (c *cpuProbe) startDWARF(s *recorder.Session, details map[string]string) error {
	d := &dwarfSampler{mode: c.unwindMode, stackSize: c.stackSize}
	c.dwarf = d
	details["unwind"] = string(d.mode)
	details["unwind.stack_bytes"] = strconv.Itoa(d.stackSize)
	details["unwind.keep_stack_bytes"] = strconv.FormatBool(c.keepStack)
	spec, err := loadDwarf()
	if err != nil {
		return err
	}
	if v, ok := spec.Variables["stack_size"]; ok {
		if err := v.Set(uint32(d.stackSize)); err != nil {
			return fmt.Errorf("setting stack_size: %w", err)
		}
	}
	if err := s.LoadObjects(spec, &d.objs); err != nil {
		return err
	}
	c.table = formats.NewTable[formats.CPUSample](s.Writer(), formats.TableCPUSamples)
	d.stacks = s.Stacks()
	if c.keepStack {
		d.raw = formats.NewTable[formats.StackBytes](s.Writer(), formats.TableStackBytes)
	}
	d.ring, err = s.ReadRing(d.objs.UnwindSamples, func(raw []byte) { c.handleDWARF(raw) })
	if err != nil {
		return err
	}
	d.perf, err = recorder.AttachCPUClock(d.objs.SampleCpuDwarf, c.freq)
	return err
}

// unwindHeaderSize is the fixed part of an unwind_sample before the stack
// bytes; the ring record is cut right after the copied bytes.
var unwindHeaderSize = int(unsafe.Offsetof(dwarfUnwindSample{}.Stack))

func (c *cpuProbe) handleDWARF(raw []byte) {
	if len(raw) < unwindHeaderSize {
		return
	}
	// The record is shorter than the Go struct: copy the header and view
	// the stack bytes in place instead of casting past the end.
	var hdr dwarfUnwindSample
	copy(unsafe.Slice((*byte)(unsafe.Pointer(&hdr)), unwindHeaderSize), raw[:unwindHeaderSize])
	n := min(int(hdr.StackBytes), len(raw)-unwindHeaderSize)
	stack := raw[unwindHeaderSize : unwindHeaderSize+n]
	d := c.dwarf
	c.s.AwaitProcesses(hdr.TimeNs)
	kernel := returnAddresses(stackOf(hdr.Kstack[:], hdr.KstackBytes))
	fp := stackOf(hdr.Ustack[:], hdr.UstackBytes)
	id := d.stacks.RecordUserStack(hdr.Pid, kernel, recorder.UserStack{
		Regs:         unwind.Regs{PC: hdr.Ip, SP: hdr.Sp, BP: hdr.Bp},
		Bytes:        stack,
		FramePointer: fp,
	}, d.mode)
	if d.raw != nil {
		_ = d.raw.Write(formats.StackBytes{TimeNs: hdr.TimeNs, PID: hdr.Pid, TID: hdr.Tid, StackID: id,
			IP: hdr.Ip, SP: hdr.Sp, BP: hdr.Bp, Bytes: append([]byte(nil), stack...)})
	}
	_ = c.table.Write(formats.CPUSample{
		TimeNs:   hdr.TimeNs,
		CPU:      hdr.Cpu,
		PID:      hdr.Pid,
		TID:      hdr.Tid,
		CgroupID: hdr.CgroupId,
		Comm:     recorder.CString(hdr.Comm[:]),
		StackID:  id,
	})
}

func (d *dwarfSampler) drops() map[string]uint64 {
	out := d.kdrops.Read(d.objs.Drops, unwindDropNames)
	if d.stacks != nil {
		for k, v := range d.stacks.UnwindDrops("cpu") {
			out[k] = v
		}
	}
	return out
}

func (d *dwarfSampler) stop(s *recorder.Session) error {
	d.perf.Close()
	d.ring.Stop()
	if d.stacks != nil {
		recorder.MergeProbeDetails(s, "cpu", d.stacks.UnwindDetails(d.mode, d.stackSize))
	}
	d.kdrops.Freeze(d.objs.Drops, unwindDropNames)
	return d.objs.Close()
}
