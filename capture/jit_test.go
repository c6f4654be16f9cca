//go:build linux

package capture

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/bpfsnap/bpfsnap/analyze"
	"github.com/bpfsnap/bpfsnap/formats"
	"github.com/bpfsnap/bpfsnap/internal/testenv"
	"github.com/bpfsnap/bpfsnap/report"
)

// Runtimes name the code they generate in /tmp/perf-PID.map (or a jitdump
// file); the recorder keeps the names of the frames it saw, and every
// output shows the hot JavaScript, Java or Python function by name.

const jitHotJS = `function hotLoop(n) { let s = 0; for (let i = 0; i < n; i++) { s += (i * i) % 7; } return s; }
function outerWork(deadline) { let t = 0; while (Date.now() < deadline) { t += hotLoop(200000); } return t; }
console.log(outerWork(Date.now() + 1000 * Number(process.argv[2])));
`

const jitHotJava = `public class Hot {
    static long hotLoop(int n) { long s = 0; for (int i = 0; i < n; i++) { s += (long) i * i % 7; } return s; }
    static long outerWork(long deadline) { long t = 0; while (System.currentTimeMillis() < deadline) { t += hotLoop(200000); } return t; }
    public static void main(String[] a) { System.out.println(outerWork(System.currentTimeMillis() + 1000L * Integer.parseInt(a[0]))); }
}
`

const jitHotPython = `import sys, time
def inner(n):
    s = 0
    for i in range(n):
        s += i * i % 7
    return s
def outer(deadline):
    t = 0
    while time.time() < deadline:
        t += inner(20000)
    return t
outer(time.time() + float(sys.argv[1]))
`

// jitCapture records -p cpu at 499 Hz (plus flags) and analyzes it.
func jitCapture(t *testing.T, o Options, flags ...string) *analyze.Summary {
	t.Helper()
	if o.Output == "" {
		o.Output = filepath.Join(t.TempDir(), "jit.bpfsnap")
	}
	if o.Duration == 0 {
		o.Duration = time.Minute
	}
	o.Probes, o.Sets, o.Version = []string{"cpu"}, probeSetsWithFlags(t, append([]string{"--freq", "499"}, flags...)...), "test"
	o.Warn = func(m string) { t.Log("warning:", m) }
	if _, err := Run(context.Background(), o); err != nil {
		t.Fatal(err)
	}
	s, err := analyze.Load(o.Output, analyze.Request{})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range s.Processes {
		forgetRuntimeMaps(t, p.PID)
	}
	if s.CPUProfile() == nil {
		t.Fatal("no CPU samples")
	}
	return s
}

// forgetRuntimeMaps removes pid's perf map and jitdump file at the test's
// end. Runtimes (node --perf-basic-prof, python -X perf, the JVM's agent)
// write them to the host's /tmp and they outlive the process: a later
// process given the same pid (TestJITContainerNamespacePID's) would be
// symbolized with a map that is not its own.
func forgetRuntimeMaps(t *testing.T, pid uint32) {
	t.Cleanup(func() {
		os.Remove(fmt.Sprintf("/tmp/perf-%d.map", pid))
		os.Remove(fmt.Sprintf("/tmp/jit-%d.dump", pid))
	})
}

// namedShare returns the samples of the processes named process and the
// share of them with a frame whose function contains want.
func namedShare(s *analyze.Summary, process, want string) (samples uint64, share float64) {
	p := s.CPUProfile()
	var named uint64
	for i := range p.Stacks {
		st := &p.Stacks[i]
		if p.StackProcess(st) != process {
			continue
		}
		samples += st.Count
		for _, f := range st.Frames {
			if strings.Contains(f.Function, want) {
				named += st.Count
				break
			}
		}
	}
	if samples == 0 {
		return 0, 0
	}
	return samples, float64(named) / float64(samples)
}

