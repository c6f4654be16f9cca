//go:build linux

package capture

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/bpfsnap/bpfsnap/analyze"
	"github.com/bpfsnap/bpfsnap/capture/recorder"
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
			_, ps := openProcesses(t, out)
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
	for _, sel := range []K8sSelector{{Pod: "shop/checkout-9"}, {Pod: "shop/other,shop/checkout-9"}, {Namespace: "shop"}, {ContainerID: cid[:12]}, {Cgroup: "/" + podDir}} {
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
	if _, err := ResolveK8sTargets("/proc", rt, K8sSelector{Pod: "shop/checkout-9,checkout-9"}); err == nil {
		t.Fatal("a pod list with a name without namespace must be an error")
	}
}

// TestK8sShortLivedJoiners targets a pod's cgroup while it has no process,
// then, during the window, runs processes that are not children of any
// target: each moves itself into a container cgroup of the pod and execs a
// program that exits within milliseconds, long before user space reads the
// event and /proc. They must be targets (followed by the kernel's cgroup
// walk) and attributed from the event's cgroup id. One joins a container
// cgroup created after the capture started (a restarted container); one a
// cgroup removed as soon as its process is gone, which must end up
// attributed or counted in k8s.unresolved, never silently blank.
func TestK8sShortLivedJoiners(t *testing.T) {
	testenv.RequireBPF(t)
	v2 := testenv.CgroupV2Root()
	const uid = "7e57a11e-0000-4000-8000-00000000beef"
	podDir := filepath.Join(v2, "kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod"+strings.ReplaceAll(uid, "-", "_")+".slice")
	cids := []string{fmt.Sprintf("%064x", 0x5107), fmt.Sprintf("%064x", 0x5108), fmt.Sprintf("%064x", 0x5109)}
	leaf := func(i int) string { return filepath.Join(podDir, "cri-containerd-"+cids[i]+".scope") }
	rt := t.TempDir()
	for i, cid := range cids {
		cfg := filepath.Join(rt, "run/containerd/io.containerd.runtime.v2.task/k8s.io", cid, "config.json")
		os.MkdirAll(filepath.Dir(cfg), 0o755)
		os.WriteFile(cfg, []byte(fmt.Sprintf(`{"annotations":{"io.kubernetes.cri.sandbox-namespace":"shop","io.kubernetes.cri.sandbox-name":"cart-7","io.kubernetes.cri.container-name":"c%d","io.kubernetes.cri.sandbox-uid":"%s"}}`, i, uid)), 0o644)
	}
	if err := os.MkdirAll(leaf(0), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for i := range cids {
			os.Remove(leaf(i))
		}
		for d := podDir; len(d) > len(v2); d = filepath.Dir(d) {
			os.Remove(d)
		}
	})
	// Outside the pod: must not be captured.
	outsider := exec.Command("sh", "-c", "sleep 0.2; exec /bin/true")

	out := filepath.Join(t.TempDir(), "j.bpfsnap")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ready, done := make(chan struct{}), make(chan error, 1)
	go func() {
		_, err := Run(ctx, Options{Output: out, Duration: time.Minute, RuntimeRoot: rt, Warn: func(string) {},
			K8s: K8sSelector{Cgroup: strings.TrimPrefix(podDir, v2)}, Ready: func() { close(ready) }})
		done <- err
	}()
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("capture ended early: %v", err)
	}
	// join moves a shell into cgroup dir and execs a program that exits
	// at once; it returns the exec'd pid (the shell's, exec keeps it).
	join := func(dir string) int {
		c := exec.Command("sh", "-c", "echo $$ > "+filepath.Join(dir, "cgroup.procs")+" && exec /bin/true")
		if b, err := c.CombinedOutput(); err != nil {
			t.Fatalf("%v %s", err, b)
		}
		return c.ProcessState.Pid()
	}
	pid0 := join(leaf(0))
	if err := os.Mkdir(leaf(1), 0o755); err != nil {
		t.Fatal(err)
	}
	pid1 := join(leaf(1))
	os.Mkdir(leaf(2), 0o755)
	pid2 := join(leaf(2))
	if err := os.Remove(leaf(2)); err != nil {
		t.Fatalf("removing the emptied cgroup: %v", err)
	}
	if err := outsider.Run(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond) // two ring polls
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	man, ps := openProcesses(t, out)
	byPID := map[uint32]analyze.Process{}
	for _, p := range ps {
		byPID[p.PID] = p
	}
	if _, ok := byPID[uint32(outsider.ProcessState.Pid())]; ok {
		t.Errorf("process outside the targeted cgroup captured: %+v", byPID[uint32(outsider.ProcessState.Pid())])
	}
	for i, pid := range []int{pid0, pid1} {
		p, ok := byPID[uint32(pid)]
		if !ok {
			t.Fatalf("joiner %d (pid %d) not captured; processes: %+v", i, pid, ps)
		}
		if p.Execs == 0 || p.Namespace != "shop" || p.Pod != "cart-7" || p.Container != fmt.Sprintf("c%d", i) || p.ContainerID != cids[i] || p.PodUID != uid {
			t.Errorf("joiner %d: %+v", i, p)
		}
		if p.MntNS == 0 || p.PidNS == 0 || p.NSPid != uint32(pid) {
			t.Errorf("joiner %d namespaces from the kernel: %+v", i, p)
		}
	}
	unresolved := man.Drops["k8s.unresolved"]
	p2, ok := byPID[uint32(pid2)]
	if !ok {
		t.Fatalf("joiner of the removed cgroup (pid %d) not captured", pid2)
	}
	if p2.Pod != "cart-7" && unresolved == 0 {
		t.Errorf("joiner of the removed cgroup neither attributed nor counted: %+v, drops %v", p2, man.Drops)
	}
	t.Logf("removed-cgroup joiner: pod %q, k8s.unresolved %d; targets %v", p2.Pod, unresolved, man.Targets.Extra)
}

