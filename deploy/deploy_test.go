package deploy

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/bpfsnap/bpfsnap/internal/fleetfixture"
	"github.com/bpfsnap/bpfsnap/internal/testenv"
)

type job struct {
	Spec struct {
		Template struct {
			Spec struct {
				HostPID    bool   `yaml:"hostPID"`
				NodeName   string `yaml:"nodeName"`
				Containers []struct {
					Args            []string `yaml:"args"`
					SecurityContext struct {
						Privileged   bool `yaml:"privileged"`
						Capabilities struct {
							Drop []string `yaml:"drop"`
							Add  []string `yaml:"add"`
						} `yaml:"capabilities"`
					} `yaml:"securityContext"`
					VolumeMounts []struct {
						Name      string `yaml:"name"`
						MountPath string `yaml:"mountPath"`
						ReadOnly  bool   `yaml:"readOnly"`
					} `yaml:"volumeMounts"`
				} `yaml:"containers"`
			} `yaml:"spec"`
		} `yaml:"template"`
	} `yaml:"spec"`
}

func parseJob(t *testing.T, data []byte) job {
	var j job
	if err := yaml.Unmarshal(data, &j); err != nil {
		t.Fatal(err)
	}
	return j
}

func TestJobManifest(t *testing.T) {
	data, err := os.ReadFile("kubernetes/job.yaml")
	if err != nil {
		t.Fatal(err)
	}
	s := parseJob(t, data).Spec.Template.Spec
	if !s.HostPID || len(s.Containers) != 1 {
		t.Fatalf("hostPID=%v containers=%d", s.HostPID, len(s.Containers))
	}
	c := s.Containers[0]
	if c.SecurityContext.Privileged || len(c.SecurityContext.Capabilities.Drop) != 1 || c.SecurityContext.Capabilities.Drop[0] != "ALL" {
		t.Fatalf("security context: %+v", c.SecurityContext)
	}
	allowed := map[string]bool{"BPF": true, "PERFMON": true, "SYS_PTRACE": true, "SYS_ADMIN": true, "SYS_RESOURCE": true, "DAC_READ_SEARCH": true}
	for _, cp := range c.SecurityContext.Capabilities.Add {
		if !allowed[cp] {
			t.Errorf("unexpected capability %s", cp)
		}
	}
	for _, m := range c.VolumeMounts {
		if strings.HasPrefix(m.MountPath, "/host") && !m.ReadOnly {
			t.Errorf("host mount %s is writable", m.MountPath)
		}
	}
	// Every capability line carries its justification.
	for _, cp := range c.SecurityContext.Capabilities.Add {
		found := false
		for _, l := range strings.Split(string(data), "\n") {
			if strings.Contains(l, "- "+cp+" ") && strings.Contains(l, "#") {
				found = true
			}
		}
		if !found {
			t.Errorf("capability %s has no comment", cp)
		}
	}
}

// fakeKubectl writes a kubectl into dir that logs each call (one line of
// arguments) to dir/log and answers like a cluster would: nodes of pods,
// Jobs that become Ready (their rendered YAML kept as dir/job-NAME.yaml),
// captures that are done at once, and `kubectl cp` copying
// dir/archives/NODE.bpfsnap (the node read from the Job's YAML). Jobs on
// the nodes listed in dir/failing never become Ready.
func fakeKubectl(t *testing.T, dir, pods, selector string) {
	t.Helper()
	fake := `#!/bin/sh
d="` + dir + `"
printf '%s\n' "$*" >> "$d/log"
arg() { # the value after $1 in the rest of the arguments
  want=$1; shift
  while [ $# -gt 1 ]; do [ "$1" = "$want" ] && { printf %s "$2"; return; }; shift; done
}
jobof() { j=$(arg -l "$@"); printf %s "${j#bpfsnap/job=}"; }
nodeof() { sed -n 's/^ *nodeName: *\([^ ]*\).*/\1/p' "$d/job-$1.yaml"; }
case "$1 $2" in
  "get pod")
    case "$*" in
      *nodeName*) printf node-7 ;;
      *bpfsnap/job=*) printf "pod-%s" "$(jobof "$@")" ;;
    esac ;;
  "get pods") printf '` + pods + `' ;;
  "get deployment")
    # With dir/workload.yaml, the real kubectl evaluates the plugin's
    # template on that object, offline.
    if [ -f "$d/workload.yaml" ]; then exec "$REAL_KUBECTL" label --local -f "$d/workload.yaml" bpfsnap-test=1 -o "$(arg -o "$@")"; fi
    printf '` + selector + `' ;;
  "apply -f")
    cat > "$d/applying.$$"
    job=$(sed -n 's/^  name: //p' "$d/applying.$$")
    mv "$d/applying.$$" "$d/job-$job.yaml" ;;
  "wait pod")
    job=$(jobof "$@")
    if grep -qx "$(nodeof "$job")" "$d/failing" 2>/dev/null; then sleep 1; echo "timed out" >&2; exit 1; fi ;;
  "exec -n")
    case "$*" in
      *" -- ls /out") printf 'capture.bpfsnap\ncapture-20261207T093012.345Z.bpfsnap\ndone\nstart\n' ;;
    esac ;;
  "cp "*)
    pod=${2#*/}; pod=${pod%%:*}; job=${pod#pod-}
    cp "$d/archives/$(nodeof "$job").bpfsnap" "$3" ;;
esac
exit 0
`
	if err := os.WriteFile(filepath.Join(dir, "kubectl"), []byte(fake), 0o755); err != nil {
		t.Fatal(err)
	}
}

