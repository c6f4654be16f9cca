//go:build linux

package capture

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"github.com/bpfsnap/bpfsnap/formats"
	"github.com/bpfsnap/bpfsnap/internal/k8smeta"
)

// k8sCache memoizes name lookups per container id: bundle config.json files
// are read once per capture, not once per process event.
var k8sCache sync.Map // host root + "\x00" + container id -> k8smeta.Names

// enrichK8s fills the container/pod columns of a process row from
// /proc/PID/{cgroup,ns,status} and the node's runtime state under the host
// root. Exit rows are left alone: /proc is gone and the fold keeps earlier
// values.
func (s *Session) enrichK8s(row *formats.ProcessEvent) {
	if row.Kind == formats.ProcessExit || row.PID == 0 {
		return
	}
	dir := filepath.Join(s.procRoot, strconv.FormatUint(uint64(row.PID), 10))
	data, err := os.ReadFile(filepath.Join(dir, "cgroup"))
	if err != nil {
		return
	}
	id, _ := k8smeta.IdentityFromProcCgroup(k8smeta.ParseProcCgroup(string(data)))
	row.MntNS = nsInode(filepath.Join(dir, "ns/mnt"))
	row.PidNS = nsInode(filepath.Join(dir, "ns/pid"))
	row.NSPid = innermostNSPid(filepath.Join(dir, "status"))
	if id.ContainerID == "" && id.PodUID == "" {
		return
	}
	row.ContainerID, row.PodUID = id.ContainerID, id.PodUID
	root := s.opts.RuntimeRoot
	if root == "" {
		root = s.opts.HostRoot
	}
	key := root + "\x00" + id.ContainerID + "\x00" + id.PodUID
	var n k8smeta.Names
	if v, ok := k8sCache.Load(key); ok {
		n = v.(k8smeta.Names)
	} else {
		n = k8smeta.Resolver{HostRoot: root}.Lookup(id.ContainerID, id.PodUID)
		k8sCache.Store(key, n)
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