// TestK8sCgroupNamespace runs the resolver the way it runs in a pod with a
// private cgroup namespace (containerd's default on cgroup v2): in its own
// cgroup namespace rooted at a sub-cgroup, with its own cgroup2 mount at
// /sys/fs/cgroup and the host's /proc and cgroup2 mount under a host root.
// /proc/PID/cgroup then shows other pods' cgroups as "/../…"; the resolver
// must make them absolute so the pod is found and its cgroup targeted.
func TestK8sCgroupNamespace(t *testing.T) {
	if os.Getenv("BPFSNAP_CGNS_HOST") != "" {
		cgroupnsHelper(t)
		return
	}
	testenv.RequireBPF(t) // root
	unshare := testenv.RequireTool(t, "unshare")
	testenv.RequireTool(t, "mount")
	v2 := testenv.CgroupV2Root()
	const uid = "c9a5e000-0000-4000-8000-000000000001"
	cid := fmt.Sprintf("%064x", 0xc95)
	podDir := filepath.Join(v2, "kubepods/besteffort/pod"+uid)
	nsDir := filepath.Join(v2, "bpfsnap-cgns-test")
	for _, d := range []string{filepath.Join(podDir, cid), nsDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	sleeper := exec.Command("sleep", "30")
	if err := sleeper.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		sleeper.Process.Kill()
		sleeper.Wait()
		os.Remove(nsDir)
		for d := filepath.Join(podDir, cid); len(d) > len(v2); d = filepath.Dir(d) {
			os.Remove(d)
		}
	})
	if err := os.WriteFile(filepath.Join(podDir, cid, "cgroup.procs"), []byte(strconv.Itoa(sleeper.Process.Pid)), 0); err != nil {
		t.Fatal(err)
	}
	rt := t.TempDir()
	cfg := filepath.Join(rt, "run/containerd/io.containerd.runtime.v2.task/k8s.io", cid, "config.json")
	os.MkdirAll(filepath.Dir(cfg), 0o755)
	os.WriteFile(cfg, []byte(`{"annotations":{"io.kubernetes.cri.sandbox-namespace":"shop","io.kubernetes.cri.sandbox-name":"ns-pod","io.kubernetes.cri.container-name":"app"}}`), 0o644)
	host := t.TempDir()
	os.MkdirAll(filepath.Join(host, "proc"), 0o755)
	os.MkdirAll(filepath.Join(host, v2), 0o755)
	// Move into nsDir, then unshare: the new cgroup namespace is rooted at
	// nsDir. In the new mount namespace: the host's /proc and cgroup2 under
	// host, and a namespace-rooted cgroup2 mount where the runtime puts it.
	inner := `mount --bind /proc "$BPFSNAP_CGNS_HOST/proc" && mount --bind "$V2" "$BPFSNAP_CGNS_HOST$V2" && mount -t tmpfs none /sys/fs/cgroup && mkdir -p "$V2" && mount -t cgroup2 none "$V2" && exec "$1" -test.run='^TestK8sCgroupNamespace$' -test.count=1`
	cmd := exec.Command("sh", "-c", `echo $$ > "$1/cgroup.procs" && shift && exec "$@"`, "sh", nsDir,
		unshare, "--cgroup", "--mount", "--propagation", "private", "sh", "-c", inner, "inner", os.Args[0])
	cmd.Env = append(os.Environ(), "BPFSNAP_CGNS_HOST="+host, "V2="+v2, "BPFSNAP_CGNS_RT="+rt,
		"BPFSNAP_CGNS_PID="+strconv.Itoa(sleeper.Process.Pid), "BPFSNAP_CGNS_WANT="+strings.TrimPrefix(podDir, v2))
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "cgroupns helper ok") {
		t.Fatalf("helper in a cgroup namespace: %v\n%s", err, out)
	}
	t.Logf("%s", out)
}