func jitEntry(s *analyze.Summary, pid uint32) *analyze.JITProcess {
	for i := range s.JIT {
		if pid == 0 || s.JIT[i].PID == pid {
			return &s.JIT[i]
		}
	}
	return nil
}

// Node under --perf-basic-prof: the hot JavaScript function is named in
// most samples. Without the flag the same code is "[jit:node]" and the
// analysis says which flag names it.
func TestJITNode(t *testing.T) {
	testenv.RequireBPF(t)
	node := testenv.RequireTool(t, "node")
	dir := t.TempDir()
	script := filepath.Join(dir, "hot.js")
	os.WriteFile(script, []byte(jitHotJS), 0o644)
	// --perf-basic-prof also writes isolate-*-v8.log into the working
	// directory: node runs in the test's temporary one, not the tree.
	inDir := []string{"/bin/sh", "-c", `cd "$0" && exec "$@"`, dir, node}

	s := jitCapture(t, Options{Command: append(inDir, "--perf-basic-prof", script, "3")})
	n, share := namedShare(s, "node", "hotLoop")
	jp := jitEntry(s, 0)
	t.Logf("--perf-basic-prof: %d samples, %.0f%% in a named hotLoop; jit %+v", n, 100*share, jp)
	if n < 200 || share < 0.5 {
		t.Errorf("hotLoop named in %.0f%% of %d node samples, want at least half", 100*share, n)
	}
	if jp == nil || jp.Runtime != "node" || jp.NamedSamples < jp.Samples*9/10 {
		t.Errorf("jit section: %+v", s.JIT)
	}

	s = jitCapture(t, Options{Command: append(inDir[:len(inDir):len(inDir)], script, "2")})
	n, share = namedShare(s, "node", "hotLoop")
	var labelled uint64
	for _, l := range s.CPUProfile().Folded(analyze.FoldOptions{}) {
		if l.Frames[len(l.Frames)-1] == "[jit:node]" {
			labelled += l.Count
		}
	}
	jp = jitEntry(s, 0)
	if share > 0 || labelled < n/2 || jp == nil || jp.Runtime != "node" || !strings.Contains(jp.Hint, "--perf-basic-prof") {
		t.Errorf("without a map: %d of %d samples end in [jit:node], %.0f%% named; jit %+v", labelled, n, 100*share, s.JIT)
	}
	var text bytes.Buffer
	report.WriteSummaryText(&text, s)
	if !strings.Contains(text.String(), "--perf-basic-prof") {
		t.Errorf("analyze's text does not say how to name node's JIT code:\n%s", text.String())
	}
}

// A JVM that writes its map at exit (-XX:+DumpPerfMapAtExit), and one
// still running at the end of the window asked for it
// (--perf-map-request, the attach API's Compiler.perfmap): the hot Java
// method is named in most samples.
func TestJITJava(t *testing.T) {
	testenv.RequireBPF(t)
	java := testenv.RequireTool(t, "java")
	javac := testenv.RequireTool(t, "javac")
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "Hot.java"), []byte(jitHotJava), 0o644)
	if out, err := exec.Command(javac, "-d", dir, filepath.Join(dir, "Hot.java")).CombinedOutput(); err != nil {
		t.Fatalf("javac: %v\n%s", err, out)
	}

	s := jitCapture(t, Options{Command: []string{java, "-XX:+PreserveFramePointer", "-XX:+UnlockDiagnosticVMOptions", "-XX:+DumpPerfMapAtExit", "-cp", dir, "Hot", "3"}})
	n, share := namedShare(s, "java", "Hot.hotLoop")
	t.Logf("DumpPerfMapAtExit: %d samples, %.0f%% in a named Hot.hotLoop; jit %+v", n, 100*share, jitEntry(s, 0))
	if n < 200 || share < 0.5 {
		t.Errorf("Hot.hotLoop named in %.0f%% of %d java samples, want at least half", 100*share, n)
	}

	cmd := exec.Command(java, "-XX:+PreserveFramePointer", "-cp", dir, "Hot", "60")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	time.Sleep(1500 * time.Millisecond) // the JVM starts and compiles hotLoop
	pid := uint32(cmd.Process.Pid)
	s = jitCapture(t, Options{Duration: 3 * time.Second, PIDs: []uint32{pid}, PerfMapRequest: true})
	n, share = namedShare(s, "java", "Hot.hotLoop")
	t.Logf("--perf-map-request: %d samples, %.0f%% in a named Hot.hotLoop", n, 100*share)
	if n < 200 || share < 0.5 {
		t.Errorf("--perf-map-request: Hot.hotLoop named in %.0f%% of %d java samples, want at least half", 100*share, n)
	}
	if _, err := os.Stat(fmt.Sprintf("/proc/%d/status", pid)); err != nil {
		t.Errorf("the JVM did not survive --perf-map-request: %v", err)
	}
}