func kubectlCalls(t *testing.T, dir string) []string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dir, "log"))
	if err != nil {
		t.Fatal(err)
	}
	return strings.Split(strings.TrimSpace(string(data)), "\n")
}

// TestPluginCommands runs the plugin on one pod with a fake kubectl that
// records its arguments and answers like a cluster would.
func TestPluginCommands(t *testing.T) {
	dir := t.TempDir()
	os.Mkdir(filepath.Join(dir, "archives"), 0o755)
	os.WriteFile(filepath.Join(dir, "archives", "node-7.bpfsnap"), []byte("archive\n"), 0o644)
	fakeKubectl(t, dir, "", "")
	out := filepath.Join(dir, "got.bpfsnap")
	cmd := exec.Command("sh", "./kubectl-bpfsnap", "pod/checkout-1", "-n", "shop", "--duration", "10s", "-o", out, "--image", "reg/bpfsnap:t")
	cmd.Env = append(os.Environ(), "PATH="+dir+":"+os.Getenv("PATH"))
	stdout, err := cmd.Output()
	if err != nil {
		t.Fatalf("%v\n%s", err, stdout)
	}
	calls := kubectlCalls(t, dir)
	want := []string{"get pod checkout-1 -n shop -o jsonpath={.spec.nodeName}", "apply -f -", "wait pod -n shop", "get pod -n shop -l",
		"exec -n shop pod-bpfsnap-checkout-1-1-", "exec -n shop pod-bpfsnap-checkout-1-1-", "cp shop/pod-bpfsnap-checkout-1-1-",
		"exec -n shop pod-bpfsnap-checkout-1-1-", "cp shop/pod-bpfsnap-checkout-1-1-", "exec -n shop pod-bpfsnap-checkout-1-1-", "delete job"}
	if len(calls) != len(want) {
		t.Fatalf("calls:\n%s", strings.Join(calls, "\n"))
	}
	for i, w := range want {
		if !strings.HasPrefix(calls[i], w) {
			t.Errorf("call %d = %q, want prefix %q", i, calls[i], w)
		}
	}
	for i, suffix := range map[int]string{4: "> /out/start", 5: "-- test -e /out/done", 6: ":/out/capture.bpfsnap " + out, 7: "-- ls /out",
		8: ":/out/capture-20261207T093012.345Z.bpfsnap " + strings.TrimSuffix(out, ".bpfsnap") + "-20261207T093012.345Z.bpfsnap", 9: "-- touch /out/copied"} {
		if !strings.Contains(calls[i], suffix) {
			t.Errorf("call %d = %q, want %q", i, calls[i], suffix)
		}
	}
	jobs, _ := filepath.Glob(filepath.Join(dir, "job-*.yaml"))
	if len(jobs) != 1 {
		t.Fatalf("jobs applied: %v", jobs)
	}
	applied, err := os.ReadFile(jobs[0])
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(applied), "__") {
		t.Fatalf("unrendered placeholder in\n%s", applied)
	}
	s := parseJob(t, applied).Spec.Template.Spec
	if s.NodeName != "node-7" || !strings.Contains(s.Containers[0].Args[0], `--pod "shop/checkout-1" --duration "10s"`) {
		t.Fatalf("rendered job: node %q args %q", s.NodeName, s.Containers[0].Args)
	}
	if b, _ := os.ReadFile(out); string(b) != "archive\n" {
		t.Fatal("archive not copied")
	}
	if strings.TrimSpace(string(stdout)) != out {
		t.Errorf("prints %q, want the archive's path", stdout)
	}
	// Hostile names are refused before any kubectl call.
	for _, args := range [][]string{{"pod/x;rm", "-n", "shop"}, {"deploy/shop", "-n", "shop", "--ring", "1m", "--trigger", "http.p99>1s$(reboot)"},
		{"deploy/shop", "-n", "shop", "--ring", "1m", "--trigger", "a\\b"}, {"-l", "app=x", "-n", "shop", "--trigger", "oom"}, {"deploy/Shop", "-n", "shop"}} {
		os.Remove(filepath.Join(dir, "log"))
		bad := exec.Command("sh", append([]string{"./kubectl-bpfsnap"}, args...)...)
		bad.Env = cmd.Env
		if err := bad.Run(); err == nil {
			t.Errorf("%q accepted", args)
		}
		if _, err := os.Stat(filepath.Join(dir, "log")); err == nil {
			t.Errorf("%q: kubectl called", args)
		}
	}
}

