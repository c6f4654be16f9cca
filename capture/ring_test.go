//go:build linux

package capture

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/bpfsnap/bpfsnap/analyze"
	"github.com/bpfsnap/bpfsnap/formats"
	"github.com/bpfsnap/bpfsnap/internal/testenv"
)

// ringRun is a flight recorder running in the test process.
type ringRun struct {
	t      *testing.T
	out    string
	cancel context.CancelFunc
	done   chan error
	mu     sync.Mutex
	dumps  []string
	dumped chan string
	maxEvt int // most event chunk files of one table seen on disk at once
	res    *Result
}

// startRing starts capture --ring in the background and returns once its
// probes are attached.
func startRing(t *testing.T, opts Options) *ringRun {
	t.Helper()
	r := &ringRun{t: t, out: filepath.Join(t.TempDir(), "ring.bpfsnap"), done: make(chan error, 1), dumped: make(chan string, 16)}
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	opts.Output, opts.Sets, opts.Version = r.out, NewProbeSets(), "test"
	ready := make(chan struct{})
	opts.Ready = func() { close(ready) }
	opts.Dumped = func(path, trig, detail string) {
		r.mu.Lock()
		r.dumps = append(r.dumps, path)
		r.mu.Unlock()
		r.dumped <- path
	}
	opts.Status = func(Status) { r.countEventChunks() }
	go func() {
		res, err := Run(ctx, opts)
		r.res = res
		r.done <- err
	}()
	select {
	case <-ready:
	case err := <-r.done:
		t.Fatalf("flight recorder ended before it was ready: %v", err)
	}
	return r
}

