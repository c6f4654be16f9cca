//go:build linux

package capture

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/bpfsnap/bpfsnap/internal/k8smeta"
)

// K8sSelector picks processes by Kubernetes identity or cgroup.
type K8sSelector struct {
	Pod         string // NAMESPACE/NAME
	Namespace   string
	ContainerID string // full id or a unique prefix
	Cgroup      string // cgroup path (v2 or any v1 hierarchy), a prefix match
}

// Empty reports whether no selector is set.
func (k K8sSelector) Empty() bool { return k == K8sSelector{} }

// Extra renders the selector for the manifest's Targets.Extra.
func (k K8sSelector) Extra() map[string]string {
	m := map[string]string{}
	for key, v := range map[string]string{"pod": k.Pod, "namespace": k.Namespace, "container_id": k.ContainerID, "cgroup": k.Cgroup} {
		if v != "" {
			m[key] = v
		}
	}
	return m
}

// ResolveK8sTargets scans procRoot for processes matching the selector and
// returns their pids (sorted). Names come from runtimeRoot. Processes that
// start later as children of these are followed by the process probe's
// fork handling in the kernel.
func ResolveK8sTargets(procRoot, runtimeRoot string, sel K8sSelector) ([]uint32, error) {
	ns, pod := sel.Namespace, ""
	if sel.Pod != "" {
		i := strings.IndexByte(sel.Pod, '/')
		if i <= 0 || i == len(sel.Pod)-1 {
			return nil, fmt.Errorf("--pod %q: want NAMESPACE/NAME", sel.Pod)
		}
		if ns != "" && ns != sel.Pod[:i] {
			return nil, fmt.Errorf("--namespace %q contradicts --pod %q", ns, sel.Pod)
		}
		ns, pod = sel.Pod[:i], sel.Pod[i+1:]
	}
	ents, err := os.ReadDir(procRoot)
	if err != nil {
		return nil, err
	}
	res := k8smeta.Resolver{HostRoot: runtimeRoot}
	names := map[string]k8smeta.Names{}
	var pids []uint32
	for _, e := range ents {
		pid, err := strconv.ParseUint(e.Name(), 10, 32)
		if err != nil || pid == 0 {
			continue
		}
		data, err := os.ReadFile(filepath.Join(procRoot, e.Name(), "cgroup"))
		if err != nil {
			continue // exited meanwhile
		}
		lines := k8smeta.ParseProcCgroup(string(data))
		if sel.Cgroup != "" && !cgroupMatches(lines, sel.Cgroup) {
			continue
		}
		id, _ := k8smeta.IdentityFromProcCgroup(lines)
		if sel.ContainerID != "" && (id.ContainerID == "" || !strings.HasPrefix(id.ContainerID, sel.ContainerID)) {
			continue
		}
		if ns != "" || pod != "" {
			if id.ContainerID == "" && id.PodUID == "" {
				continue
			}
			key := id.ContainerID + "/" + id.PodUID
			n, ok := names[key]
			if !ok {
				n = res.Lookup(id.ContainerID, id.PodUID)
				names[key] = n
			}
			if (ns != "" && n.Namespace != ns) || (pod != "" && n.Pod != pod) {
				continue
			}
		}
		pids = append(pids, uint32(pid))
	}
	if len(pids) == 0 {
		return nil, fmt.Errorf("no process on this node matches %v", sel.Extra())
	}
	sort.Slice(pids, func(i, j int) bool { return pids[i] < pids[j] })
	return pids, nil
}

func cgroupMatches(lines []k8smeta.CgroupLine, want string) bool {
	want = "/" + strings.Trim(want, "/")
	for _, l := range lines {
		if l.Path == want || strings.HasPrefix(l.Path, want+"/") {
			return true
		}
	}
	return false
}
