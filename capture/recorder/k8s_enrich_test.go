//go:build linux

package recorder

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bpfsnap/bpfsnap/formats"
	"github.com/bpfsnap/bpfsnap/internal/testenv"
)

// enrichK8s attributes a row from its cgroup id alone when the process is
// gone, and counts a row it cannot attribute at all.
func TestK8sEnrichWithoutProc(t *testing.T) {
	v2 := testenv.CgroupV2Root()
	cid := fmt.Sprintf("%064x", 0xdead01)
	leaf := filepath.Join(v2, "kubepods/burstable/pod0badf00d-0000-4000-8000-000000000001", cid)
	if err := os.MkdirAll(leaf, 0o755); err != nil {
		t.Skipf("cannot make a cgroup: %v", err)
	}
	t.Cleanup(func() {
		for d := leaf; len(d) > len(v2); d = filepath.Dir(d) {
			os.Remove(d)
		}
	})
	rt := t.TempDir()
	cfg := filepath.Join(rt, "run/containerd/io.containerd.runtime.v2.task/k8s.io", cid, "config.json")
	os.MkdirAll(filepath.Dir(cfg), 0o755)
	os.WriteFile(cfg, []byte(`{"annotations":{"io.kubernetes.cri.sandbox-namespace":"ns1","io.kubernetes.cri.sandbox-name":"p1","io.kubernetes.cri.container-name":"c1"}}`), 0o644)
	// A fresh procRoot with no pid directories: /proc is "gone".
	s := &Session{opts: Options{HostRoot: "/", RuntimeRoot: rt}, procRoot: t.TempDir(), cgroups: NewCgroupResolver("/")}
	defer s.cgroups.Close()
	id, ok := s.cgroups.ID(strings.TrimPrefix(leaf, v2))
	if !ok {
		t.Fatal("no id for the cgroup")
	}
	// Created after any walk: resolved by file handle.
	row := formats.ProcessEvent{Kind: formats.ProcessExec, PID: 4242, CgroupID: id, CgroupPath: s.cgroups.Path(id)}
	s.enrichK8s(&row)
	if row.Namespace != "ns1" || row.Pod != "p1" || row.Container != "c1" || row.ContainerID != cid || row.PodUID != "0badf00d-0000-4000-8000-000000000001" {
		t.Fatalf("%+v", row)
	}
	if n := s.k8s.unresolved.Load(); n != 0 {
		t.Fatalf("unresolved %d after a resolved row", n)
	}
	gone := formats.ProcessEvent{Kind: formats.ProcessExec, PID: 4243, CgroupID: 1 << 62}
	gone.CgroupPath = s.cgroups.Path(gone.CgroupID)
	s.enrichK8s(&gone)
	if gone.CgroupPath != "" || gone.Pod != "" || s.k8s.unresolved.Load() != 1 {
		t.Fatalf("unknown cgroup, no /proc: %+v, unresolved %d", gone, s.k8s.unresolved.Load())
	}
}