// pyenvPython finds a CPython of the given minor version under pyenv
// (where the machines this runs on have them), or on PATH.
func pyenvPython(t *testing.T, version string) string {
	t.Helper()
	home, _ := os.UserHomeDir()
	found, _ := filepath.Glob(filepath.Join(home, ".pyenv", "versions", version+".*", "bin", "python"+version))
	if len(found) > 0 {
		return found[len(found)-1]
	}
	if p, err := exec.LookPath("python" + version); err == nil && !strings.Contains(p, "/shims/") {
		return p
	}
	testenv.Skip(t, "no CPython "+version+" (under ~/.pyenv/versions or python"+version+" on PATH)")
	return ""
}

// CPython 3.12+ under -X perf names each Python function's trampoline in
// /tmp/perf-PID.map; 3.13's -X perf_jit writes a jitdump file instead.
func TestJITPython(t *testing.T) {
	testenv.RequireBPF(t)
	script := filepath.Join(t.TempDir(), "busy.py")
	os.WriteFile(script, []byte(jitHotPython), 0o644)
	for _, c := range []struct{ version, mode string }{{"3.12", "perf"}, {"3.13", "perf"}, {"3.13", "perf_jit"}} {
		t.Run(c.version+"-"+c.mode, func(t *testing.T) {
			python := pyenvPython(t, c.version)
			s := jitCapture(t, Options{Command: []string{python, "-X", c.mode, script, "3"}})
			n, share := namedShare(s, filepath.Base(python), "py::inner:")
			t.Logf("%s -X %s: %d samples, %.0f%% under py::inner", c.version, c.mode, n, 100*share)
			if n < 200 || share < 0.5 {
				t.Errorf("py::inner named in %.0f%% of %d samples, want at least half", 100*share, n)
			}
		})
	}
}