// countEventChunks notes how many chunks of each event table are on disk.
func (r *ringRun) countEventChunks() {
	ents, _ := os.ReadDir(r.out + formats.PartialSuffix)
	per := map[string]int{}
	for _, e := range ents {
		table, _, ok := strings.Cut(e.Name(), "-")
		if ok && strings.HasSuffix(e.Name(), ".parquet") && !strings.HasPrefix(e.Name(), ".") && !formats.RingRetained(table) {
			per[table]++
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, n := range per {
		r.maxEvt = max(r.maxEvt, n)
	}
}

// waitDump waits for the next dump.
func (r *ringRun) waitDump(limit time.Duration) string {
	r.t.Helper()
	select {
	case p := <-r.dumped:
		return p
	case <-time.After(limit):
		r.t.Fatalf("no dump within %s", limit)
	case err := <-r.done:
		r.t.Fatalf("the flight recorder stopped: %v", err)
	}
	return ""
}

func (r *ringRun) stop() {
	r.t.Helper()
	r.cancel()
	if err := <-r.done; err != nil {
		r.t.Fatal(err)
	}
}

// burn runs a CPU-bound shell loop (builtins only: no child processes)
// under the name comm for d.
func burn(t *testing.T, comm string, d time.Duration) int {
	t.Helper()
	bin := filepath.Join(t.TempDir(), comm)
	if err := os.Symlink("/bin/sh", bin); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-c", "while :; do :; done")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	time.AfterFunc(d, func() { cmd.Process.Kill() })
	go cmd.Wait()
	return cmd.Process.Pid
}

// The flight recorder keeps its last window: a dump on SIGUSR1 holds a
// process that ran 2 s before and not one that ran 10 s before (neither
// its samples nor its process row); recording goes on and a second dump
// works; event chunks on disk stay within about two windows; when it stops,
// the last window is the archive at -o.
func TestRingDumpsLastWindow(t *testing.T) {
	testenv.RequireBPF(t)
	r := startRing(t, Options{Ring: 6 * time.Second, Probes: []string{"cpu"}})
	early := burn(t, "early-burner", time.Second)
	time.Sleep(11 * time.Second)
	late := burn(t, "late-burner", time.Second)
	time.Sleep(2 * time.Second)
	syscall.Kill(os.Getpid(), syscall.SIGUSR1)
	first := r.waitDump(30 * time.Second)

	a, err := formats.Open(first)
	if err != nil {
		t.Fatal(err)
	}
	m := a.Manifest()
	if !m.Complete || m.Dump == nil || m.Dump.Trigger != "signal" || m.Dump.Ring != "6s" {
		t.Errorf("dump manifest: complete %v dump %+v", m.Complete, m.Dump)
	}
	if d := m.Window.Duration(); d < 5*time.Second || d > 8*time.Second {
		t.Errorf("dump window %s, want about the 6 s ring", d)
	}
	procs, err := analyze.Processes(a)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[uint32]bool{}
	for _, p := range procs {
		seen[p.PID] = true
	}
	if !seen[uint32(late)] || seen[uint32(early)] {
		t.Errorf("processes of the dump: late (2 s before) %v, early (10 s before) %v; want only the late one", seen[uint32(late)], seen[uint32(early)])
	}
	samples, err := formats.ReadAll[formats.CPUSample](a, formats.TableCPUSamples)
	if err != nil {
		t.Fatal(err)
	}
	bySample := map[uint32]int{}
	for _, s := range samples {
		bySample[s.PID]++
		if s.TimeNs < m.Window.StartMonoNs || s.TimeNs > m.Window.EndMonoNs {
			t.Errorf("sample at %d outside the window [%d, %d]", s.TimeNs, m.Window.StartMonoNs, m.Window.EndMonoNs)
			break
		}
	}
	if bySample[uint32(late)] == 0 || bySample[uint32(early)] != 0 {
		t.Errorf("samples: late %d, early %d", bySample[uint32(late)], bySample[uint32(early)])
	}
	s, err := analyze.Analyze(a, analyze.Options{})
	if err != nil || s.CPU == nil || s.CPU.Samples == 0 {
		t.Errorf("the dump does not analyze: %v", err)
	}
	a.Close()

	time.Sleep(2 * time.Second)
	syscall.Kill(os.Getpid(), syscall.SIGUSR1)
	second := r.waitDump(30 * time.Second)
	if second == first {
		t.Fatal("the second dump overwrote the first")
	}
	b, err := formats.Open(second)
	if err != nil {
		t.Fatal(err)
	}
	if b.Manifest().Dump == nil || b.Manifest().Dump.Sequence != 2 {
		t.Errorf("second dump: %+v", b.Manifest().Dump)
	}
	b.Close()
	r.stop()
	if r.maxEvt > 12 {
		t.Errorf("up to %d chunks of one event table on disk; a 6 s ring sealed every second keeps about 8, two windows are 12", r.maxEvt)
	}
	if _, err := os.Stat(r.out + formats.PartialSuffix); err == nil {
		t.Error("the recorder's directory is left after it stopped")
	}
	last, err := formats.Open(r.out)
	if err != nil {
		t.Fatalf("no last window at -o: %v", err)
	}
	defer last.Close()
	// Chunks are sealed every second, later on a loaded machine: the
	// window holds whole chunks, so it can run a few seconds past the ring.
	if d := last.Manifest().Window.Duration(); d > 11*time.Second {
		t.Errorf("the last window is %s long, want about the ring", d)
	}
}

// The flight recorder dumps on its own when an http.p99 condition holds on
// a route made slow on purpose, and the dump holds the slow requests.
func TestRingHTTPTrigger(t *testing.T) {
	testenv.RequireBPF(t)
	bin := buildGo(t, goServerSrc)
	port := freePort(t)
	pid := startServer(t, exec.Command(bin, fmt.Sprint(port)), port)
	r := startRing(t, Options{Ring: 8 * time.Second, Probes: []string{"http"}, PIDs: []uint32{uint32(pid)},
		Triggers: []string{"http.p99>5ms,route=/slow/1,cooldown=1h"}})
	clientLoad(t, port, 100, 2, "/fast")
	select {
	case p := <-r.dumped:
		t.Fatalf("dumped on fast requests only: %s", p)
	case <-time.After(2 * time.Second):
	}
	// goServerSrc's /slow/ID answers after 12 ms.
	clientLoad(t, port, 30, 2, "/slow/1", "/fast")
	path := r.waitDump(20 * time.Second)
	r.stop()
	a, err := formats.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	m := a.Manifest()
	if m.Dump == nil || m.Dump.Trigger != "http.p99>5ms,route=/slow/1,cooldown=1h" || !strings.Contains(m.Dump.Detail, "/slow/{id}") {
		t.Fatalf("dump: %+v", m.Dump)
	}
	h, err := analyze.HTTP(a, analyze.Options{}, nil)
	if err != nil || h == nil {
		t.Fatalf("http analysis: %v", err)
	}
	var slow int64
	for _, e := range h.Endpoints {
		if e.Route == "/slow/{id}" {
			slow += e.Count
			if e.P99 < 5 {
				t.Errorf("the dump's /slow p99 is %.2f ms", e.P99)
			}
		}
	}
	if slow < 20 {
		t.Errorf("the dump holds %d slow requests, want the 30 sent (at least the 20 the trigger needs)", slow)
	}
}

// memoryLimitedCgroup makes a v1 memory cgroup (this project's hybrid
// hosts keep the memory controller there) limited to limit bytes and
// returns its cgroup.procs file.
func memoryLimitedCgroup(t *testing.T, limit int) string {
	t.Helper()
	dir := filepath.Join("/sys/fs/cgroup/memory", fmt.Sprintf("bpfsnap-oom-test-%d", os.Getpid()))
	if _, err := os.Stat("/sys/fs/cgroup/memory/memory.limit_in_bytes"); err != nil {
		testenv.Skip(t, "no cgroup v1 memory controller to make an OOM kill in")
	}
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		waitFor(t, "the OOM cgroup to empty", 10*time.Second, func() bool {
			b, _ := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
			return len(strings.TrimSpace(string(b))) == 0
		})
		os.Remove(dir)
	})
	for _, f := range []string{"memory.limit_in_bytes", "memory.memsw.limit_in_bytes"} {
		if err := os.WriteFile(filepath.Join(dir, f), []byte(fmt.Sprint(limit)), 0o644); err != nil && f == "memory.limit_in_bytes" {
			t.Fatal(err)
		}
	}
	return filepath.Join(dir, "cgroup.procs")
}

