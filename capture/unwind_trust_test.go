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

	"github.com/bpfsnap/bpfsnap/analyze"
	"github.com/bpfsnap/bpfsnap/formats"
	"github.com/bpfsnap/bpfsnap/internal/testenv"
)

// Code without frame pointers (distribution libcrypto, libpython) and JIT
// stubs without CFI (CPython's -X perf trampolines) under the default
// `capture -p cpu` (--unwind auto): no stack holds a run of made-up frames,
// and most stacks reach their thread's root.

// threadRoots are the outermost functions of a thread's stack; nginx is
// stripped, so its _start shows as libc's start-up function.
var threadRoots = map[string]bool{"_start": true, "__libc_start_main": true, "__libc_start_call_main": true,
	"clone": true, "clone3": true, "start_thread": true, "runtime.goexit": true}

// stackShape sums what the tests judge over a capture's CPU stacks.
type stackShape struct {
	samples, rooted, withRun int64
	longestRun               int
	example                  string // a stack with a run, for the failure message
}

// fastCPU is the default `capture -p cpu` (--unwind auto) at 499 Hz, for
// enough samples in a short test.
var fastCPU = []string{"--freq", "499"}

// maxUnknownRun is the longest run of frames without a module the tests
// accept: a run of 8 is the tower of placeholders this guards against.
const maxUnknownRun = 7

func shapeOf(lines []analyze.FoldedStack, process string) stackShape {
	var s stackShape
	for _, l := range lines {
		if len(l.Frames) == 0 || l.Frames[0] != process {
			continue
		}
		s.samples += int64(l.Count)
		user := userFrames(l.Frames[1:])
		for i := 0; i < 3 && i < len(user); i++ {
			if threadRoots[user[i]] {
				s.rooted += int64(l.Count)
				break
			}
		}
		run := 0
		for _, f := range l.Frames {
			if strings.HasPrefix(f, "[unknown]") || strings.HasSuffix(f, "+0x0") {
				run++
			} else {
				run = 0
			}
			if run > s.longestRun {
				s.longestRun = run
			}
			if run == maxUnknownRun+1 {
				s.withRun += int64(l.Count)
				s.example = strings.Join(l.Frames, ";")
			}
		}
	}
	return s
}

// rootedShare is the manifest's share of user stacks that reached a
// thread root (cpu probe details).
func rootedShare(t *testing.T, man *formats.Manifest) (walks, complete uint64) {
	t.Helper()
	d := probeDetails(man.Probes, "cpu")
	walks, err1 := strconv.ParseUint(d["unwind.walks"], 10, 64)
	complete, err2 := strconv.ParseUint(d["unwind.complete"], 10, 64)
	if err1 != nil || err2 != nil || walks == 0 {
		t.Fatalf("cpu probe details lack the walk counts: %v", d)
	}
	return walks, complete
}

// checkShape applies the done-when of issue 24 to one process's stacks.
func checkShape(t *testing.T, name string, s stackShape, man *formats.Manifest, minSamples int64) {
	t.Helper()
	walks, complete := rootedShare(t, man)
	t.Logf("%s: %d samples, %d reach a thread root by name, longest run of unknown frames %d; manifest: %d of %d walks complete; drops %v",
		name, s.samples, s.rooted, s.longestRun, complete, walks, man.Drops)
	if s.samples < minSamples {
		t.Fatalf("only %d samples of %s", s.samples, name)
	}
	if s.withRun > 0 {
		t.Errorf("%d samples have a run of more than %d unknown frames, e.g. %s", s.withRun, maxUnknownRun, s.example)
	}
	if float64(s.rooted) < 0.8*float64(s.samples) {
		t.Errorf("%d of %d samples reach a thread root, want >= 80%%", s.rooted, s.samples)
	}
	if float64(complete) < 0.8*float64(walks) {
		t.Errorf("the manifest says %d of %d walks reached a thread root, want >= 80%%", complete, walks)
	}
	requireIncompleteCounted(t, man, 0)
}

