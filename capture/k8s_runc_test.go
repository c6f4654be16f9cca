//go:build linux

package capture

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/bpfsnap/bpfsnap/analyze"
	"github.com/bpfsnap/bpfsnap/formats"
	"github.com/bpfsnap/bpfsnap/internal/testenv"
)

// TestK8sRuncContainer runs a static Go binary in a real runc container
// (own pid+mount namespaces) placed in a kubelet-style cgroupfs-driver
// cgroup, with the bundle where containerd keeps it and containerd's CRI
// annotations, and checks host pid, in-container pid and pod names.
func TestK8sRuncContainer(t *testing.T) {
	testenv.RequireBPF(t)
	testenv.RequireTool(t, "runc")
	cid := fmt.Sprintf("%064x", 0xc0ffee)
	const uid = "99999999-8888-7777-6666-555555555555"
	rt := t.TempDir()
	bundle := filepath.Join(rt, "run/containerd/io.containerd.runtime.v2.task/k8s.io", cid)
	rootfs := filepath.Join(bundle, "rootfs")
	os.MkdirAll(rootfs, 0o755)
	src := filepath.Join(t.TempDir(), "main.go")
	os.WriteFile(src, []byte("package main\nimport \"time\"\nfunc main(){ time.Sleep(60*time.Second) }\n"), 0o644)
	build := exec.Command("go", "build", "-o", filepath.Join(rootfs, "app"), src)
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := build.CombinedOutput(); err != nil {
		t.Fatalf("%v %s", err, b)
	}
	if b, err := exec.Command("runc", "spec", "--bundle", bundle).CombinedOutput(); err != nil {
		t.Fatalf("%v %s", err, b)
	}
	var spec map[string]any
	data, _ := os.ReadFile(filepath.Join(bundle, "config.json"))
	json.Unmarshal(data, &spec)
	proc := spec["process"].(map[string]any)
	proc["terminal"], proc["args"] = false, []string{"/app"}
	spec["root"] = map[string]any{"path": "rootfs", "readonly": true}
	spec["linux"].(map[string]any)["cgroupsPath"] = "/kubepods/burstable/pod" + uid + "/" + cid
	spec["annotations"] = map[string]string{"io.kubernetes.cri.sandbox-namespace": "shop", "io.kubernetes.cri.sandbox-name": "runc-pod",
		"io.kubernetes.cri.container-name": "app", "io.kubernetes.cri.sandbox-uid": uid, "io.kubernetes.cri.image-name": "local/app:1"}
	data, _ = json.Marshal(spec)
	os.WriteFile(filepath.Join(bundle, "config.json"), data, 0o644)
	name := "bpfsnap-k8s-test"
	exec.Command("runc", "delete", "-f", name).Run()
	// Detached with /dev/null stdio: piped stdio would be inherited by the
	// container and keep the call waiting for it to exit.
	if err := exec.Command("runc", "run", "-d", "--bundle", bundle, name).Run(); err != nil {
		t.Fatalf("runc run: %v", err)
	}
	t.Cleanup(func() {
		exec.Command("runc", "delete", "-f", name).Run()
		// runc leaves the (now empty) kubepods parents in every hierarchy.
		exec.Command("sh", "-c", "find /sys/fs/cgroup -depth -type d -path '*/kubepods/burstable/pod"+uid+"*' -exec rmdir {} + ; for d in /sys/fs/cgroup/*/kubepods/burstable /sys/fs/cgroup/*/kubepods /sys/fs/cgroup/kubepods/burstable /sys/fs/cgroup/kubepods; do rmdir $d 2>/dev/null; done").Run()
	})
	out, err := exec.Command("runc", "state", name).Output()
	if err != nil {
		t.Fatal(err)
	}
	var st struct{ Pid int }
	json.Unmarshal(out, &st)
	if st.Pid <= 1 {
		t.Fatalf("runc state: %s", out)
	}
	pids, err := ResolveK8sTargets("/proc", rt, K8sSelector{Pod: "shop/runc-pod"})
	if err != nil || len(pids) != 1 || pids[0] != uint32(st.Pid) {
		t.Fatalf("targets %v %v, want [%d]", pids, err, st.Pid)
	}
	arch := filepath.Join(t.TempDir(), "r.bpfsnap")
	if _, err := Run(context.Background(), Options{Output: arch, Duration: time.Second, PIDs: pids, RuntimeRoot: rt, Warn: func(string) {}}); err != nil {
		t.Fatal(err)
	}
	a, err := formats.Open(arch)
	if err != nil {
		t.Fatal(err)
	}
	ps, err := analyze.Processes(a)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range ps {
		if p.PID == uint32(st.Pid) {
			if p.NSPid != 1 || p.Namespace != "shop" || p.Pod != "runc-pod" || p.Container != "app" || p.Image != "local/app:1" || p.ContainerID != cid || p.PodUID != uid {
				t.Fatalf("%+v", p)
			}
			self, _ := os.Readlink("/proc/self/ns/pid")
			if fmt.Sprintf("pid:[%d]", p.PidNS) == self {
				t.Fatal("container shares the test's pid namespace")
			}
			return
		}
	}
	t.Fatalf("pid %d missing", st.Pid)
}
