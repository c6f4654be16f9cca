// Package k8smeta attributes a process to its container and Kubernetes pod
// from node-local state only (cgroup paths, OCI bundle annotations, kubelet
// log directories), so a capture needs no API server. It is pure Go and
// portable: capture/ feeds it /proc contents, tests feed it fixtures.
package k8smeta

import (
	"regexp"
	"strings"
)

// Runtime names recognized from cgroup path components.
const (
	RuntimeContainerd = "containerd"
	RuntimeCRIO       = "cri-o"
	RuntimeDocker     = "docker"
)

// Identity is what a cgroup path alone tells about a process.
type Identity struct {
	ContainerID string // 64-hex container id; empty when not in a container
	PodUID      string // dashed pod uid; empty when not in a pod
	QoS         string // guaranteed, burstable or besteffort
	Runtime     string // one of the Runtime* constants, when known
}

var (
	hexID = regexp.MustCompile(`^[0-9a-f]{64}$`)
	// systemd driver: kubepods-burstable-pod<uid with _>.slice
	systemdPod = regexp.MustCompile(`^kubepods(?:-(burstable|besteffort))?-pod([0-9a-f_]{36})\.slice$`)
	// cgroupfs driver: pod<uid with ->
	cgroupfsPod = regexp.MustCompile(`^pod([0-9a-f-]{36})$`)
	// systemd scopes of each runtime.
	scopeID = regexp.MustCompile(`^(cri-containerd|crio|docker)-([0-9a-f]{64})\.scope$`)
)

// ParseCgroupPath extracts the container id, pod uid and QoS class from one
// cgroup path (v1 or v2, systemd or cgroupfs driver). Unknown layouts give a
// zero Identity, never an error: most processes on a node are not in pods.
func ParseCgroupPath(p string) Identity {
	id, _, _ := parse(p)
	return id
}

// Scopes returns the prefixes of cgroup path p that end at its pod
// component and at its container component ("" when p has none): the
// cgroups a capture targets for --pod and --container-id, whose subtrees
// also hold processes that join later (kubectl exec, container restarts).
func Scopes(p string) (pod, container string) {
	_, podEnd, ctrEnd := parse(p)
	parts := strings.Split(strings.Trim(p, "/"), "/")
	if podEnd > 0 {
		pod = "/" + strings.Join(parts[:podEnd], "/")
	}
	if ctrEnd > 0 {
		container = "/" + strings.Join(parts[:ctrEnd], "/")
	}
	return pod, container
}

// parse is ParseCgroupPath plus the number of path components up to and
// including the pod and the container components (0 when absent).
func parse(p string) (id Identity, podEnd, ctrEnd int) {
	parts := strings.Split(strings.Trim(p, "/"), "/")
	inKubepods := false
	for i, c := range parts {
		switch {
		case c == "kubepods" || c == "kubepods.slice":
			inKubepods = true
			id.QoS = "guaranteed"
		case inKubepods && (c == "burstable" || c == "besteffort"):
			id.QoS = c
		case c == "kubepods-burstable.slice":
			id.QoS = "burstable"
		case c == "kubepods-besteffort.slice":
			id.QoS = "besteffort"
		}
		if m := systemdPod.FindStringSubmatch(c); m != nil {
			id.PodUID = strings.ReplaceAll(m[2], "_", "-")
			podEnd = i + 1
			if m[1] != "" {
				id.QoS = m[1]
			} else {
				id.QoS = "guaranteed"
			}
			continue
		}
		if m := cgroupfsPod.FindStringSubmatch(c); m != nil && inKubepods {
			id.PodUID = m[1]
			podEnd = i + 1
			continue
		}
		if m := scopeID.FindStringSubmatch(c); m != nil {
			id.ContainerID = m[2]
			ctrEnd = i + 1
			id.Runtime = map[string]string{"cri-containerd": RuntimeContainerd, "crio": RuntimeCRIO, "docker": RuntimeDocker}[m[1]]
			continue
		}
		// cgroupfs driver: /kubepods/<qos>/pod<uid>/<id>, docker: /docker/<id>
		if hexID.MatchString(c) && i > 0 && (id.PodUID != "" || parts[i-1] == "docker") {
			id.ContainerID = c
			ctrEnd = i + 1
			if parts[i-1] == "docker" {
				id.Runtime = RuntimeDocker
			}
		}
	}
	if !inKubepods && id.PodUID == "" {
		id.QoS = ""
	}
	return id, podEnd, ctrEnd
}

// CgroupLine is one line of /proc/PID/cgroup.
type CgroupLine struct {
	Hierarchy   string // hierarchy id; "0" is the v2 unified hierarchy
	Controllers string // comma-separated v1 controllers, empty for v2
	Path        string
}

// ParseProcCgroup parses /proc/PID/cgroup (v1, v2 or hybrid). Malformed
// lines are skipped.
func ParseProcCgroup(data string) []CgroupLine {
	var out []CgroupLine
	for _, l := range strings.Split(data, "\n") {
		f := strings.SplitN(l, ":", 3)
		if len(f) != 3 {
			continue
		}
		out = append(out, CgroupLine{Hierarchy: f[0], Controllers: f[1], Path: f[2]})
	}
	return out
}

// IdentityFromProcCgroup returns the first container identity found in any
// hierarchy, preferring v2 (hierarchy 0), and the v2 path ("" if none).
func IdentityFromProcCgroup(lines []CgroupLine) (Identity, string) {
	var best Identity
	v2 := ""
	for _, l := range lines {
		if l.Hierarchy == "0" && l.Controllers == "" {
			v2 = l.Path
			if id := ParseCgroupPath(l.Path); id.ContainerID != "" || id.PodUID != "" {
				return id, v2
			}
		}
	}
	for _, l := range lines {
		if id := ParseCgroupPath(l.Path); id.ContainerID != "" || id.PodUID != "" {
			if best.ContainerID == "" {
				best = id
			}
		}
	}
	return best, v2
}
