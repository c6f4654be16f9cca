//go:build linux

package recorder

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/bpfsnap/bpfsnap/formats"
	"github.com/bpfsnap/bpfsnap/internal/k8smeta"
)

// k8sState is the session's attribution state: names memoized per
// container (bundle config.json files are read once per capture, not once
// per process event) and the rows that could not be attributed.
type k8sState struct {
	names      sync.Map // container id + "\x00" + pod uid -> k8smeta.Names
	unresolved atomic.Uint64
}

// k8sDropName counts process rows (fork, exec, scan, info) whose cgroup
// could not be resolved at all: the kernel's cgroup id matched no cgroup
// (removed before user space read the event) and /proc/PID was gone too.
// Their pod columns are empty.
const k8sDropName = "k8s.unresolved"

// enrichK8s fills the container/pod columns of a process row. The cgroup
// comes from the kernel event (its id, resolved to a path by the
// CgroupResolver from the cgroup filesystem), so a process that exited
// before user space read the event is still attributed; /proc/PID/cgroup is
// the fallback (v1 hierarchies of hybrid hosts, unresolvable ids). The
// namespaces come from the kernel event too, /proc when it has none (scan
// rows). Exit rows are left alone: the fold keeps earlier values.
func (s *Session) enrichK8s(row *formats.ProcessEvent) {
	if row.Kind == formats.ProcessExit || row.PID == 0 {
		return
	}
	dir := filepath.Join(s.procRoot, strconv.FormatUint(uint64(row.PID), 10))
	if row.MntNS == 0 && row.PidNS == 0 {
		row.MntNS = nsInode(filepath.Join(dir, "ns/mnt"))
		row.PidNS = nsInode(filepath.Join(dir, "ns/pid"))
		row.NSPid = innermostNSPid(filepath.Join(dir, "status"))
	}
	var id k8smeta.Identity
	resolved := row.CgroupPath != ""
	if resolved {
		id = k8smeta.ParseCgroupPath(row.CgroupPath)
	}
	if id.ContainerID == "" && id.PodUID == "" {
		if lines, ok := s.cgroups.ProcCgroupLines(s.procRoot, row.PID); ok {
			id, _ = k8smeta.IdentityFromProcCgroup(lines)
			resolved = true
		}
	}
	if !resolved {
		s.k8s.unresolved.Add(1)
		return
	}
	if id.ContainerID == "" && id.PodUID == "" {
		return
	}
	row.ContainerID, row.PodUID = id.ContainerID, id.PodUID
	root := s.opts.RuntimeRoot
	if root == "" {
		root = s.opts.HostRoot
	}
	key := id.ContainerID + "\x00" + id.PodUID
	var n k8smeta.Names
	if v, ok := s.k8s.names.Load(key); ok {
		n = v.(k8smeta.Names)
	} else {
		n = k8smeta.Resolver{HostRoot: root}.Lookup(id.ContainerID, id.PodUID)
		s.k8s.names.Store(key, n)
	}
	if n.PodUID != "" {
		row.PodUID = n.PodUID
	}
	row.Namespace, row.Pod, row.Container, row.Image = n.Namespace, n.Pod, n.Container, n.Image
}

func nsInode(path string) uint64 {
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		return 0
	}
	return st.Ino
}

// innermostNSPid reads the last field of NSpid in /proc/PID/status.
func innermostNSPid(path string) uint32 {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(l, "NSpid:"); ok {
			f := strings.Fields(rest)
			if len(f) == 0 {
				return 0
			}
			v, _ := strconv.ParseUint(f[len(f)-1], 10, 32)
			return uint32(v)
		}
	}
	return 0
}
