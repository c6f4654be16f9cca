//go:build linux

package capture

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/cilium/ebpf/link"

	"github.com/bpfsnap/bpfsnap/bpf"
	"github.com/bpfsnap/bpfsnap/formats"
)

// maxCmdline bounds what is kept of a command line: enough to tell
// processes apart, not a place for a workload to dump megabytes.
const maxCmdline = 4096

// processProbe is the always-on probe set: fork/exec/exit from the kernel,
// plus a /proc scan of what already runs. Every other probe set attributes
// its events through the rows it writes.
type processProbe struct {
	kdrops dropCounters
	s      *Session
	objs   bpf.ProcessObjects
	links  []link.Link
	ring   *RingReader
	table  *formats.TableWriter[formats.ProcessEvent]
}

var processDropNames = []string{"process.ringbuf_full", "process.targets_full"}

func (p *processProbe) start(s *Session) error {
	p.s = s
	if s.cgroups.NSProblem != "" {
		s.Warnf("bpfsnap runs in its own cgroup namespace and its root was not found (%s): cgroup paths of processes running at the start may be relative, and their pod columns empty", s.cgroups.NSProblem)
	}
	if !s.opts.K8s.Empty() && len(s.targetCgroups) == 0 {
		s.Warnf("no cgroup v2 directory found for %v: processes that join the selection during the window (kubectl exec, container restarts) are not followed, only children of the processes running now", s.opts.K8s.Extra())
	}
	spec, err := bpf.LoadProcess()
	if err != nil {
		return err
	}
	// Name selectors may match pods that start later (rescanK8s adds
	// their cgroups), so the kernel checks cgroups even if none matched yet.
	byCgroup := len(s.targetCgroups) > 0 || s.opts.K8s.followsNewPods()
	if err := spec.Variables["filter_cgroups"].Set(byCgroup); err != nil {
		return fmt.Errorf("setting filter_cgroups: %w", err)
	}
	if err := s.LoadObjects(spec, &p.objs); err != nil {
		return err
	}
	for id := range s.targetCgroups {
		if err := p.objs.TargetCgroups.Put(id, uint8(1)); err != nil {
			return fmt.Errorf("adding cgroup %d to the target map: %w", id, err)
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
			return fmt.Errorf("attaching %s: %w", prog.name, err)
		}
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
	p.ring, err = s.ReadRing(p.objs.ProcessEvents, func(raw []byte) { p.handle(s, raw) })
	s.procRing = p.ring
	return err
}

func (p *processProbe) handle(s *Session, raw []byte) {
	var ev bpf.ProcessProcessEvent
	if err := binary.Read(bytes.NewReader(raw), binary.NativeEndian, &ev); err != nil {
		return
	}
	row := formats.ProcessEvent{
		TimeNs:   ev.TimeNs,
		PID:      ev.Pid,
		PPID:     ev.Ppid,
		Comm:     CString(ev.Comm[:]),
		CgroupID: ev.CgroupId,
		ExitCode: ev.ExitCode,
		StartNs:  ev.StartNs,
		MntNS:    uint64(ev.MntNs),
		PidNS:    uint64(ev.PidNs),
		NSPid:    ev.NsPid,
	}
	switch ev.Kind {
	case 1:
		row.Kind = formats.ProcessFork
	case 2:
		row.Kind = formats.ProcessExec
		row.Exe = CString(ev.Filename[:])
		row.Cmdline = argsString(ev.Args[:min(int(ev.ArgsLen), len(ev.Args))])
		if int(ev.ArgsLen) >= len(ev.Args)-1 {
			// The kernel copy is truncated; /proc has more while the
			// process lives.
			if full := readCmdline(s.procRoot, ev.Pid); len(full) > len(row.Cmdline) {
				row.Cmdline = full
			}
		}
	case 3:
		row.Kind = formats.ProcessExit
	case 4:
		// Moved into a targeted cgroup: running, so /proc has the rest.
		row.Kind = formats.ProcessInfo
		row.Exe, _ = os.Readlink(filepath.Join(s.procRoot, itoa(ev.Pid), "exe"))
		row.Cmdline = readCmdline(s.procRoot, ev.Pid)
	default:
		return
	}
	row.CgroupPath = s.cgroups.Path(ev.CgroupId)
	s.emitProcess(row)
	s.procDone.Store(ev.TimeNs)
}

func (p *processProbe) drops() map[string]uint64 {
	d := p.kdrops.read(p.objs.Drops, processDropNames)
	if p.s != nil {
		d[k8sDropName] = p.s.k8s.unresolved.Load()
	}
	return d
}

func (p *processProbe) stop() {
	for _, l := range p.links {
		l.Close()
	}
	p.links = nil
	p.ring.Stop()
	p.kdrops.freeze(p.objs.Drops, processDropNames)
	p.objs.Close()
}

// scanProc writes a scan row for every process already running that the
// capture targets. The kernel probes are attached first, so a process is
// either seen here or by its fork event (or both, which readers fold).
//
// With includeKnown false (a rescan during the window) only processes that
// are not targets yet but sit in a targeted cgroup are written.
func (s *Session) scanProc(includeKnown bool) {
	ents, err := os.ReadDir(s.procRoot)
	if err != nil {
		s.Warnf("cannot scan %s: %v", s.procRoot, err)
		return
	}
	now := MonoNow()
	for _, e := range ents {
		pid64, err := strconv.ParseUint(e.Name(), 10, 32)
		if err != nil {
			continue
		}
		pid := uint32(pid64)
		var cg string
		if !s.IsTarget(pid) {
			// A process that entered a targeted cgroup between the
			// selector's resolution and the probes' attachment.
			if len(s.targetCgroups) == 0 {
				continue
			}
			if cg = s.cgroups.Abs(ProcCgroupV2(s.procRoot, pid)); !s.inTargetCgroup(cg) {
				continue
			}
			if s.targets != nil {
				if err := s.targets.Put(pid, uint8(1)); err != nil {
					s.Warnf("pid %d in a targeted cgroup: %v", pid, err)
				}
			}
		} else if !includeKnown {
			continue
		} else {
			cg = s.cgroups.Abs(ProcCgroupV2(s.procRoot, pid))
		}
		st, ok := readStat(s.procRoot, pid)
		if !ok {
			continue
		}
		exe, _ := os.Readlink(filepath.Join(s.procRoot, e.Name(), "exe"))
		id, _ := s.cgroups.ID(cg)
		s.emitProcess(formats.ProcessEvent{
			TimeNs:     now,
			Kind:       formats.ProcessScan,
			PID:        pid,
			PPID:       st.ppid,
			Comm:       st.comm,
			Exe:        exe,
			Cmdline:    readCmdline(s.procRoot, pid),
			CgroupID:   id,
			CgroupPath: cg,
			StartNs:    st.startNs,
		})
	}
}

type procStat struct {
	comm    string
	ppid    uint32
	startNs uint64
}

// readStat parses /proc/PID/stat. The comm field may hold spaces and
// parentheses, so fields are counted from the last ')'.
func readStat(procRoot string, pid uint32) (procStat, bool) {
	data, err := os.ReadFile(filepath.Join(procRoot, itoa(pid), "stat"))
	if err != nil {
		return procStat{}, false
	}
	open, end := bytes.IndexByte(data, '('), bytes.LastIndexByte(data, ')')
	if open < 0 || end < open {
		return procStat{}, false
	}
	f := strings.Fields(string(data[end+1:]))
	// After comm: state(0) ppid(1) ... starttime is field 22 of stat, i.e.
	// index 19 here.
	if len(f) < 20 {
		return procStat{}, false
	}
	ppid, _ := strconv.ParseUint(f[1], 10, 32)
	ticks, _ := strconv.ParseUint(f[19], 10, 64)
	// USER_HZ is 100 on every Linux ABI bpfsnap supports; start_time in
	// the kernel is CLOCK_MONOTONIC-based (boot time minus suspend).
	return procStat{comm: string(data[open+1 : end]), ppid: uint32(ppid), startNs: ticks * 10_000_000}, true
}

// argsString joins a NUL-separated argv copy with spaces.
func argsString[T int8 | uint8](b []T) string {
	out := make([]byte, len(b))
	for i, c := range b {
		out[i] = byte(c)
		if c == 0 {
			out[i] = ' '
		}
	}
	return strings.TrimRight(string(out), " ")
}

func readCmdline(procRoot string, pid uint32) string {
	f, err := os.Open(filepath.Join(procRoot, itoa(pid), "cmdline"))
	if err != nil {
		return ""
	}
	defer f.Close()
	buf := make([]byte, maxCmdline)
	n, _ := f.Read(buf)
	return strings.TrimRight(strings.ReplaceAll(string(buf[:n]), "\x00", " "), " ")
}

// children returns the pids whose parent is one of roots, transitively, from
// a /proc scan: `--pid` follows a process's existing descendants too.
func descendants(procRoot string, roots []uint32) []uint32 {
	parent := map[uint32]uint32{}
	ents, _ := os.ReadDir(procRoot)
	for _, e := range ents {
		pid, err := strconv.ParseUint(e.Name(), 10, 32)
		if err != nil {
			continue
		}
		if st, ok := readStat(procRoot, uint32(pid)); ok {
			parent[uint32(pid)] = st.ppid
		}
	}
	in := map[uint32]bool{}
	for _, r := range roots {
		in[r] = true
	}
	for changed := true; changed; {
		changed = false
		for pid, pp := range parent {
			if !in[pid] && in[pp] {
				in[pid] = true
				changed = true
			}
		}
	}
	var out []uint32
	for pid := range in {
		out = append(out, pid)
	}
	return out
}

func itoa(v uint32) string { return strconv.FormatUint(uint64(v), 10) }