func cgroupnsHelper(t *testing.T) {
	host := os.Getenv("BPFSNAP_CGNS_HOST")
	pid, _ := strconv.Atoi(os.Getenv("BPFSNAP_CGNS_PID"))
	raw := recorder.ProcCgroupV2(filepath.Join(host, "proc"), uint32(pid))
	if !strings.HasPrefix(raw, "/..") {
		t.Fatalf("not in a cgroup namespace: /proc/%d/cgroup says %q", pid, raw)
	}
	r := recorder.NewCgroupResolver(host)
	defer r.Close()
	if r.NSProblem != "" || r.NSRoot() != "/bpfsnap-cgns-test" {
		t.Fatalf("namespace root %q, problem %q", r.NSRoot(), r.NSProblem)
	}
	res, err := recorder.ResolveK8s(filepath.Join(host, "proc"), os.Getenv("BPFSNAP_CGNS_RT"), r, K8sSelector{Pod: "shop/ns-pod"})
	want := os.Getenv("BPFSNAP_CGNS_WANT")
	if err != nil || len(res.PIDs) != 1 || res.PIDs[0] != uint32(pid) || len(res.Cgroups) != 1 || res.Cgroups[0] != want {
		t.Fatalf("resolved %+v, %v; want pid %d, cgroup %s (raw /proc path %q)", res, err, pid, want, raw)
	}
	fmt.Printf("cgroupns helper ok: %q -> %q\n", raw, r.Abs(raw))
}

