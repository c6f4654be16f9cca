package testenv

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// FakePod is a pod as kubelet and containerd leave it on a node: a pod
// cgroup holding a container cgroup, and the container's config.json with
// the pod's annotations below the runtime root. Tests of the Kubernetes
// selectors (capture and the reading verbs) build pods with it.
type FakePod struct{ NS, Name, UID, CID string }

// Dir is the pod's cgroup below the cgroup v2 mount v2 (systemd driver,
// besteffort QoS).
func (p FakePod) Dir(v2 string) string {
	return filepath.Join(v2, "kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod"+strings.ReplaceAll(p.UID, "-", "_")+".slice")
}

// Leaf is the container's cgroup inside the pod's.
func (p FakePod) Leaf(v2 string) string {
	return filepath.Join(p.Dir(v2), "cri-containerd-"+p.CID+".scope")
}

// CgroupV2Root is where the cgroup v2 hierarchy is mounted: the unified
// directory on hybrid hosts, /sys/fs/cgroup otherwise.
func CgroupV2Root() string {
	if _, err := os.Stat("/sys/fs/cgroup/unified/cgroup.procs"); err == nil {
		return "/sys/fs/cgroup/unified"
	}
	return "/sys/fs/cgroup"
}

// StartInFakePod creates p's cgroups and runtime state below rt and runs
// script in its container cgroup. The process is killed and the cgroups
// removed when the test ends.
func StartInFakePod(t testing.TB, v2, rt string, p FakePod, script string) *exec.Cmd {
	t.Helper()
	cfg := filepath.Join(rt, "run/containerd/io.containerd.runtime.v2.task/k8s.io", p.CID, "config.json")
	os.MkdirAll(filepath.Dir(cfg), 0o755)
	os.WriteFile(cfg, []byte(fmt.Sprintf(`{"annotations":{"io.kubernetes.cri.sandbox-namespace":%q,"io.kubernetes.cri.sandbox-name":%q,"io.kubernetes.cri.container-name":"app","io.kubernetes.cri.sandbox-uid":%q}}`, p.NS, p.Name, p.UID)), 0o644)
	if err := os.MkdirAll(p.Leaf(v2), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		os.Remove(p.Leaf(v2))
		for d := p.Dir(v2); len(d) > len(v2); d = filepath.Dir(d) {
			os.Remove(d)
		}
	})
	c := exec.Command("sh", "-c", "echo $$ > "+filepath.Join(p.Leaf(v2), "cgroup.procs")+" && "+script)
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c.Process.Kill()
		c.Wait()
	})
	return c
}