// TestPluginFleet runs the plugin on a deployment whose 4 pods run on 3
// nodes (two on one), as a flight recorder with triggers: one Job per
// node, all applied and Ready before any window starts, every window
// starting at the same second, the selected pods of each node captured
// together, every archive and dump copied, every Job deleted, and the
// fleet report written by the real bpfsnap. A node whose Job never gets
// Ready fails the run, and the others are still reported.
func TestPluginFleet(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "bpfsnap")
	if out, err := exec.Command("go", "build", "-o", bin, "../cmd/bpfsnap").CombinedOutput(); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	archives := filepath.Join(dir, "archives")
	os.Mkdir(archives, 0o755)
	for i, node := range []string{"node-a", "node-b", "node-c"} {
		if _, err := fleetfixture.Write(archives, fleetfixture.Node{Host: node, Seed: uint64(i + 1), Window: 5 * time.Second, RequestsPerSec: 200, SamplesPerSec: 50}); err != nil {
			t.Fatal(err)
		}
	}
	fakeKubectl(t, dir, `node-b shop-7d9-2\nnode-a shop-7d9-1\nnode-a shop-7d9-3\nnode-c shop-7d9-4\n`, "app=shop,track in (stable,canary),")
	run := func(out string) ([]byte, []byte, error) {
		cmd := exec.Command("sh", "./kubectl-bpfsnap", "deploy/shop", "-n", "shop", "--duration", "20s", "-p", "cpu,http",
			"--ring", "60s", "--trigger", "http.p99>250ms,route=/api/{id}", "--trigger", "oom", "-o", out)
		cmd.Env = append(os.Environ(), "PATH="+dir+":"+os.Getenv("PATH"))
		var stderr strings.Builder
		cmd.Stderr = &stderr
		stdout, err := cmd.Output()
		return stdout, []byte(stderr.String()), err
	}
	out := filepath.Join(dir, "fleet")
	stdout, stderr, err := run(out)
	if err != nil {
		t.Fatalf("%v\n%s", err, stderr)
	}
	calls := kubectlCalls(t, dir)
	if !strings.HasPrefix(calls[0], "get deployment shop -n shop -o go-template=") ||
		calls[1] != "get pods -n shop -l app=shop,track in (stable,canary) --field-selector=status.phase=Running -o jsonpath={range .items[*]}{.spec.nodeName}{\" \"}{.metadata.name}{\"\\n\"}{end}" {
		t.Fatalf("lookups:\n%s", strings.Join(calls[:2], "\n"))
	}
	pods := map[string]string{"node-a": "shop/shop-7d9-1,shop/shop-7d9-3", "node-b": "shop/shop-7d9-2", "node-c": "shop/shop-7d9-4"}
	jobs, _ := filepath.Glob(filepath.Join(dir, "job-*.yaml"))
	if len(jobs) != 3 {
		t.Fatalf("%d jobs applied, want one per node", len(jobs))
	}
	for _, j := range jobs {
		data, _ := os.ReadFile(j)
		if strings.Contains(string(data), "__") {
			t.Fatalf("unrendered placeholder in\n%s", data)
		}
		s := parseJob(t, data).Spec.Template.Spec
		want := `--pod "` + pods[s.NodeName] + `" --duration "20s" -p "cpu,http" --ring "60s" --trigger "http.p99>250ms,route=/api/{id}" --trigger "oom"`
		if pods[s.NodeName] == "" || !strings.Contains(s.Containers[0].Args[0], want) {
			t.Errorf("job on %q: args %q, want %q", s.NodeName, s.Containers[0].Args[0], want)
		}
		delete(pods, s.NodeName)
	}
	// Every Job is Ready before any window starts, and all start at the
	// same second.
	lastWait, starts, deletes := -1, map[string]int{}, 0
	for i, c := range calls {
		switch {
		case strings.HasPrefix(c, "wait pod"):
			lastWait = i
		case strings.HasSuffix(c, "> /out/start"):
			if lastWait < 0 || i < lastWait {
				t.Errorf("a window started (call %d) before every Job was Ready (last wait: call %d)", i, lastWait)
			}
			f := strings.Fields(c)
			starts[f[len(f)-3]]++
		case strings.HasPrefix(c, "delete job"):
			deletes++
		}
	}
	if len(starts) != 1 || deletes != 3 {
		t.Errorf("start times %v (want one, three times), %d Jobs deleted", starts, deletes)
	}
	for _, node := range []string{"node-a", "node-b", "node-c"} {
		src, _ := os.ReadFile(filepath.Join(archives, node+".bpfsnap"))
		for _, got := range []string{filepath.Join(out, node+".bpfsnap"), filepath.Join(out, "dumps", node+"-20261207T093012.345Z.bpfsnap")} {
			if b, err := os.ReadFile(got); err != nil || !bytes.Equal(b, src) {
				t.Errorf("%s: not the node's archive (%v)", got, err)
			}
		}
	}
	if strings.TrimSpace(string(stdout)) != filepath.Join(out, "report.html") {
		t.Errorf("prints %q, want the report's path", stdout)
	}
	runJobCommand(t, jobs[0])
	for _, page := range []string{filepath.Join(out, "report.html"), filepath.Join(out, "dumps", "report.html")} {
		if b, err := os.ReadFile(page); err != nil || !bytes.Contains(b, []byte("Fleet: 3 nodes")) {
			t.Errorf("%s: no fleet report of the 3 nodes (%v)", page, err)
		}
	}

	// node-c's Job never gets Ready: the run fails, naming it, and reports
	// the two others.
	os.WriteFile(filepath.Join(dir, "failing"), []byte("node-c\n"), 0o644)
	os.Remove(filepath.Join(dir, "log"))
	out = filepath.Join(dir, "fleet2")
	_, stderr, err = run(out)
	if err == nil || !strings.Contains(string(stderr), "failed on node(s) node-c") {
		t.Fatalf("a failed node: %v\n%s", err, stderr)
	}
	if b, err := os.ReadFile(filepath.Join(out, "report.html")); err != nil || !bytes.Contains(b, []byte("Fleet: 2 nodes")) {
		t.Errorf("no report of the two nodes that worked (%v)", err)
	}
	if _, err := os.Stat(filepath.Join(out, "node-c.bpfsnap")); err == nil {
		t.Error("an archive for the failed node")
	}
	deletes = 0
	for _, c := range kubectlCalls(t, dir) {
		if strings.HasPrefix(c, "delete job") {
			deletes++
		}
	}
	if deletes != 3 {
		t.Errorf("%d Jobs deleted, want all 3", deletes)
	}
}