// --namespace follows pods that appear during the window (a new pod, or a
// StatefulSet pod created again in a new cgroup): their cgroups are added
// to the kernel's target map by the rescan, their running processes are
// adopted, and what they fork or exec afterwards is followed. A pod of
// another namespace started at the same time is not captured.
func TestK8sNamespaceFollowsNewPods(t *testing.T) {
	testenv.RequireBPF(t)
	v2 := testenv.CgroupV2Root()
	rt := t.TempDir()
	pods := []testenv.FakePod{
		{NS: "shop", Name: "cart-0", UID: "7e57a11e-0000-4000-8000-0000000000a0", CID: fmt.Sprintf("%064x", 0x5200)},
		{NS: "shop", Name: "cart-1", UID: "7e57a11e-0000-4000-8000-0000000000a1", CID: fmt.Sprintf("%064x", 0x5201)},
		{NS: "other", Name: "db-0", UID: "7e57a11e-0000-4000-8000-0000000000a2", CID: fmt.Sprintf("%064x", 0x5202)},
	}
	start := func(p testenv.FakePod, script string) int {
		return testenv.StartInFakePod(t, v2, rt, p, script).Process.Pid
	}
	// cart-0 runs before the capture starts; cart-1 and db-0 start after.
	first := start(pods[0], "exec sleep 30")
	time.Sleep(200 * time.Millisecond)

	out := filepath.Join(t.TempDir(), "ns.bpfsnap")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ready, done := make(chan struct{}), make(chan error, 1)
	go func() {
		_, err := Run(ctx, Options{Output: out, Duration: time.Minute, RuntimeRoot: rt, Warn: func(string) {},
			K8s: K8sSelector{Namespace: "shop"}, Ready: func() { close(ready) }})
		done <- err
	}()
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("capture ended early: %v", err)
	}
	// The new pod's shell runs before the rescan sees its cgroup (it is
	// adopted), then, after the rescan, starts a child (followed by the
	// kernel through the cgroup).
	late := start(pods[1], "sleep 2.5; /bin/echo late-child; exec sleep 30")
	stranger := start(pods[2], "sleep 2.5; /bin/echo stranger; exec sleep 30")
	time.Sleep(4 * time.Second)
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	_, ps := openProcesses(t, out)
	byPID := map[uint32]analyze.Process{}
	var lateChild *analyze.Process
	for i, p := range ps {
		byPID[p.PID] = p
		if strings.Contains(p.Cmdline, "late-child") {
			lateChild = &ps[i]
		}
		if p.Namespace == "other" || strings.Contains(p.Cmdline, "stranger") {
			t.Errorf("a process of another namespace was captured: %+v", p)
		}
	}
	for _, c := range []struct {
		pid int
		pod string
	}{{first, "cart-0"}, {late, "cart-1"}} {
		p, ok := byPID[uint32(c.pid)]
		if !ok {
			t.Fatalf("pid %d of pod %s not captured; processes: %+v", c.pid, c.pod, ps)
		}
		if p.Namespace != "shop" || p.Pod != c.pod {
			t.Errorf("pid %d: pod %s/%s, want shop/%s", c.pid, p.Namespace, p.Pod, c.pod)
		}
	}
	if _, ok := byPID[uint32(stranger)]; ok {
		t.Errorf("the other namespace's shell was captured")
	}
	if lateChild == nil {
		t.Fatalf("the new pod's child, started after the rescan, was not followed; processes: %+v", ps)
	}
	if lateChild.Pod != "cart-1" || lateChild.PPID != uint32(late) {
		t.Errorf("late child: %+v", *lateChild)
	}
}

