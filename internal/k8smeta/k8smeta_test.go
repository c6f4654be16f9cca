package k8smeta

import (
	"os"
	"path/filepath"
	"testing"
)

const cid = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

func TestParseCgroupPath(t *testing.T) {
	cases := []struct {
		path string
		want Identity
	}{
		{"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1234abcd_0000_1111_2222_333344445555.slice/cri-containerd-" + cid + ".scope",
			Identity{cid, "1234abcd-0000-1111-2222-333344445555", "burstable", RuntimeContainerd}},
		{"/kubepods.slice/kubepods-pod1234abcd_0000_1111_2222_333344445555.slice/crio-" + cid + ".scope",
			Identity{cid, "1234abcd-0000-1111-2222-333344445555", "guaranteed", RuntimeCRIO}},
		{"/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod1234abcd_0000_1111_2222_333344445555.slice/docker-" + cid + ".scope",
			Identity{cid, "1234abcd-0000-1111-2222-333344445555", "besteffort", RuntimeDocker}},
		{"/kubepods/burstable/pod1234abcd-0000-1111-2222-333344445555/" + cid,
			Identity{cid, "1234abcd-0000-1111-2222-333344445555", "burstable", ""}},
		{"/kubepods/pod1234abcd-0000-1111-2222-333344445555/" + cid,
			Identity{cid, "1234abcd-0000-1111-2222-333344445555", "guaranteed", ""}},
		{"/docker/" + cid, Identity{ContainerID: cid, Runtime: RuntimeDocker}},
		{"/user.slice/user-0.slice/session-1.scope", Identity{}},
		{"/", Identity{}},
		{"/pod1234abcd-0000-1111-2222-333344445555/" + cid, Identity{}}, // not under kubepods
	}
	for _, c := range cases {
		if got := ParseCgroupPath(c.path); got != c.want {
			t.Errorf("ParseCgroupPath(%q) = %+v, want %+v", c.path, got, c.want)
		}
	}
}

func TestIdentityFromProcCgroupHybrid(t *testing.T) {
	data := "12:cpu,cpuacct:/kubepods/besteffort/pod1234abcd-0000-1111-2222-333344445555/" + cid + "\n" +
		"1:name=systemd:/init.scope\n0::/init.scope\ngarbage\n"
	id, v2 := IdentityFromProcCgroup(ParseProcCgroup(data))
	if id.ContainerID != cid || id.QoS != "besteffort" || v2 != "/init.scope" {
		t.Fatalf("got %+v %q", id, v2)
	}
}

func TestResolverContainerdAndLogs(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "run/containerd/io.containerd.runtime.v2.task/k8s.io", cid)
	os.MkdirAll(dir, 0o755)
	os.WriteFile(filepath.Join(dir, "config.json"), []byte(`{"ociVersion":"1.0.2","annotations":{
	"io.kubernetes.cri.sandbox-namespace":"shop","io.kubernetes.cri.sandbox-name":"checkout-7f9",
	"io.kubernetes.cri.container-name":"app","io.kubernetes.cri.image-name":"reg/checkout:1",
	"io.kubernetes.cri.sandbox-uid":"u-1"}}`), 0o644)
	n := Resolver{HostRoot: root}.Lookup(cid, "")
	if n != (Names{"shop", "checkout-7f9", "u-1", "app", "reg/checkout:1"}) {
		t.Fatalf("containerd: %+v", n)
	}
	// Fallback: kubelet log dir only.
	os.MkdirAll(filepath.Join(root, "var/log/pods/db_pg-0_u-2/postgres"), 0o755)
	n = Resolver{HostRoot: root}.Lookup("ffff"+cid[4:], "u-2")
	if n.Namespace != "db" || n.Pod != "pg-0" || n.Container != "postgres" || n.PodUID != "u-2" {
		t.Fatalf("logs fallback: %+v", n)
	}
	// Path traversal in an id is refused.
	if n := (Resolver{HostRoot: root}).Lookup("../../etc", ""); n != (Names{}) {
		t.Fatalf("traversal: %+v", n)
	}
}

func TestCRIOAnnotations(t *testing.T) {
	n := NamesFromAnnotations(map[string]string{"io.kubernetes.pod.namespace": "a", "io.kubernetes.pod.name": "b", "io.kubernetes.container.name": "c"})
	if n.Namespace != "a" || n.Pod != "b" || n.Container != "c" {
		t.Fatal(n)
	}
}

func TestScopes(t *testing.T) {
	const sysPod = "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1234abcd_0000_1111_2222_333344445555.slice"
	const fsPod = "/kubepods/pod1234abcd-0000-1111-2222-333344445555"
	cases := []struct{ path, pod, ctr string }{
		{sysPod + "/cri-containerd-" + cid + ".scope", sysPod, sysPod + "/cri-containerd-" + cid + ".scope"},
		// A container that makes its own sub-cgroups: the scope is still
		// the runtime's container cgroup.
		{fsPod + "/" + cid + "/init", fsPod, fsPod + "/" + cid},
		{sysPod, sysPod, ""},
		{"/docker/" + cid, "", "/docker/" + cid},
		{"/user.slice/user-0.slice/session-1.scope", "", ""},
		{"/", "", ""},
	}
	for _, c := range cases {
		if pod, ctr := Scopes(c.path); pod != c.pod || ctr != c.ctr {
			t.Errorf("Scopes(%q) = %q, %q; want %q, %q", c.path, pod, ctr, c.pod, c.ctr)
		}
	}
}
