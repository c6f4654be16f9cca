//go:build linux

package capture

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/bpfsnap/bpfsnap/analyze"
	"github.com/bpfsnap/bpfsnap/formats"
	"github.com/bpfsnap/bpfsnap/internal/testenv"
)

// TestK8sAttributionRealCgroups puts a real process into kubelet-style
// cgroups on this machine's v2 hierarchy, writes the runtime state each
// runtime would write, captures, and checks the folded process record.
func TestK8sAttributionRealCgroups(t *testing.T) {
	testenv.RequireBPF(t)
	v2 := "/sys/fs/cgroup/unified"
	if _, err := os.Stat(filepath.Join(v2, "cgroup.procs")); err != nil {
		v2 = "/sys/fs/cgroup"
	}
	const uid = "5d0c1e2f-aaaa-4bbb-8ccc-0123456789ab"
	us := "5d0c1e2f_aaaa_4bbb_8ccc_0123456789ab"
	cases := []struct {
		name, top, leaf, annFile, ann string
	}{
		{"systemd-containerd", "kubepods.slice", "kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + us + ".slice/cri-containerd-%s.scope",
			"run/containerd/io.containerd.runtime.v2.task/k8s.io/%s/config.json",
			`{"annotations":{"io.kubernetes.cri.sandbox-namespace":"shop","io.kubernetes.cri.sandbox-name":"checkout-1","io.kubernetes.cri.container-name":"app","io.kubernetes.cri.image-name":"img:1","io.kubernetes.cri.sandbox-uid":"` + uid + `"}}`},
		{"cgroupfs-containerd", "kubepods", "kubepods/besteffort/pod" + uid + "/%s",
			"run/containerd/io.containerd.runtime.v2.task/k8s.io/%s/config.json",
			`{"annotations":{"io.kubernetes.cri.sandbox-namespace":"shop","io.kubernetes.cri.sandbox-name":"checkout-1","io.kubernetes.cri.container-name":"app","io.kubernetes.cri.image-name":"img:1","io.kubernetes.cri.sandbox-uid":"` + uid + `"}}`},
		{"systemd-crio", "kubepods.slice", "kubepods.slice/kubepods-pod" + us + ".slice/crio-%s.scope",
			"run/containers/storage/overlay-containers/%s/userdata/config.json",
			`{"annotations":{"io.kubernetes.pod.namespace":"shop","io.kubernetes.pod.name":"checkout-1","io.kubernetes.container.name":"app","io.kubernetes.pod.uid":"` + uid + `"}}`},
		{"systemd-docker-logs", "kubepods.slice", "kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod" + us + ".slice/docker-%s.scope",
			"var/log/pods/shop_checkout-1_" + uid + "/app/0.log", ""},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cid := fmt.Sprintf("%064x", 0xabc000+i)
			rt := t.TempDir()
			f := filepath.Join(rt, c.annFile)
			if c.ann != "" {
				f = filepath.Join(rt, fmt.Sprintf(c.annFile, cid))
			}
			os.MkdirAll(filepath.Dir(f), 0o755)
			os.WriteFile(f, []byte(c.ann), 0o644)
			leaf := filepath.Join(v2, fmt.Sprintf(c.leaf, cid))
			if err := os.MkdirAll(leaf, 0o755); err != nil {
				t.Fatal(err)
			}
			cmd := exec.Command("sleep", "30")
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			pid := cmd.Process.Pid
			t.Cleanup(func() {
				cmd.Process.Kill()
				cmd.Wait()
				// Remove leaf-first once the process is gone.
				for d := leaf; d != v2 && len(d) > len(v2); d = filepath.Dir(d) {
					os.Remove(d)
				}
			})
			if err := os.WriteFile(filepath.Join(leaf, "cgroup.procs"), []byte(strconv.Itoa(pid)), 0); err != nil {
				t.Fatal(err)
			}
			out := filepath.Join(t.TempDir(), "k.bpfsnap")
			_, err := Run(context.Background(), Options{Output: out, Duration: time.Second, PIDs: []uint32{uint32(pid)}, RuntimeRoot: rt, Warn: func(string) {}})
			if err != nil {
				t.Fatal(err)
			}
			a, err := formats.Open(out)
			if err != nil {
				t.Fatal(err)
			}
			ps, err := analyze.Processes(a)
			if err != nil {
				t.Fatal(err)
			}
			for _, p := range ps {
				if p.PID != uint32(pid) {
					continue
				}
				if p.ContainerID != cid || p.PodUID != uid || p.Namespace != "shop" || p.Pod != "checkout-1" || p.Container != "app" {
					t.Fatalf("process %d: %+v", pid, p)
				}
				if p.MntNS == 0 || p.PidNS == 0 || p.NSPid != uint32(pid) {
					t.Fatalf("namespaces: %+v", p)
				}
				return
			}
			t.Fatalf("pid %d not in archive", pid)
		})
	}
}

// TestK8sTargetsRealCgroups resolves --pod/--namespace/--container-id/
// --cgroup selectors against /proc with one process inside a kubelet-style
// cgroup and one outside.
func TestK8sTargetsRealCgroups(t *testing.T) {
	testenv.RequireBPF(t)
	v2 := "/sys/fs/cgroup/unified"
	if _, err := os.Stat(filepath.Join(v2, "cgroup.procs")); err != nil {
		v2 = "/sys/fs/cgroup"
	}
	cid := fmt.Sprintf("%064x", 0xfeed42)
	podDir := "kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod11111111_2222_3333_4444_555555555555.slice"
	leaf := filepath.Join(v2, podDir, "cri-containerd-"+cid+".scope")
	if err := os.MkdirAll(leaf, 0o755); err != nil {
		t.Fatal(err)
	}
	rt := t.TempDir()
	cfg := filepath.Join(rt, "run/containerd/io.containerd.runtime.v2.task/k8s.io", cid, "config.json")
	os.MkdirAll(filepath.Dir(cfg), 0o755)
	os.WriteFile(cfg, []byte(`{"annotations":{"io.kubernetes.cri.sandbox-namespace":"shop","io.kubernetes.cri.sandbox-name":"checkout-9","io.kubernetes.cri.container-name":"app"}}`), 0o644)
	in, out := exec.Command("sleep", "30"), exec.Command("sleep", "30")
	for _, c := range []*exec.Cmd{in, out} {
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		for _, c := range []*exec.Cmd{in, out} {
			c.Process.Kill()
			c.Wait()
		}
		for d := leaf; len(d) > len(v2); d = filepath.Dir(d) {
			os.Remove(d)
		}
	})
	if err := os.WriteFile(filepath.Join(leaf, "cgroup.procs"), []byte(strconv.Itoa(in.Process.Pid)), 0); err != nil {
		t.Fatal(err)
	}
	for _, sel := range []K8sSelector{{Pod: "shop/checkout-9"}, {Namespace: "shop"}, {ContainerID: cid[:12]}, {Cgroup: "/" + podDir}} {
		pids, err := ResolveK8sTargets("/proc", rt, sel)
		if err != nil {
			t.Fatalf("%+v: %v", sel, err)
		}
		if len(pids) != 1 || pids[0] != uint32(in.Process.Pid) {
			t.Fatalf("%+v: got %v, want only %d (not %d)", sel, pids, in.Process.Pid, out.Process.Pid)
		}
	}
	if _, err := ResolveK8sTargets("/proc", rt, K8sSelector{Pod: "shop/other"}); err == nil {
		t.Fatal("a pod with no process must be an error")
	}
}
