//go:build linux

package offcpu

import (
	"bufio"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/bpfsnap/bpfsnap/capture/recorder"
	"github.com/bpfsnap/bpfsnap/formats"
)

// maxThrottleCgroups bounds the cgroups read per snapshot (a node runs a
// few hundred pods; more than this is not a node).
const maxThrottleCgroups = 4096

// cgroupKey is one cgroup of one hierarchy.
type cgroupKey struct {
	version uint32
	path    string // below the hierarchy's root, "/" for the root
}

// throttleReader snapshots CPU limits and throttling counters of the
// captured processes' cgroups and their ancestors, in the unified
// hierarchy (cpu.max) and in the v1 cpu controller (cpu.cfs_quota_us):
// hybrid hosts (this project's own) have both, and the limit is wherever
// the cpu controller is mounted.
type throttleReader struct {
	s      *recorder.Session
	v1Root string // the v1 cpu controller's mount, "" without one
	// seen holds every cgroup read at the start, so the end reads them
	// again even when their processes have exited.
	seen       map[cgroupKey]bool
	unreadable uint64
}

func newThrottleReader(s *recorder.Session) *throttleReader {
	t := &throttleReader{s: s, seen: map[cgroupKey]bool{}}
	for _, dir := range []string{"cpu", "cpu,cpuacct", "cpuacct,cpu"} {
		p := filepath.Join(s.HostRoot(), "sys/fs/cgroup", dir)
		if _, err := os.Stat(filepath.Join(p, "cpu.cfs_quota_us")); err == nil {
			t.v1Root = p
			break
		}
	}
	return t
}

// snapshot reads every cgroup of the captured processes (all processes on
// a whole-host capture) and returns a row for each that has a CPU limit or
// was ever throttled.
func (t *throttleReader) snapshot(phase string) []formats.CgroupCPU {
	pids := map[cgroupKey][]uint32{}
	for k := range t.seen {
		pids[k] = nil
	}
	for _, pid := range t.processes() {
		lines, ok := t.s.Cgroups().ProcCgroupLines(t.s.ProcRoot(), pid)
		if !ok {
			continue
		}
		for _, l := range lines {
			var version uint32
			switch {
			case l.Hierarchy == "0" && l.Controllers == "":
				version = 2
			case t.v1Root != "" && hasController(l.Controllers, "cpu"):
				version = 1
			default:
				continue
			}
			// The cgroup and its ancestors: a limit on any of them
			// throttles the process.
			for p := path.Clean("/" + l.Path); ; p = path.Dir(p) {
				k := cgroupKey{version, p}
				if _, ok := pids[k]; ok || len(pids) < maxThrottleCgroups {
					pids[k] = append(pids[k], pid)
				}
				if p == "/" {
					break
				}
			}
		}
	}
	now := recorder.MonoNow()
	var rows []formats.CgroupCPU
	for k, ps := range pids {
		row, ok := t.read(k)
		if !ok {
			if t.seen[k] {
				t.unreadable++ // gone since the start
			}
			continue
		}
		if row.QuotaUs < 0 && row.NrThrottled == 0 {
			continue
		}
		if phase == formats.CgroupPhaseStart {
			t.seen[k] = true
		}
		sort.Slice(ps, func(i, j int) bool { return ps[i] < ps[j] })
		row.TimeNs, row.Phase, row.PIDs = now, phase, ps
		rows = append(rows, row)
	}
	sort.Slice(rows, func(i, j int) bool {
		if rows[i].Version != rows[j].Version {
			return rows[i].Version > rows[j].Version
		}
		return rows[i].Path < rows[j].Path
	})
	return rows
}

// processes are the captured processes: the targets, or every process of
// a whole-host capture.
func (t *throttleReader) processes() []uint32 {
	if t.s.Filtered() {
		return t.s.TargetPIDs()
	}
	ents, err := os.ReadDir(t.s.ProcRoot())
	if err != nil {
		return nil
	}
	var out []uint32
	for _, e := range ents {
		if n, err := strconv.ParseUint(e.Name(), 10, 32); err == nil {
			out = append(out, uint32(n))
		}
	}
	return out
}

func hasController(list, want string) bool {
	for _, c := range strings.Split(list, ",") {
		if c == want {
			return true
		}
	}
	return false
}

// read returns a cgroup's limit and cpu.stat counters; false when its
// directory or cpu.stat cannot be read.
func (t *throttleReader) read(k cgroupKey) (formats.CgroupCPU, bool) {
	row := formats.CgroupCPU{Version: k.version, Path: k.path, QuotaUs: -1}
	var dir string
	if k.version == 2 {
		if t.s.Cgroups().Root() == "" {
			return row, false
		}
		dir = filepath.Join(t.s.Cgroups().Root(), k.path)
		// "max 100000" or "50000 100000"; absent when the cpu
		// controller is not enabled here (no limit possible).
		if f := strings.Fields(readSmall(filepath.Join(dir, "cpu.max"))); len(f) == 2 {
			if q, err := strconv.ParseInt(f[0], 10, 64); err == nil {
				row.QuotaUs = q
			}
			row.PeriodUs, _ = strconv.ParseUint(f[1], 10, 64)
		}
	} else {
		dir = filepath.Join(t.v1Root, k.path)
		if q, err := strconv.ParseInt(strings.TrimSpace(readSmall(filepath.Join(dir, "cpu.cfs_quota_us"))), 10, 64); err == nil && q > 0 {
			row.QuotaUs = q
		}
		row.PeriodUs, _ = strconv.ParseUint(strings.TrimSpace(readSmall(filepath.Join(dir, "cpu.cfs_period_us"))), 10, 64)
	}
	f, err := os.Open(filepath.Join(dir, "cpu.stat"))
	if err != nil {
		return row, false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		key, val, ok := strings.Cut(sc.Text(), " ")
		if !ok {
			continue
		}
		n, err := strconv.ParseUint(strings.TrimSpace(val), 10, 64)
		if err != nil {
			continue
		}
		switch key {
		case "nr_periods":
			row.NrPeriods = n
		case "nr_throttled":
			row.NrThrottled = n
		case "throttled_usec": // v2
			row.ThrottledUs = n
		case "throttled_time": // v1, in ns
			row.ThrottledUs = n / 1000
		}
	}
	return row, true
}

func readSmall(p string) string {
	b, err := os.ReadFile(p)
	if err != nil || len(b) > 4096 {
		return ""
	}
	return string(b)
}
