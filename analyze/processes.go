package analyze

import (
	"sort"

	"github.com/bpfsnap/bpfsnap/formats"
)

// Process is one process's life as the capture saw it, folded from the
// rows of the processes table.
type Process struct {
	PID        uint32 `json:"pid"`
	PPID       uint32 `json:"ppid"`
	Comm       string `json:"comm"`
	Exe        string `json:"exe"`
	Cmdline    string `json:"cmdline,omitempty"`
	Cgroup     string `json:"cgroup"`
	CgroupID   uint64 `json:"cgroup_id"`
	StartNs    uint64 `json:"start_ns"`
	FirstSeen  uint64 `json:"first_seen_ns"`
	ExitNs     uint64 `json:"exit_ns,omitempty"`
	Exited     bool   `json:"exited"`
	ExitCode   int32  `json:"exit_code,omitempty"`
	OOMKilled  bool   `json:"oom_killed,omitempty"` // the kernel's OOM killer chose it
	Execs      int    `json:"execs,omitempty"`
	ForkSeen   bool   `json:"fork_seen"`
	ScannedRun bool   `json:"running_at_start"`
	// Kubernetes/container attribution recorded at capture time.
	ContainerID string `json:"container_id,omitempty"`
	PodUID      string `json:"pod_uid,omitempty"`
	Namespace   string `json:"namespace,omitempty"`
	Pod         string `json:"pod,omitempty"`
	Container   string `json:"container,omitempty"`
	Image       string `json:"image,omitempty"`
	MntNS       uint64 `json:"mntns,omitempty"`
	PidNS       uint64 `json:"pidns,omitempty"`
	NSPid       uint32 `json:"ns_pid,omitempty"`
}

// sameStartSlack tolerates the difference between the kernel's start_time
// (ns, monotonic) in fork events and /proc's starttime (clock ticks, boot
// time): within it, a scan and a fork row describe the same process.
const sameStartSlack = 50_000_000

// Processes folds the processes table into one record per process life,
// ordered by first sighting. A fork or scan of a pid whose previous life
// exited (or started at a different time) starts a new record, so pid reuse
// within a window is kept apart.
func Processes(a *formats.Archive) ([]Process, error) {
	rows, err := formats.ReadAll[formats.ProcessEvent](a, formats.TableProcesses)
	if err != nil {
		return nil, err
	}
	return FoldProcesses(rows), nil
}

// FoldProcesses is Processes on rows already read.
func FoldProcesses(rows []formats.ProcessEvent) []Process {
	sort.SliceStable(rows, func(i, j int) bool { return rows[i].TimeNs < rows[j].TimeNs })
	var out []*Process
	current := map[uint32]*Process{}
	newLife := func(r formats.ProcessEvent) *Process {
		p := &Process{PID: r.PID, FirstSeen: r.TimeNs}
		out = append(out, p)
		current[r.PID] = p
		return p
	}
	for _, r := range rows {
		p := current[r.PID]
		switch r.Kind {
		case formats.ProcessFork, formats.ProcessScan:
			if p == nil || p.Exited || !sameStart(p.StartNs, r.StartNs) {
				p = newLife(r)
			}
			if r.Kind == formats.ProcessFork {
				p.ForkSeen = true
			} else {
				p.ScannedRun = true
			}
		case formats.ProcessExec:
			if p == nil || p.Exited {
				p = newLife(r)
			}
			p.Execs++
			// exec replaces the program: its names win over earlier ones.
			p.Comm, p.Exe = "", ""
			if r.Cmdline != "" {
				p.Cmdline = ""
			}
		case formats.ProcessExit:
			if p == nil || p.Exited {
				p = newLife(r)
			}
			p.Exited, p.ExitNs, p.ExitCode = true, r.TimeNs, r.ExitCode
		default: // info, oom and unknown kinds only fill gaps
			if p == nil {
				p = newLife(r)
			}
			if r.Kind == formats.ProcessOOM {
				p.OOMKilled = true
			}
		}
		fill(p, r)
	}
	res := make([]Process, len(out))
	for i, p := range out {
		res[i] = *p
	}
	return res
}

func sameStart(a, b uint64) bool {
	if a == 0 || b == 0 {
		return true
	}
	d := int64(a - b)
	if d < 0 {
		d = -d
	}
	return d < sameStartSlack
}

func fill(p *Process, r formats.ProcessEvent) {
	set := func(dst *string, v string) {
		if *dst == "" {
			*dst = v
		}
	}
	set(&p.Comm, r.Comm)
	set(&p.Exe, r.Exe)
	set(&p.Cmdline, r.Cmdline)
	set(&p.Cgroup, r.CgroupPath)
	set(&p.ContainerID, r.ContainerID)
	set(&p.PodUID, r.PodUID)
	set(&p.Namespace, r.Namespace)
	set(&p.Pod, r.Pod)
	set(&p.Container, r.Container)
	set(&p.Image, r.Image)
	if p.MntNS == 0 {
		p.MntNS, p.PidNS, p.NSPid = r.MntNS, r.PidNS, r.NSPid
	}
	if p.PPID == 0 {
		p.PPID = r.PPID
	}
	if p.CgroupID == 0 {
		p.CgroupID = r.CgroupID
	}
	if p.StartNs == 0 {
		p.StartNs = r.StartNs
	}
}
