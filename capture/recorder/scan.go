//go:build linux

package recorder

import (
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/bpfsnap/bpfsnap/formats"
	"github.com/bpfsnap/bpfsnap/internal/redact"
)

// maxCmdline bounds what is kept of a command line: enough to tell
// processes apart, not a place for a workload to dump megabytes.
const maxCmdline = 4096

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
			Cmdline:    s.ReadCmdline(pid),
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
	data, err := os.ReadFile(filepath.Join(procRoot, Itoa(pid), "stat"))
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

// readArgs reads a process's argv from /proc (NUL-separated), bounded by
// maxCmdline. The environment (/proc/PID/environ) is never read.
func readArgs(procRoot string, pid uint32) []byte {
	f, err := os.Open(filepath.Join(procRoot, Itoa(pid), "cmdline"))
	if err != nil {
		return nil
	}
	defer f.Close()
	buf := make([]byte, maxCmdline)
	n, _ := f.Read(buf)
	return buf[:n]
}

// ReadCmdline is a process's command line from /proc, as Cmdline makes it.
func (s *Session) ReadCmdline(pid uint32) string { return s.Cmdline(readArgs(s.procRoot, pid)) }

// ProcArgsLonger returns the process's argv from /proc when it holds more
// than args (a kernel copy cut at its buffer's size), else args.
func (s *Session) ProcArgsLonger(pid uint32, args []byte) []byte {
	if full := readArgs(s.procRoot, pid); len(full) > len(args) {
		return full
	}
	return args
}

// Cmdline turns a NUL-separated argv into the processes table's cmdline:
// arguments joined by spaces, with the values that look like secrets
// replaced (internal/redact) unless the capture runs with --keep-cmdline.
// Every value replaced is counted (process.cmdline_redacted).
func (s *Session) Cmdline(args []byte) string {
	argv := strings.Split(strings.TrimRight(string(args), "\x00"), "\x00")
	argv = s.redactArgv(argv)
	return strings.TrimRight(strings.Join(argv, " "), " ")
}

// redactDropName counts the command-line values replaced (a "noted"
// counter of formats' drop catalog: nothing is lost but the secrets).
const redactDropName = "process.cmdline_redacted"

// redactArgv applies the capture's command-line policy to argv.
func (s *Session) redactArgv(argv []string) []string {
	if s.opts.KeepCmdline || len(argv) == 0 {
		return argv
	}
	out, n := redact.Argv(argv)
	s.redacted.Add(uint64(n))
	return out
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

// Itoa formats a pid for /proc paths.
func Itoa(v uint32) string { return strconv.FormatUint(uint64(v), 10) }