// The selector of a workload is read with the plugin's go-template, here
// evaluated by the real kubectl on a Deployment (offline): matchLabels and
// every matchExpressions operator become the label selector the pods are
// listed with.
func TestPluginWorkloadSelector(t *testing.T) {
	real := testenv.RequireTool(t, "kubectl")
	dir := t.TempDir()
	fakeKubectl(t, dir, "", "")
	os.WriteFile(filepath.Join(dir, "workload.yaml"), []byte(`apiVersion: apps/v1
kind: Deployment
metadata: {name: shop, namespace: shop}
spec:
  selector:
    matchLabels: {app: shop, tier: web}
    matchExpressions:
      - {key: track, operator: In, values: [stable, canary]}
      - {key: zone, operator: NotIn, values: [eu-1]}
      - {key: legacy, operator: DoesNotExist}
      - {key: owner, operator: Exists}
  template:
    metadata: {labels: {app: shop, tier: web, track: stable, owner: x}}
    spec: {containers: [{name: app, image: shop}]}
`), 0o644)
	cmd := exec.Command("sh", "./kubectl-bpfsnap", "deployment/shop", "-n", "shop")
	cmd.Env = append(os.Environ(), "PATH="+dir+":"+os.Getenv("PATH"), "REAL_KUBECTL="+real)
	out, err := cmd.CombinedOutput()
	// The fake lists no pod: the plugin stops there, saying which selector
	// matched nothing.
	want := "app=shop,tier=web,track in (stable,canary),zone notin (eu-1),!legacy,owner"
	if err == nil || !strings.Contains(string(out), "no running pod in shop matches "+want) {
		t.Fatalf("%v: %s", err, out)
	}
	if calls := kubectlCalls(t, dir); len(calls) != 2 || !strings.HasPrefix(calls[1], "get pods -n shop -l "+want+" --field-selector") {
		t.Fatalf("calls: %q", calls)
	}
	// -l passes the selector as one argument, as given.
	os.Remove(filepath.Join(dir, "log"))
	sel := "app in (shop, cart),!legacy"
	cmd = exec.Command("sh", "./kubectl-bpfsnap", "-l", sel, "-n", "shop")
	cmd.Env = append(os.Environ(), "PATH="+dir+":"+os.Getenv("PATH"))
	if out, err := cmd.CombinedOutput(); err == nil || !strings.Contains(string(out), "no running pod in shop matches "+sel) {
		t.Fatalf("-l: %v: %s", err, out)
	}
	if calls := kubectlCalls(t, dir); len(calls) != 1 || !strings.HasPrefix(calls[0], "get pods -n shop -l "+sel+" --field-selector") {
		t.Fatalf("calls: %q", calls)
	}
}