// runCPUCapture runs `capture -p cpu FLAGS` with o while during runs (or
// until o's command exits), and returns the archive's folded stacks and
// manifest.
func runCPUCapture(t *testing.T, flags []string, o Options, during func()) ([]analyze.FoldedStack, *formats.Manifest) {
	t.Helper()
	o.Output = filepath.Join(t.TempDir(), "cpu.bpfsnap")
	o.Probes, o.Sets, o.Version = []string{"cpu"}, probeSetsWithFlags(t, flags...), "test"
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ready, done := make(chan struct{}), make(chan error, 1)
	o.Ready = func() { close(ready) }
	go func() {
		_, err := Run(ctx, o)
		done <- err
	}()
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("capture ended before it was ready: %v", err)
	}
	if during != nil {
		during()
		cancel()
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	lines, prof, man := foldedOf(t, o.Output)
	if o.Command != nil {
		// The capture's own command and its children: the test's
		// processes, whose runtimes may have left maps (python -X perf).
		for pid := range prof.Names {
			forgetRuntimeMaps(t, pid)
		}
	}
	return lines, man
}

// nginx from the distribution (no frame pointers) doing TLS handshakes
// with OpenSSL 3, one new connection per request: the CPU goes to
// libcrypto's RSA and elliptic-curve code, whose frames have CFI but no
// frame pointer; rbp there holds data, which a frame-pointer walk turns into
// dozens of [unknown] frames (a quarter of the samples ended in 64 of them
// with --unwind fp before its walks were checked). --unwind fp cuts those
// walks and counts them; it cannot reach the roots through code without
// frame pointers.
func TestUnwindNginxTLSHandshakes(t *testing.T) {
	testenv.RequireBPF(t)
	openssl := testenv.RequireTool(t, "openssl")
	certs := t.TempDir()
	if out, err := exec.Command(openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
		"-keyout", filepath.Join(certs, "key.pem"), "-out", filepath.Join(certs, "cert.pem")).CombinedOutput(); err != nil {
		t.Fatalf("openssl req: %v\n%s", err, out)
	}
	port := freePort(t)
	master := startNginx(t, t.TempDir(), port, fmt.Sprintf("ssl; ssl_certificate %[1]s/cert.pem; ssl_certificate_key %[1]s/key.pem", certs), "")
	load := func() {
		// A new TLS session per connection: every connection is a full
		// handshake (RSA signature, ECDHE).
		out, err := exec.Command(openssl, "s_time", "-connect", fmt.Sprintf("127.0.0.1:%d", port), "-new", "-time", "4").CombinedOutput()
		if err != nil {
			t.Errorf("openssl s_time: %v\n%s", err, out)
		}
		t.Logf("load: %s", strings.TrimSpace(lastLine(out)))
	}
	lines, man := runCPUCapture(t, fastCPU, Options{Duration: time.Minute, PIDs: []uint32{uint32(master)}}, load)
	checkShape(t, "nginx", shapeOf(lines, "nginx"), man, 500)

	lines, man = runCPUCapture(t, append([]string{"--unwind", "fp"}, fastCPU...), Options{Duration: time.Minute, PIDs: []uint32{uint32(master)}}, load)
	s := shapeOf(lines, "nginx")
	d := probeDetails(man.Probes, "cpu")
	t.Logf("--unwind fp: %d samples, longest run of unknown frames %d, %s of %s walks cut; drops %v",
		s.samples, s.longestRun, d["unwind.fp_cut"], d["unwind.fp_walks"], man.Drops)
	if s.samples < 300 || s.withRun > 0 {
		t.Errorf("--unwind fp: %d samples, %d with a run of more than %d unknown frames, e.g. %s", s.samples, s.withRun, maxUnknownRun, s.example)
	}
	if cut := man.Drops["cpu.unwind_bad_return_address"]; cut == 0 || strconv.FormatUint(cut, 10) != d["unwind.fp_cut"] {
		t.Errorf("--unwind fp: cut walks not counted: drops %v, details %v", man.Drops, d)
	}
}

// CPython 3.12 under -X perf calls every Python function through a
// trampoline it copies into anonymous memory (sub $8,%rsp; call *%rcx; add
// $8,%rsp; ret): no CFI and no frame pointer there, and libpython has no
// frame pointers either.
func TestUnwindPython312PerfTrampolines(t *testing.T) {
	testenv.RequireBPF(t)
	python := python312(t)
	script := filepath.Join(t.TempDir(), "busy.py")
	os.WriteFile(script, []byte(jitHotPython), 0o644)
	lines, man := runCPUCapture(t, fastCPU, Options{Duration: time.Minute, Command: []string{python, "-X", "perf", script, "3"}}, nil)
	name := filepath.Base(python)
	s := shapeOf(lines, name)
	checkShape(t, name, s, man, 300)
	// The trampolines are on the stacks (the walk went through them): the
	// eval loop's frame under an anonymous one under the evaluator.
	var through int64
	for _, l := range lines {
		for i := 0; i+2 < len(l.Frames); i++ {
			if l.Frames[i] == "py_trampoline_evaluator" && l.Frames[i+2] == "_PyEval_EvalFrameDefault" {
				through += int64(l.Count)
				break
			}
		}
	}
	if float64(through) < 0.5*float64(s.samples) {
		t.Errorf("only %d of %d samples went through a -X perf trampoline", through, s.samples)
	}
}