// The kernel's OOM killer choosing a target: the oom condition dumps the
// window, the process row says it was OOM-killed.
func TestRingOOMTrigger(t *testing.T) {
	testenv.RequireBPF(t)
	procs := memoryLimitedCgroup(t, 64<<20)
	// A shell that waits for its cgroup, then grows a string until the
	// kernel kills it.
	cmd := exec.Command("/bin/sh", "-c", "read go; x=y; while :; do x=$x$x; done")
	stdin, _ := cmd.StdinPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	if err := os.WriteFile(procs, []byte(fmt.Sprint(pid)), 0o644); err != nil {
		t.Fatal(err)
	}
	r := startRing(t, Options{Ring: 5 * time.Second, PIDs: []uint32{uint32(pid)}, Triggers: []string{"oom"}})
	stdin.Write([]byte("go\n"))
	cmd.Wait()
	path := r.waitDump(20 * time.Second)
	r.stop()
	a, err := formats.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	if d := a.Manifest().Dump; d == nil || d.Trigger != "oom" || !strings.Contains(d.Detail, fmt.Sprintf("[%d]", pid)) {
		t.Fatalf("dump: %+v", a.Manifest().Dump)
	}
	ps, err := analyze.Processes(a)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range ps {
		if p.PID == uint32(pid) {
			// Its exit may follow the dump: the dump is of the window
			// ending when the trigger fired.
			if !p.OOMKilled {
				t.Errorf("the victim's process: oom_killed %v", p.OOMKilled)
			}
			return
		}
	}
	t.Errorf("the victim (pid %d) is not among the dump's processes", pid)
}

// make stress: two minutes of a flight recorder under steady CPU and HTTP
// load: event chunks on disk stay within about two windows the whole time,
// and the tables it keeps whole (stacks, processes) grow slowly.
func TestStressRingDisk(t *testing.T) {
	requireStress(t)
	testenv.RequireBPF(t)
	bin := buildGo(t, goServerSrc)
	port := freePort(t)
	startServer(t, exec.Command(bin, fmt.Sprint(port)), port)
	r := startRing(t, Options{Ring: 6 * time.Second, Probes: []string{"cpu", "http"}})
	end := time.Now().Add(2 * time.Minute)
	for time.Now().Before(end) {
		clientLoad(t, port, 200, 2, "/fast", "/slow/7")
	}
	var retained int64
	ents, _ := os.ReadDir(r.out + formats.PartialSuffix)
	for _, e := range ents {
		table, _, _ := strings.Cut(e.Name(), "-")
		if fi, err := e.Info(); err == nil && formats.RingRetained(table) {
			retained += fi.Size()
		}
	}
	r.stop()
	t.Logf("over 2 minutes: at most %d chunks of one event table on disk; tables kept whole: %d KiB", r.maxEvt, retained>>10)
	if r.maxEvt > 12 {
		t.Errorf("up to %d chunks of one event table on disk, more than two 6 s windows", r.maxEvt)
	}
}
