//go:build linux

// Package process is the always-on probe set: fork, exec and exit of the
// target processes from BTF tracepoints (tp_btf), and the kernel side of
// following process trees and pod cgroups. The recorder's /proc scan adds
// what already runs; every other probe set attributes its events through
// the process rows.
package process

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/cilium/ebpf/link"

	"github.com/bpfsnap/bpfsnap/capture/recorder"
	"github.com/bpfsnap/bpfsnap/formats"
)

// dropNames names the kernel's loss counters, in the order of enum
// proc_drop (process.bpf.c).
var dropNames = formats.DropNames("process", "ringbuf_full", "targets_full")

// Probe implements recorder.ProcessProbe.
type Probe struct {
	kdrops recorder.DropCounters
	objs   bpfObjects
	links  []link.Link
	ring   *recorder.RingReader
}

// New returns the process probe set, ready to start.
func New() *Probe { return &Probe{} }

func (*Probe) Name() string { return "process" }

func (p *Probe) Start(s *recorder.Session) (map[string]string, error) {
	spec, err := loadBpf()
	if err != nil {
		return nil, err
	}
	// Name selectors may match pods that start later (the session adds
	// their cgroups with FollowCgroup), so the kernel checks cgroups even
	// if none matched yet.
	byCgroup := s.FilterCgroups()
	if err := spec.Variables["filter_cgroups"].Set(byCgroup); err != nil {
		return nil, fmt.Errorf("setting filter_cgroups: %w", err)
	}
	if err := s.LoadObjects(spec, &p.objs); err != nil {
		return nil, err
	}
	for _, id := range s.TargetCgroupIDs() {
		if err := p.FollowCgroup(id); err != nil {
			return nil, fmt.Errorf("adding cgroup %d to the target map: %w", id, err)
		}
	}
	for _, prog := range []struct {
		name   string
		attach func() (link.Link, error)
	}{
		{"sched_process_fork", func() (link.Link, error) { return link.AttachTracing(link.TracingOptions{Program: p.objs.HandleFork}) }},
		{"sched_process_exec", func() (link.Link, error) { return link.AttachTracing(link.TracingOptions{Program: p.objs.HandleExec}) }},
		{"sched_process_exit", func() (link.Link, error) { return link.AttachTracing(link.TracingOptions{Program: p.objs.HandleExit}) }},
	} {
		l, err := prog.attach()
		if err != nil {
			return nil, fmt.Errorf("attaching %s: %w", prog.name, err)
		}
		p.links = append(p.links, l)
	}
	// Optional: OOM kills are recorded when the tracepoint can be found
	// (tracefs mounted).
	if l, err := link.Tracepoint("oom", "mark_victim", p.objs.HandleOom, nil); err != nil {
		s.Warnf("attaching oom:mark_victim: %v (OOM kills are not recorded; mount tracefs at /sys/kernel/tracing)", err)
	} else {
		p.links = append(p.links, l)
	}
	if byCgroup {
		// Optional: fork and exec already catch what joins a targeted
		// cgroup; this adds processes moved there that never exec.
		if l, err := link.AttachTracing(link.TracingOptions{Program: p.objs.HandleCgroupAttach}); err != nil {
			s.Warnf("attaching cgroup_attach_task: %v (processes moved into a targeted cgroup are followed from their next fork or exec)", err)
		} else {
			p.links = append(p.links, l)
		}
	}
	p.ring, err = s.ReadProcessRing(p.objs.ProcessEvents, func(raw []byte) { p.handle(s, raw) })
	return nil, err
}

// FollowCgroup adds a cgroup v2 id to the kernel's target_cgroups: what is
// forked or exec'd there from now on is followed.
func (p *Probe) FollowCgroup(id uint64) error {
	return p.objs.TargetCgroups.Put(id, uint8(1))
}

func (p *Probe) handle(s *recorder.Session, raw []byte) {
	var ev bpfProcessEvent
	if err := binary.Read(bytes.NewReader(raw), binary.NativeEndian, &ev); err != nil {
		return
	}
	row := formats.ProcessEvent{
		TimeNs:   ev.TimeNs,
		PID:      ev.Pid,
		PPID:     ev.Ppid,
		Comm:     recorder.CString(ev.Comm[:]),
		CgroupID: ev.CgroupId,
		ExitCode: ev.ExitCode,
		StartNs:  ev.StartNs,
		MntNS:    uint64(ev.MntNs),
		PidNS:    uint64(ev.PidNs),
		NSPid:    ev.NsPid,
	}
	switch bpfProcKind(ev.Kind) {
	case bpfProcKindPROC_FORK:
		row.Kind = formats.ProcessFork
	case bpfProcKindPROC_EXEC:
		row.Kind = formats.ProcessExec
		row.Exe = recorder.CString(ev.Filename[:])
		args := argBytes(ev.Args[:min(int(ev.ArgsLen), len(ev.Args))])
		if int(ev.ArgsLen) >= len(ev.Args)-1 {
			// The kernel copy is truncated; /proc has more while the
			// process lives.
			args = s.ProcArgsLonger(ev.Pid, args)
		}
		row.Cmdline = s.Cmdline(args)
	case bpfProcKindPROC_EXIT:
		row.Kind = formats.ProcessExit
	case bpfProcKindPROC_OOM:
		// The victim still runs: its name from /proc (the event has none).
		row.Kind = formats.ProcessOOM
		if b, err := os.ReadFile(filepath.Join(s.ProcRoot(), strconv.FormatUint(uint64(ev.Pid), 10), "comm")); err == nil {
			row.Comm = strings.TrimSpace(string(b))
		}
	case bpfProcKindPROC_ATTACH:
		// Moved into a targeted cgroup: running, so /proc has the rest.
		row.Kind = formats.ProcessInfo
		row.Exe, _ = os.Readlink(filepath.Join(s.ProcRoot(), strconv.FormatUint(uint64(ev.Pid), 10), "exe"))
		row.Cmdline = s.ReadCmdline(ev.Pid)
	default:
		return
	}
	row.CgroupPath = s.Cgroups().Path(ev.CgroupId)
	s.WriteProcess(row)
}

func (p *Probe) Drops() map[string]uint64 { return p.kdrops.Read(p.objs.Drops, dropNames) }

func (p *Probe) Stop(*recorder.Session) error {
	for _, l := range p.links {
		l.Close()
	}
	p.links = nil
	p.ring.Stop()
	p.kdrops.Freeze(p.objs.Drops, dropNames)
	p.objs.Close()
	return nil
}

// argBytes is the kernel's argv copy (NUL-separated) as bytes.
func argBytes[T int8 | uint8](b []T) []byte {
	out := make([]byte, len(b))
	for i, c := range b {
		out[i] = byte(c)
	}
	return out
}
