package analyze

import (
	"fmt"
	"strings"

	"github.com/bpfsnap/bpfsnap/formats"
)

// ResolveK8s turns f.Namespace/f.Pod into a pid set from the archive's
// process records (pids are what every table is keyed by). With --pid too,
// the result is the intersection. A selector matching nothing is an error,
// so a typo does not silently give an empty analysis.
func ResolveK8s(f *Filter, procs []Process) error {
	if f.Namespace == "" && f.Pod == "" {
		return nil
	}
	ns, pod := f.Namespace, f.Pod
	if i := strings.IndexByte(pod, '/'); i >= 0 {
		if ns != "" && ns != pod[:i] {
			return fmt.Errorf("--namespace %q contradicts --pod %q", ns, pod)
		}
		ns, pod = pod[:i], pod[i+1:]
	}
	given := map[uint32]bool{}
	for _, p := range f.PIDs {
		given[p] = true
	}
	var pids []uint32
	seen := map[uint32]bool{}
	for _, p := range procs {
		if (ns != "" && p.Namespace != ns) || (pod != "" && p.Pod != pod) {
			continue
		}
		if (len(given) > 0 && !given[p.PID]) || seen[p.PID] {
			continue
		}
		seen[p.PID] = true
		pids = append(pids, p.PID)
	}
	if len(pids) == 0 {
		return &NoMatchError{Namespace: ns, Pod: pod}
	}
	f.PIDs = pids
	return nil
}

// ResolveK8sArchive is ResolveK8s on an archive's processes table.
func ResolveK8sArchive(a *formats.Archive, f *Filter) error {
	if f.Namespace == "" && f.Pod == "" {
		return nil
	}
	procs, err := Processes(a)
	if err != nil {
		return err
	}
	return ResolveK8s(f, procs)
}
