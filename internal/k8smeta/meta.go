package k8smeta

import (
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// Names are the Kubernetes names of a container, from node-local state.
type Names struct {
	Namespace, Pod, PodUID, Container, Image string
}

// maxConfig bounds how much of a bundle config.json is read.
const maxConfig = 4 << 20

// Annotation keys written by containerd's CRI plugin and by CRI-O.
var annotationKeys = []struct{ ns, pod, uid, ctr, image string }{
	{"io.kubernetes.cri.sandbox-namespace", "io.kubernetes.cri.sandbox-name", "io.kubernetes.cri.sandbox-uid", "io.kubernetes.cri.container-name", "io.kubernetes.cri.image-name"},
	{"io.kubernetes.pod.namespace", "io.kubernetes.pod.name", "io.kubernetes.pod.uid", "io.kubernetes.container.name", "io.kubernetes.cri-o.ImageName"},
}

// NamesFromAnnotations maps OCI annotations (containerd or CRI-O) to names.
func NamesFromAnnotations(a map[string]string) Names {
	var n Names
	for _, k := range annotationKeys {
		set := func(dst *string, key string) {
			if *dst == "" {
				*dst = a[key]
			}
		}
		set(&n.Namespace, k.ns)
		set(&n.Pod, k.pod)
		set(&n.PodUID, k.uid)
		set(&n.Container, k.ctr)
		set(&n.Image, k.image)
	}
	return n
}

// Resolver looks names up under a host root (the node's / as seen by the
// capture, e.g. /host in a pod).
type Resolver struct {
	HostRoot string
}

// bundleDirs are where runtimes keep a container's OCI config.json.
var bundleDirs = []string{
	"run/containerd/io.containerd.runtime.v2.task/k8s.io",
	"run/containerd/io.containerd.runtime.v2.task/moby",
	"run/containers/storage/overlay-containers", // CRI-O: <id>/userdata/config.json
}

// Lookup returns the names for a container id and pod uid; fields it cannot
// find stay empty. The kubelet's /var/log/pods directories are the fallback.
func (r Resolver) Lookup(containerID, podUID string) Names {
	var n Names
	if containerID != "" && !strings.ContainsAny(containerID, "/.") {
		for _, d := range bundleDirs {
			for _, f := range []string{"config.json", "userdata/config.json"} {
				if a, err := readAnnotations(filepath.Join(r.root(), d, containerID, f)); err == nil {
					n = NamesFromAnnotations(a)
					break
				}
			}
			if n != (Names{}) {
				break
			}
		}
	}
	if n.PodUID == "" {
		n.PodUID = podUID
	}
	if n.Pod == "" && n.PodUID != "" {
		r.fromPodLogs(&n)
	}
	return n
}

func (r Resolver) root() string {
	if r.HostRoot == "" {
		return "/"
	}
	return r.HostRoot
}

func readAnnotations(path string) (map[string]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var spec struct {
		Annotations map[string]string `json:"annotations"`
	}
	if err := json.NewDecoder(io.LimitReader(f, maxConfig)).Decode(&spec); err != nil {
		return nil, err
	}
	return spec.Annotations, nil
}

// fromPodLogs fills namespace and pod from /var/log/pods/<ns>_<pod>_<uid>/;
// the container name is only set when the pod has a single container dir.
func (r Resolver) fromPodLogs(n *Names) {
	ents, err := os.ReadDir(filepath.Join(r.root(), "var/log/pods"))
	if err != nil {
		return
	}
	for _, e := range ents {
		name := e.Name()
		if !strings.HasSuffix(name, "_"+n.PodUID) {
			continue
		}
		rest := strings.TrimSuffix(name, "_"+n.PodUID)
		i := strings.IndexByte(rest, '_')
		if i <= 0 {
			continue
		}
		n.Namespace, n.Pod = rest[:i], rest[i+1:]
		if n.Container == "" {
			if cs, err := os.ReadDir(filepath.Join(r.root(), "var/log/pods", name)); err == nil && len(cs) == 1 {
				n.Container = cs[0].Name()
			}
		}
		return
	}
}