// python312 finds a CPython 3.12 (the first with -X perf): on PATH, or
// under pyenv (where the machines this runs on have it).
func python312(t *testing.T) string {
	t.Helper()
	home, _ := os.UserHomeDir()
	found, _ := filepath.Glob(filepath.Join(home, ".pyenv", "versions", "3.12.*", "bin", "python3.12"))
	if len(found) > 0 {
		return found[len(found)-1]
	}
	// Not pyenv's shim: it runs bash scripts before Python.
	if p, err := exec.LookPath("python3.12"); err == nil && !strings.Contains(p, "/shims/") {
		return p
	}
	testenv.Skip(t, "no CPython 3.12 (under ~/.pyenv/versions or python3.12 on PATH)")
	return ""
}

func lastLine(b []byte) string {
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return lines[len(lines)-1]
}

// goDeepSource recurses 100 frames of ~300 bytes (30 KiB of stack, beyond
// the 16 KiB copy) into a CPU-bound leaf, on a goroutine.
const goDeepSource = `package main

import (
	"os"
	"strconv"
	"time"
)

//go:noinline
func spin(n int) int {
	s := 0
	for i := 0; i < n; i++ {
		s += i * i % 7
	}
	return s
}

//go:noinline
func deep(d, n int) int {
	var pad [256]byte
	pad[d%256] = byte(d)
	if d == 0 {
		return spin(n) + int(pad[0])
	}
	return deep(d-1, n) + int(pad[1])
}

func main() {
	secs, _ := strconv.Atoi(os.Args[1])
	end := time.Now().Add(time.Duration(secs) * time.Second)
	done := make(chan int)
	go func() {
		t := 0
		for time.Now().Before(end) {
			t += deep(100, 100000)
		}
		done <- t
	}()
	<-done
}
`

// Go code under --unwind auto: its CFI (.debug_frame) or, stripped
// (-ldflags=-s -w), its frame pointers, checked. The stack is deeper than
// the copied window, so the walk goes on with the kernel's frame-pointer
// walk, joined at the right frame although recursion repeats the same
// return address; goroutines end at runtime.goexit, a thread root.
func TestUnwindGoDeepStacks(t *testing.T) {
	testenv.RequireBPF(t)
	goTool := testenv.RequireTool(t, "go")
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "main.go"), []byte(goDeepSource), 0o644)
	os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module deep\n\ngo 1.22\n"), 0o644)
	for _, build := range []struct{ name, ldflags string }{{"deep", ""}, {"deepstrip", "-s -w"}} {
		t.Run(build.name, func(t *testing.T) {
			cmd := exec.Command(goTool, "build", "-ldflags="+build.ldflags, "-o", build.name, ".")
			cmd.Dir = dir
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("go build: %v\n%s", err, out)
			}
			lines, man := runCPUCapture(t, fastCPU, Options{Duration: time.Minute, Command: []string{filepath.Join(dir, build.name), "2"}}, nil)
			s := shapeOf(lines, build.name)
			checkShape(t, build.name, s, man, 200)
			// The recursion is whole: 100 or 101 deep frames (the frame
			// of deep(0) hides when spin is sampled before its frame
			// pointer is set up, in the stripped binary).
			var whole int64
			for _, l := range lines {
				n := 0
				for _, f := range l.Frames {
					if f == "main.deep" {
						n++
					}
				}
				if n == 100 || n == 101 {
					whole += int64(l.Count)
				}
			}
			if float64(whole) < 0.8*float64(s.samples) {
				t.Errorf("only %d of %d samples hold the 100-deep recursion", whole, s.samples)
			}
			if d := probeDetails(man.Probes, "cpu"); d["unwind.fp_continued"] == "0" {
				t.Errorf("no walk was continued by the kernel's frame-pointer walk: %v", d)
			}
		})
	}
}
