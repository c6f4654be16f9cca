//go:build linux

package recorder

import (
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/bpfsnap/bpfsnap/internal/k8smeta"
)

// K8sSelector picks processes by Kubernetes identity or cgroup.
type K8sSelector struct {
	Pod         string // NAMESPACE/NAME, or several separated by commas
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
// fork handling in the kernel; ResolveK8s also returns the cgroups that
// catch processes joining later by other ways.
func ResolveK8sTargets(procRoot, runtimeRoot string, sel K8sSelector) ([]uint32, error) {
	t, err := ResolveK8s(procRoot, runtimeRoot, nil, sel)
	if err == nil && len(t.PIDs) == 0 {
		err = fmt.Errorf("no process on this node matches %v", sel.Extra())
	}
	return t.PIDs, err
}

// K8sTargets is what a selector resolves to on this node.
type K8sTargets struct {
	// PIDs are the matching processes running now (sorted).
	PIDs []uint32
	// Cgroups are cgroup v2 paths whose subtrees the selector covers: the
	// pod cgroup of each matching pod (--pod, --namespace), the container
	// cgroup (--container-id), the --cgroup path itself. A process that
	// enters one later (kubectl exec, a restarted container, a process
	// moved there) is followed from then on, in the kernel.
	Cgroups []string
}

// ResolveK8s resolves a selector to the processes and cgroups it covers.
// cgroups (may be nil) makes /proc's cgroup paths absolute when bpfsnap
// runs in its own cgroup namespace, and checks that a --cgroup path exists
// in the v2 hierarchy, so a cgroup with no process yet can still be
// targeted. It fails only when the selector matches neither.
func ResolveK8s(procRoot, runtimeRoot string, cgroups *CgroupResolver, sel K8sSelector) (K8sTargets, error) {
	var t K8sTargets
	ns := sel.Namespace
	// pods holds NAMESPACE/NAME of every pod of --pod (a comma-separated
	// list: kubectl-bpfsnap's capture of the selected pods on one node).
	var pods map[string]bool
	if sel.Pod != "" {
		pods = map[string]bool{}
		for _, p := range strings.Split(sel.Pod, ",") {
			i := strings.IndexByte(p, '/')
			if i <= 0 || i == len(p)-1 {
				return t, fmt.Errorf("--pod %q: want NAMESPACE/NAME", p)
			}
			if ns != "" && ns != p[:i] {
				return t, fmt.Errorf("--namespace %q contradicts --pod %q", ns, p)
			}
			pods[p] = true
		}
	}
	ents, err := os.ReadDir(procRoot)
	if err != nil {
		return t, err
	}
	res := k8smeta.Resolver{HostRoot: runtimeRoot}
	names := map[string]k8smeta.Names{}
	scopes := map[string]bool{}
	if sel.Cgroup != "" {
		want := "/" + strings.Trim(sel.Cgroup, "/")
		if cgroups != nil {
			if _, ok := cgroups.ID(want); ok {
				scopes[want] = true
			}
		}
	}
	for _, e := range ents {
		pid, err := strconv.ParseUint(e.Name(), 10, 32)
		if err != nil || pid == 0 {
			continue
		}
		lines, ok := cgroups.ProcCgroupLines(procRoot, uint32(pid))
		if !ok {
			continue // exited meanwhile
		}
		if sel.Cgroup != "" && !cgroupMatches(lines, sel.Cgroup) {
			continue
		}
		id, v2 := k8smeta.IdentityFromProcCgroup(lines)
		if sel.ContainerID != "" && (id.ContainerID == "" || !strings.HasPrefix(id.ContainerID, sel.ContainerID)) {
			continue
		}
		if ns != "" || pods != nil {
			if id.ContainerID == "" && id.PodUID == "" {
				continue
			}
			key := id.ContainerID + "/" + id.PodUID
			n, ok := names[key]
			if !ok {
				n = res.Lookup(id.ContainerID, id.PodUID)
				names[key] = n
			}
			if (ns != "" && n.Namespace != ns) || (pods != nil && !pods[n.Namespace+"/"+n.Pod]) {
				continue
			}
		}
		t.PIDs = append(t.PIDs, uint32(pid))
		if sc := selectorScope(sel, v2); sc != "" {
			scopes[sc] = true
		}
	}
	if len(t.PIDs) == 0 && len(scopes) == 0 {
		return t, fmt.Errorf("no process or cgroup on this node matches %v", sel.Extra())
	}
	sort.Slice(t.PIDs, func(i, j int) bool { return t.PIDs[i] < t.PIDs[j] })
	for sc := range scopes {
		t.Cgroups = append(t.Cgroups, sc)
	}
	sort.Strings(t.Cgroups)
	return t, nil
}

// selectorScope is the cgroup v2 subtree a matching process's v2 path puts
// in scope: the deepest of the scopes the selector names (they are all
// ancestors of v2, so the deepest is their intersection); "" when none
// applies (e.g. a v1-only --cgroup path on a hybrid host).
func selectorScope(sel K8sSelector, v2 string) string {
	if v2 == "" {
		return ""
	}
	podScope, ctrScope := k8smeta.Scopes(v2)
	best := ""
	consider := func(sc string) {
		if sc != "" && len(sc) > len(best) {
			best = sc
		}
	}
	if sel.Cgroup != "" {
		want := "/" + strings.Trim(sel.Cgroup, "/")
		if UnderCgroup(v2, want) {
			consider(want)
		} else if sel.Pod == "" && sel.Namespace == "" && sel.ContainerID == "" {
			return "" // matched by a v1 hierarchy only
		}
	}
	if sel.Pod != "" || sel.Namespace != "" {
		consider(podScope)
		if podScope == "" {
			consider(ctrScope)
		}
	}
	if sel.ContainerID != "" {
		consider(ctrScope)
	}
	return best
}

func cgroupMatches(lines []k8smeta.CgroupLine, want string) bool {
	want = "/" + strings.Trim(want, "/")
	for _, l := range lines {
		if UnderCgroup(l.Path, want) {
			return true
		}
	}
	return false
}

// OutermostCgroups returns paths sorted, without those below another one
// (a cgroup program runs for its descendants too: attached to both, it
// would run twice). It reorders paths. Each path is checked against every
// one kept, not only the last in sorted order: "/a-x" sorts between "/a"
// and "/a/b".
func OutermostCgroups(paths []string) []string {
	sort.Slice(paths, func(i, j int) bool { return len(paths[i]) < len(paths[j]) })
	var out []string
	for _, p := range paths {
		if !slices.ContainsFunc(out, func(o string) bool { return UnderCgroup(p, o) }) {
			out = append(out, p)
		}
	}
	sort.Strings(out)
	return out
}

// UnderCgroup reports whether cgroup path p is dir or below it.
func UnderCgroup(p, dir string) bool {
	return dir == "/" || p == dir || strings.HasPrefix(p, dir+"/")
}

// resolveK8s resolves Options.K8s before the probes load: it returns the
// matching pids (roots of the target map, with their descendants) and
// fills s.targetCgroups with the ids of the selected cgroups, which the
// process probe hands to the kernel.
func (s *Session) resolveK8s() ([]uint32, error) {
	sel := s.opts.K8s
	if sel.Empty() {
		return nil, nil
	}
	root := s.opts.RuntimeRoot
	if root == "" {
		root = s.opts.HostRoot
	}
	t, err := ResolveK8s(s.procRoot, root, s.cgroups, sel)
	if err != nil {
		return nil, err
	}
	s.targetCgroups = map[uint64]string{}
	var paths []string
	for _, p := range t.Cgroups {
		if id, ok := s.cgroups.ID(p); ok {
			s.targetCgroups[id] = p
			paths = append(paths, p)
		}
	}
	extra := map[string]string{}
	for k, v := range s.opts.TargetExtra {
		extra[k] = v
	}
	for k, v := range sel.Extra() {
		extra[k] = v
	}
	if len(paths) > 0 {
		// JSON: cgroup names may hold any byte but '/' and NUL.
		b, _ := json.Marshal(paths)
		extra["cgroups"] = string(b)
	}
	s.opts.TargetExtra = extra
	return t.PIDs, nil
}

// inTargetCgroup reports whether a cgroup v2 path is in one of the
// targeted subtrees: the user-space twin of the kernel's ancestor walk, for
// the /proc scan.
func (s *Session) inTargetCgroup(path string) bool {
	if path == "" {
		return false
	}
	for _, dir := range s.targetCgroups {
		if UnderCgroup(path, dir) {
			return true
		}
	}
	return false
}

// FollowsNewPods reports whether the selector names pods (by namespace or
// name), which may appear on the node during the window: a pod created in
// the namespace, or a pod deleted and created again under the same name
// (a StatefulSet's), in a new pod cgroup.
func (k K8sSelector) FollowsNewPods() bool { return k.Pod != "" || k.Namespace != "" }

// rescanK8s runs every second during the window for name selectors: pods
// that match now but did not at the start get their cgroups added to the
// kernel's target_cgroups (everything forked or exec'd there from now on
// is followed) and their running processes adopted. A /proc scan costs
// ~10 ms per thousand processes.
func (s *Session) rescanK8s(procs ProcessProbe) {
	if !s.opts.K8s.FollowsNewPods() {
		return
	}
	root := s.opts.RuntimeRoot
	if root == "" {
		root = s.opts.HostRoot
	}
	t, err := ResolveK8s(s.procRoot, root, s.cgroups, s.opts.K8s)
	if err != nil {
		return // nothing matches at the moment
	}
	added := false
	for _, p := range t.Cgroups {
		id, ok := s.cgroups.ID(p)
		if !ok {
			continue
		}
		if _, known := s.targetCgroups[id]; known {
			continue
		}
		if err := procs.FollowCgroup(id); err != nil {
			s.Warnf("following new pod cgroup %s: %v", p, err)
			continue
		}
		if s.targetCgroups == nil {
			s.targetCgroups = map[uint64]string{}
		}
		covered := s.inTargetCgroup(p)
		s.targetCgroups[id] = p
		added = true
		if !covered {
			s.subMu.Lock()
			subs := s.cgSubs
			s.subMu.Unlock()
			for _, fn := range subs {
				fn(p)
			}
		}
	}
	if added {
		s.scanProc(false)
	}
}