// A Python program in a runc container (its own pid and mount namespaces,
// /tmp a tmpfs of its own) writes /tmp/perf-1.map there: the recorder
// finds it through the process's root with its namespace pid, and keeps
// it past the container's end (the program exits inside the window, and
// its /tmp is gone with it).
func TestJITContainerNamespacePID(t *testing.T) {
	testenv.RequireBPF(t)
	runc := testenv.RequireTool(t, "runc")
	python := pyenvPython(t, "3.12")
	pyHome := filepath.Dir(filepath.Dir(python))
	bundle := filepath.Join(t.TempDir(), "bundle")
	rootfs := filepath.Join(bundle, "rootfs")
	for _, d := range []string{"usr", "proc", "dev", "sys", "tmp", "app", pyHome[1:]} {
		os.MkdirAll(filepath.Join(rootfs, d), 0o755)
	}
	for _, l := range []string{"lib", "lib64", "bin"} {
		os.Symlink("usr/"+l, filepath.Join(rootfs, l))
	}
	os.WriteFile(filepath.Join(rootfs, "app", "busy.py"), []byte(jitHotPython), 0o644)
	if out, err := exec.Command(runc, "spec", "--bundle", bundle).CombinedOutput(); err != nil {
		t.Fatalf("%v %s", err, out)
	}
	var spec map[string]any
	data, _ := os.ReadFile(filepath.Join(bundle, "config.json"))
	json.Unmarshal(data, &spec)
	proc := spec["process"].(map[string]any)
	proc["terminal"], proc["args"] = false, []string{python, "-X", "perf", "/app/busy.py", "3"}
	spec["root"] = map[string]any{"path": "rootfs", "readonly": true}
	bind := func(src string) map[string]any {
		return map[string]any{"destination": src, "type": "bind", "source": src, "options": []string{"rbind", "ro"}}
	}
	mounts := spec["mounts"].([]any)
	mounts = append(mounts, bind("/usr"), bind(pyHome),
		map[string]any{"destination": "/tmp", "type": "tmpfs", "source": "tmpfs", "options": []string{"nosuid", "nodev", "mode=1777"}})
	spec["mounts"] = mounts
	data, _ = json.Marshal(spec)
	os.WriteFile(filepath.Join(bundle, "config.json"), data, 0o644)
	name := "bpfsnap-jit-test"
	exec.Command(runc, "delete", "-f", name).Run()
	if err := exec.Command(runc, "create", "--bundle", bundle, name).Run(); err != nil {
		t.Fatalf("runc create: %v", err)
	}
	t.Cleanup(func() { exec.Command(runc, "delete", "-f", name).Run() })
	out, err := exec.Command(runc, "state", name).Output()
	if err != nil {
		t.Fatal(err)
	}
	var st struct{ Pid int }
	json.Unmarshal(out, &st)
	if st.Pid <= 1 {
		t.Fatalf("runc state: %s", out)
	}
	// A host /tmp/perf-PID.map with the container's host pid can only be a
	// dead process's (the container writes to its own /tmp): left, it
	// would make the check below meaningless.
	if stale := "/tmp/perf-" + strconv.Itoa(st.Pid) + ".map"; os.Remove(stale) == nil {
		t.Logf("removed %s, left by an earlier process with that pid", stale)
	}
	// The container's init waits in runc create: target it, then start it.
	s := jitCapture(t, Options{Duration: 8 * time.Second, PIDs: []uint32{uint32(st.Pid)},
		Ready: func() {
			if out, err := exec.Command(runc, "start", name).CombinedOutput(); err != nil {
				t.Errorf("runc start: %v %s", err, out)
			}
		}})
	var proc0 *analyze.Process
	for i := range s.Processes {
		if s.Processes[i].PID == uint32(st.Pid) {
			proc0 = &s.Processes[i]
		}
	}
	if proc0 == nil || proc0.NSPid != 1 || !proc0.Exited {
		t.Fatalf("container process: %+v", proc0)
	}
	n, share := namedShare(s, filepath.Base(python), "py::inner:/app/busy.py")
	t.Logf("container: %d samples, %.0f%% under py::inner; jit %+v", n, 100*share, s.JIT)
	if n < 150 || share < 0.5 {
		t.Errorf("py::inner named in %.0f%% of %d samples of the container's python, want at least half", 100*share, n)
	}
	a, err := formats.Open(s.Archive)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	sources := map[string]int{}
	formats.ReadTable(a, formats.TableJITSymbols, func(rows []formats.JITSymbol) error {
		for _, r := range rows {
			if r.PID == uint32(st.Pid) {
				sources[r.Source]++
			}
		}
		return nil
	})
	if len(sources) != 1 || sources["/tmp/perf-1.map"] == 0 {
		t.Errorf("jit_symbols of the container's process came from %v, want /tmp/perf-1.map (its namespace pid, its /tmp)", sources)
	}
	if _, err := os.Stat("/tmp/perf-" + strconv.Itoa(st.Pid) + ".map"); err == nil {
		t.Errorf("a /tmp/perf-%d.map exists on the host: the test would not tell the namespaces apart", st.Pid)
	}
}