// runJobCommand runs a rendered Job's container command with busybox's sh
// (the image's), /out and /bpfsnap moved to a temporary directory and a
// stand-in capture that records its arguments: it waits for the start
// file, then for the second written there, captures with the arguments
// as given (a trigger's '>' is no redirection), says it is done and exits
// once the archives are copied.
func runJobCommand(t *testing.T, job string) {
	t.Helper()
	busybox := testenv.RequireTool(t, "busybox")
	data, err := os.ReadFile(job)
	if err != nil {
		t.Fatal(err)
	}
	tmp := t.TempDir()
	outDir := filepath.Join(tmp, "out")
	os.Mkdir(outDir, 0o755)
	capture := filepath.Join(tmp, "bpfsnap")
	os.WriteFile(capture, []byte("#!/bin/sh\nfor a in \"$@\"; do echo \"$a\"; done > "+outDir+"/args\ndate +%s > "+outDir+"/began\n"), 0o755)
	script := parseJob(t, data).Spec.Template.Spec.Containers[0].Args[0]
	script = strings.ReplaceAll(strings.ReplaceAll(script, "/out/", outDir+"/"), "/bpfsnap capture", capture+" capture")
	cmd := exec.Command(busybox, "sh", "-c", script)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	time.Sleep(500 * time.Millisecond)
	if _, err := os.Stat(filepath.Join(outDir, "args")); err == nil {
		t.Fatal("captured before the start was written")
	}
	start := time.Now().Unix() + 2
	os.WriteFile(filepath.Join(outDir, "start"), []byte(fmt.Sprintln(start)), 0o644)
	for i := 0; i < 100; i++ {
		if _, err := os.Stat(filepath.Join(outDir, "done")); err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	began, _ := os.ReadFile(filepath.Join(outDir, "began"))
	args, _ := os.ReadFile(filepath.Join(outDir, "args"))
	if strings.TrimSpace(string(began)) != fmt.Sprint(start) {
		t.Errorf("capture began at %q, want the start second %d", began, start)
	}
	want := "capture\n--host-root\n/host\n--pod\n"
	if !strings.HasPrefix(string(args), want) || !strings.Contains(string(args), "\n--ring\n60s\n--trigger\nhttp.p99>250ms,route=/api/{id}\n--trigger\noom\n-o\n"+outDir+"/capture.bpfsnap\n") {
		t.Errorf("capture arguments:\n%s", args)
	}
	select {
	case <-done:
		t.Fatal("the Job's container exited before the archives were copied")
	case <-time.After(300 * time.Millisecond):
	}
	os.WriteFile(filepath.Join(outDir, "copied"), nil, 0o644)
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("the Job's container: %v", err)
		}
	case <-time.After(5 * time.Second):
		cmd.Process.Kill()
		t.Fatal("the Job's container did not exit once the archives were copied")
	}
}