// With a Kubernetes selector the HTTP programs attach to the selected
// pods' cgroups, not the root: another pod's traffic never runs them (not
// even the hook's own dispatch), a pod selected during the window gets
// them at the rescan, and the selected pods' requests are all recorded.
func TestK8sHTTPScopedToPods(t *testing.T) {
	testenv.RequireBPF(t)
	py := testenv.RequireTool(t, "python3")
	v2 := testenv.CgroupV2Root()
	rt, www := t.TempDir(), t.TempDir()
	os.WriteFile(filepath.Join(www, "index.html"), []byte("hello\n"), 0o644)
	pods := []testenv.FakePod{
		{NS: "shop", Name: "web-0", UID: "7e57a11e-0000-4000-8000-0000000000b0", CID: fmt.Sprintf("%064x", 0x5300)},
		{NS: "other", Name: "web-1", UID: "7e57a11e-0000-4000-8000-0000000000b1", CID: fmt.Sprintf("%064x", 0x5301)},
		{NS: "shop", Name: "web-2", UID: "7e57a11e-0000-4000-8000-0000000000b2", CID: fmt.Sprintf("%064x", 0x5302)},
	}
	ports := []int{freePort(t), freePort(t), freePort(t)}
	pids := make([]int, len(pods))
	serve := func(i int) {
		// http.server answers HTTP/1.0: a connection per request.
		c := testenv.StartInFakePod(t, v2, rt, pods[i], fmt.Sprintf("exec %s -m http.server %d --bind 127.0.0.1 --directory %s", py, ports[i], www))
		pids[i] = c.Process.Pid
		waitListening(t, ports[i])
	}
	serve(0)
	serve(1)
	stats, err := ebpf.EnableStats(uint32(unix.BPF_STATS_RUN_TIME))
	if err != nil {
		t.Fatalf("enabling BPF run statistics: %v", err)
	}
	defer stats.Close()
	// runs counts the runs of every program named like ours (the capture's,
	// as tests run one at a time).
	runs := func() uint64 {
		var sum uint64
		for id := ebpf.ProgramID(0); ; {
			var err error
			if id, err = ebpf.ProgramGetNextID(id); err != nil {
				return sum
			}
			p, err := ebpf.NewProgramFromID(id)
			if err != nil {
				continue
			}
			if info, err := p.Info(); err == nil && (info.Name == "http_egress" || info.Name == "http_ingress") {
				if st, err := p.Stats(); err == nil {
					sum += st.RunCount
				}
			}
			p.Close()
		}
	}

	out := filepath.Join(t.TempDir(), "pods.bpfsnap")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ready, done := make(chan struct{}), make(chan error, 1)
	var res *Result
	go func() {
		r, err := Run(ctx, Options{Output: out, Duration: time.Minute, Probes: []string{"http"}, Sets: NewProbeSets(), RuntimeRoot: rt,
			Warn: func(string) {}, K8s: K8sSelector{Namespace: "shop"}, Ready: func() { close(ready) }, Version: "test"})
		res = r
		done <- err
	}()
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("capture ended early: %v", err)
	}
	const n = 100
	before := runs()
	clientLoad(t, ports[1], n, 2, "/index.html")
	if d := runs() - before; d != 0 {
		t.Errorf("another namespace's %d requests ran the HTTP programs %d times", n, d)
	}
	clientLoad(t, ports[0], n, 2, "/index.html")
	if d := runs() - before; d < 2*n {
		t.Errorf("the selected pod's %d requests ran the HTTP programs %d times, want >= %d (request and response)", n, d, 2*n)
	}
	serve(2)
	time.Sleep(2500 * time.Millisecond) // the rescan runs every second
	clientLoad(t, ports[2], n/2, 2, "/index.html")
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if hook := probeDetails(res.Manifest.Probes, "http")["hook"]; !strings.Contains(hook, pods[0].Dir(v2)[len(v2):]) {
		t.Errorf("http hook: %q, want the pod's cgroup", hook)
	}
	served := map[uint32]int64{}
	for _, e := range openHTTP(t, out).Endpoints {
		if e.Role == formats.RoleServer {
			served[e.PID] += e.Count
		}
	}
	t.Logf("server rows by pid %v (pods' servers %v); drops %v", served, pids, res.Manifest.Drops)
	for i, want := range []int64{n, 0, n / 2} {
		if got := served[uint32(pids[i])]; got != want {
			t.Errorf("%s/%s served %d requests in the archive, want %d", pods[i].NS, pods[i].Name, got, want)
		}
	}
}
