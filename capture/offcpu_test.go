//go:build linux

package capture

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"

	"github.com/bpfsnap/bpfsnap/analyze"
	"github.com/bpfsnap/bpfsnap/internal/testenv"
)

// captureServer runs argv as the capture's command with the given probe
// sets, runs load once the server listens on port, and ends the window
// when load returns. The server is a target from its first instruction,
// with every thread it starts.
func captureServer(t *testing.T, probes []string, port int, load func(), argv ...string) *analyze.Summary {
	t.Helper()
	return captureWhile(t, Options{Duration: 3 * time.Minute, Probes: probes, Command: argv}, func() {
		waitListening(t, port)
		load()
	})
}

// captureWhile runs a capture with o (its output, probe sets and version
// filled in), runs load once the probes are attached, ends the window when
// load returns and analyzes the archive.
func captureWhile(t *testing.T, o Options, load func()) *analyze.Summary {
	t.Helper()
	o.Output = filepath.Join(t.TempDir(), "capture.bpfsnap")
	o.Sets, o.Version = NewProbeSets(), "test"
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ready := make(chan struct{})
	done := make(chan error, 1)
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
	load()
	time.Sleep(300 * time.Millisecond) // let the last records reach the rings, and the last RSS reading
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	s, err := analyze.Load(o.Output, analyze.Request{})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// endpointSplits returns the server endpoints' time splits by route.
func endpointSplits(t *testing.T, s *analyze.Summary) map[string]*analyze.TimeSplit {
	t.Helper()
	if s.HTTP == nil {
		t.Fatal("no HTTP section")
	}
	out := map[string]*analyze.TimeSplit{}
	for _, e := range s.HTTP.Endpoints {
		if e.Role != "server" {
			continue
		}
		if e.TimeSplit == nil {
			t.Fatalf("%s %s: no time split", e.Method, e.Route)
		}
		if e.TimeSplit.Requests != e.Count {
			t.Errorf("%s: the split covers %d of %d requests", e.Route, e.TimeSplit.Requests, e.Count)
		}
		ts := e.TimeSplit
		t.Logf("%s (%d requests, %.1f ms): on CPU %.1f, blocked %.1f %v, run queue %.1f ms; dominant %s", e.Route, e.Count, ts.WallMs,
			ts.OnCPUMs, ts.OffCPUMs, ts.OffCPUByClassMs, ts.RunqueueMs, ts.Dominant)
		for _, st := range ts.BlockedStacks {
			t.Logf("   blocked %.1f ms %s: %s", st.Ms, st.Class, strings.Join(st.Stack, " < "))
		}
		for _, st := range ts.CPUStacks {
			t.Logf("   on CPU ~%.1f ms: %s", st.Ms, strings.Join(st.Stack, " < "))
		}
		out[e.Route] = ts
	}
	return out
}

// stackHas reports whether fn is a frame of st, called or inlined.
func stackHas(st []string, fn string) bool {
	for _, f := range st {
		if strings.TrimSuffix(f, analyze.InlinedSuffix) == fn {
			return true
		}
	}
	return false
}

// checkRoutes checks the three routes of a lock/sleep/compute server:
// each split names its cause, and the waiting function is on the lock
// route's top blocked stack.
func checkRoutes(t *testing.T, s *analyze.Summary, lockFn, sleepFn, computeFn string) {
	t.Helper()
	splits := endpointSplits(t, s)
	lock, sleep, compute := splits["/lock"], splits["/sleep"], splits["/compute"]
	if lock == nil || sleep == nil || compute == nil {
		t.Fatalf("routes missing from %v", splits)
	}
	// Under emulation (testenv.Emulated) the routes' CPU work and run
	// queue take ~10x longer beside the same waits: /lock measured 57%
	// lock waits with 207 ms of run queue on 6.12. The cause must still
	// dominate and its stack still hold the waiting function.
	least := 0.6
	if testenv.Emulated() {
		least = 0.45
	}
	if got := lock.Share(lock.OffCPUByClassMs[analyze.WaitLock]); got < least || lock.Dominant != analyze.WaitLock {
		t.Errorf("/lock: %.0f%% of its time in lock waits (dominant %s), want >= %.0f%%", 100*got, lock.Dominant, 100*least)
	}
	if len(lock.BlockedStacks) == 0 || lock.BlockedStacks[0].Class != analyze.WaitLock || !stackHas(lock.BlockedStacks[0].Stack, lockFn) {
		t.Errorf("/lock: top blocked stack %+v does not hold %s", lock.BlockedStacks, lockFn)
	}
	if got := sleep.Share(sleep.OffCPUByClassMs[analyze.WaitSleep]); got < least || sleep.Dominant != analyze.WaitSleep {
		t.Errorf("/sleep: %.0f%% of its time asleep (dominant %s), want >= %.0f%%", 100*got, sleep.Dominant, 100*least)
	}
	if len(sleep.BlockedStacks) == 0 || !stackHas(sleep.BlockedStacks[0].Stack, sleepFn) {
		t.Errorf("/sleep: top blocked stack %+v does not hold %s", sleep.BlockedStacks, sleepFn)
	}
	if got := compute.Share(compute.OnCPUMs); got < 0.5 || compute.Dominant != "on_cpu" {
		t.Errorf("/compute: %.0f%% on CPU (dominant %s), want >= 50%% (a loaded machine queues it: rerun)", 100*got, compute.Dominant)
	}
	if len(compute.CPUStacks) == 0 || !stackHas(compute.CPUStacks[0].Stack, computeFn) {
		t.Errorf("/compute: top CPU stack %+v does not hold %s", compute.CPUStacks, computeFn)
	}
	// The off-CPU flame graph carries the lock wait, under its class.
	prof, err := s.RequireOffCPU()
	if err != nil {
		t.Fatal(err)
	}
	var lockUs uint64
	for _, f := range prof.Folded() {
		if len(f.Frames) > 2 && f.Frames[1] == "[lock]" && stackHas(f.Frames, lockFn) {
			lockUs += f.Count
		}
	}
	if lockUs < uint64(lock.OffCPUByClassMs[analyze.WaitLock]*1000*0.9) {
		t.Errorf("the off-CPU flame graph has %d µs under [lock] ... %s, the /lock requests waited %.1f ms", lockUs, lockFn, lock.OffCPUByClassMs[analyze.WaitLock])
	}
}

// buildLockServer compiles testdata/offcpu/lockserver.c with frame
// pointers and debug info.
func buildLockServer(t *testing.T) string {
	t.Helper()
	testenv.RequireTool(t, "gcc")
	bin := filepath.Join(t.TempDir(), "lockserver")
	if out, err := exec.Command("gcc", "-O1", "-g", "-fno-omit-frame-pointer", "-pthread", "-o", bin, "../testdata/offcpu/lockserver.c").CombinedOutput(); err != nil {
		t.Fatalf("gcc: %v: %s", err, out)
	}
	return bin
}

// A C server with a thread per connection: a route waiting on a mutex a
// background thread holds, one sleeping, one computing. Each route's time
// split names its cause. The server runs as a real-time task (chrt): on
// this shared 2-core machine other sessions' processes, in cgroups of
// their own, keep both CPUs busy, so even at nice -20 the computing route
// spends more time waiting for a CPU than on it (which the split then
// reports, correctly, as run-queue time; TestOffCPUThrottledCgroup checks
// that side).
func TestOffCPUThreadPerConnectionC(t *testing.T) {
	testenv.RequireBPF(t)
	bin := buildLockServer(t)
	port := freePort(t)
	s := captureServer(t, []string{"cpu", "http", "offcpu"}, port, func() {
		clientLoad(t, port, 25, 1, "/lock", "/sleep", "/compute")
	}, "chrt", "-f", "1", bin, strconv.Itoa(port))
	checkRoutes(t, s, "wait_for_shared_lock", "take_a_nap", "crunch_numbers")
}

const pythonLockServer = `import sys, threading, time
from http.server import ThreadingHTTPServer, BaseHTTPRequestHandler

shared = threading.Lock()

def holder():
    while True:
        with shared:
            time.sleep(0.04)
        time.sleep(0.01)

def crunch():
    end = time.thread_time() + 0.02
    x = 0
    while time.thread_time() < end:
        for i in range(2000):
            x = (x * 31 + i) & 0xffff
    return x

class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        if self.path == "/lock":
            with shared:
                pass
        elif self.path == "/sleep":
            time.sleep(0.02)
        elif self.path == "/compute":
            crunch()
        body = b"done\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass

threading.Thread(target=holder, daemon=True).start()
ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
`

// The same with Python's ThreadingHTTPServer (a thread per connection):
// threading.Lock waits in the interpreter's PyThread_acquire_lock_timed,
// time.sleep in pysleep, the loop on the CPU in the interpreter (real-time
// for the same reason).
func TestOffCPUPythonThreadingServer(t *testing.T) {
	testenv.RequireBPF(t)
	py := "/root/.pyenv/versions/3.12.1/bin/python3"
	if _, err := os.Stat(py); err != nil {
		py = testenv.RequireTool(t, "python3")
	}
	script := filepath.Join(t.TempDir(), "lockserver.py")
	if err := os.WriteFile(script, []byte(pythonLockServer), 0o644); err != nil {
		t.Fatal(err)
	}
	port := freePort(t)
	s := captureServer(t, []string{"cpu", "http", "offcpu"}, port, func() {
		clientLoad(t, port, 25, 1, "/lock", "/sleep", "/compute")
	}, "chrt", "-f", "1", py, script, strconv.Itoa(port))
	checkRoutes(t, s, "PyThread_acquire_lock_timed", "pysleep", "_PyEval_EvalFrameDefault")
}

// cpuLimitedCgroup makes a cgroup whose CPU limit is cpus, in the v2
// hierarchy when its cpu controller is there, else in v1's cpu controller
// (this project's hybrid hosts); it returns the file to write a pid to and
// the path the analysis names it by.
func cpuLimitedCgroup(t *testing.T, cpus float64) (procs, path string) {
	t.Helper()
	name := fmt.Sprintf("bpfsnap-offcpu-test-%d", os.Getpid())
	quota := int(cpus * 100000)
	var dir string
	if ctl, err := os.ReadFile("/sys/fs/cgroup/unified/cgroup.controllers"); err == nil && strings.Contains(" "+string(ctl)+" ", " cpu ") {
		dir = filepath.Join("/sys/fs/cgroup/unified", name)
	} else if _, err := os.Stat("/sys/fs/cgroup/cpu/cpu.cfs_quota_us"); err == nil {
		dir = filepath.Join("/sys/fs/cgroup/cpu", name)
	} else if ctl, err := os.ReadFile("/sys/fs/cgroup/cgroup.controllers"); err == nil && strings.Contains(" "+string(ctl)+" ", " cpu ") {
		dir = filepath.Join("/sys/fs/cgroup", name)
	} else {
		testenv.Skip(t, "no cgroup cpu controller to limit a workload with")
	}
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// The server is killed at the end of the capture; the cgroup
		// can be removed once it is empty.
		waitFor(t, "the cgroup to empty", 10*time.Second, func() bool {
			b, _ := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
			return strings.TrimSpace(string(b)) == ""
		})
		os.Remove(dir)
	})
	if _, err := os.Stat(filepath.Join(dir, "cpu.max")); err == nil {
		if err := os.WriteFile(filepath.Join(dir, "cpu.max"), []byte(fmt.Sprintf("%d 100000", quota)), 0o644); err != nil {
			t.Fatal(err)
		}
	} else {
		os.WriteFile(filepath.Join(dir, "cpu.cfs_period_us"), []byte("100000"), 0o644)
		if err := os.WriteFile(filepath.Join(dir, "cpu.cfs_quota_us"), []byte(strconv.Itoa(quota)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return filepath.Join(dir, "cgroup.procs"), "/" + name
}

// A server in a cgroup limited to a quarter of a CPU, asked for 20 ms of
// CPU per request: the cgroup's throttling is reported, and its requests
// show the wait for a CPU and the throttling of their process's cgroup.
func TestOffCPUThrottledCgroup(t *testing.T) {
	testenv.RequireBPF(t)
	bin := buildLockServer(t)
	procs, path := cpuLimitedCgroup(t, 0.25)
	port := freePort(t)
	s := captureServer(t, []string{"http", "offcpu"}, port, func() {
		clientLoad(t, port, 12, 2, "/compute")
	}, "/bin/sh", "-c", fmt.Sprintf("echo $$ > %s && exec %s %d", procs, bin, port))
	var cg *analyze.CgroupThrottle
	for i, c := range s.OffCPU.Cgroups {
		t.Logf("cgroup v%d %s: limit %.2f CPUs, throttled %d of %d periods, %.1f ms; run queue %.1f ms; pids %v", c.Version, c.Path,
			c.QuotaCPUs, c.ThrottledPeriods, c.Periods, c.ThrottledMs, c.RunqueueMs, c.PIDs)
		if c.Path == path {
			cg = &s.OffCPU.Cgroups[i]
		}
	}
	if cg == nil {
		t.Fatalf("cgroup %s not reported", path)
	}
	if cg.QuotaCPUs < 0.24 || cg.QuotaCPUs > 0.26 || cg.ThrottledPeriods == 0 || cg.ThrottledMs < 100 {
		t.Errorf("cgroup %s: limit %.2f CPUs, %d throttled periods, %.1f ms throttled; want 0.25 and throttling", path, cg.QuotaCPUs, cg.ThrottledPeriods, cg.ThrottledMs)
	}
	if cg.RunqueueMs < cg.ThrottledMs/2 {
		t.Errorf("cgroup %s: its threads waited %.1f ms in the run queue while it was throttled %.1f ms", path, cg.RunqueueMs, cg.ThrottledMs)
	}
	ts := endpointSplits(t, s)["/compute"]
	if ts == nil {
		t.Fatal("no /compute endpoint")
	}
	if ts.Throttling == nil || ts.Throttling.Path != path {
		t.Errorf("/compute: throttling %+v, want cgroup %s", ts.Throttling, path)
	}
	// 20 ms of CPU per request at a quarter of a CPU: most of each
	// request waits for the quota to refill.
	if got := ts.Share(ts.RunqueueMs); got < 0.4 || ts.Dominant != "runqueue" {
		t.Errorf("/compute: %.0f%% of its time in the run queue (dominant %s), want >= 40%%", 100*got, ts.Dominant)
	}
}

const goFsyncServer = `package main

import (
	"net/http"
	"os"
	"path/filepath"
)

func main() {
	f, err := os.OpenFile(filepath.Join(os.Args[2], "journal"), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		panic(err)
	}
	record := make([]byte, 16<<10)
	http.HandleFunc("/commit", func(w http.ResponseWriter, r *http.Request) {
		// A write-ahead log: each of the commit's records is synced.
		for i := 0; i < 4; i++ {
			f.Write(record)
			f.Sync()
		}
		w.Write([]byte("committed\n"))
	})
	http.ListenAndServe("127.0.0.1:"+os.Args[1], nil)
}
`

// A Go handler blocked in fsync: the disk wait shows on its requests (the
// goroutine keeps its thread through a blocking syscall, and writes the
// response from it). Real-time, as the thread-per-connection servers, so
// other sessions' load does not turn the split into run-queue time. Each
// commit syncs four records: one fsync of this VM's disk may take 0.3 ms,
// as long as the runtime takes to wake a thread for the request (which
// shows as idle: the request waited for the Go scheduler).
func TestOffCPUGoFsync(t *testing.T) {
	testenv.RequireBPF(t)
	bin := buildGo(t, goFsyncServer)
	dir, err := os.MkdirTemp("/var/tmp", "bpfsnap-fsync-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	port := freePort(t)
	s := captureServer(t, []string{"http", "offcpu"}, port, func() {
		clientLoad(t, port, 40, 1, "/commit")
	}, "chrt", "-f", "1", bin, strconv.Itoa(port), dir)
	ts := endpointSplits(t, s)["/commit"]
	if ts == nil {
		t.Fatal("no /commit endpoint")
	}
	// fsync is CPU work too (ext4, the block layer), and this VM's
	// virtual disk answers in anything from 0.05 to 0.8 ms (17% and 72%
	// of the requests' time in two quiet runs): the disk wait is the
	// requests' largest wait, under Sync, and at least a tenth of it.
	disk := ts.OffCPUByClassMs[analyze.WaitDisk]
	for c, ms := range ts.OffCPUByClassMs {
		if ms > disk {
			t.Errorf("/commit: %s (%.1f ms) outweighs the disk wait (%.1f ms)", c, ms, disk)
		}
	}
	if got := ts.Share(disk); got < 0.10 {
		t.Errorf("/commit: %.0f%% of its time in disk waits, want >= 10%%", 100*got)
	}
	if len(ts.BlockedStacks) == 0 || ts.BlockedStacks[0].Class != analyze.WaitDisk || !stackHas(ts.BlockedStacks[0].Stack, "os.(*File).Sync") {
		t.Errorf("/commit: top blocked stack %+v is not the disk wait under os.(*File).Sync", ts.BlockedStacks)
	}
}

// Through a one-page ring, with every interval its own record, a pair of
// threads switching as fast as they can overflows the ring: the intervals
// recorded plus those counted lost are the switches the pair made.
func TestOffCPUFloodAccounted(t *testing.T) {
	testenv.RequireBPF(t)
	testenv.RequireTool(t, "gcc")
	dir := t.TempDir()
	bin := filepath.Join(dir, "pingpong")
	if out, err := exec.Command("gcc", "-O2", "-fno-omit-frame-pointer", "-pthread", "-o", bin, "../testdata/offcpu/pingpong.c").CombinedOutput(); err != nil {
		t.Fatalf("gcc: %v: %s", err, out)
	}
	gate := filepath.Join(dir, "go")
	pp := exec.Command("taskset", "-c", "0", bin, "100000")
	pp.Env = append(os.Environ(), "PINGPONG_WAIT_FILE="+gate)
	var ppOut strings.Builder
	pp.Stdout = &ppOut
	if err := pp.Start(); err != nil {
		t.Fatal(err)
	}
	defer pp.Process.Kill()
	sets := NewProbeSets()
	fs := pflag.NewFlagSet("capture", pflag.ContinueOnError)
	for _, s := range sets {
		s.BindFlags(fs)
	}
	if err := fs.Parse([]string{"--offcpu-exact", "1ns"}); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "flood.bpfsnap")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ready := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		_, err := Run(ctx, Options{Output: out, Duration: 2 * time.Minute, Probes: []string{"offcpu"}, Sets: sets,
			PIDs: []uint32{uint32(pp.Process.Pid)}, RingPages: 1, Version: "test", Ready: func() { close(ready) }})
		done <- err
	}()
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("capture ended before it was ready: %v", err)
	}
	os.WriteFile(gate, nil, 0o644)
	if err := pp.Wait(); err != nil {
		t.Fatalf("pingpong: %v", err)
	}
	time.Sleep(300 * time.Millisecond)
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`\((\d+) switches`).FindStringSubmatch(ppOut.String())
	if m == nil {
		t.Fatalf("pingpong said %q", ppOut.String())
	}
	switches, _ := strconv.ParseUint(m[1], 10, 64)
	s, err := analyze.Load(out, analyze.Request{})
	if err != nil {
		t.Fatal(err)
	}
	// The pair's switches are its pipe waits, its preemptions and the
	// main thread's wait for the peer to end; the wait for the gate
	// (sleep) and the peer's start (new_thread) came before its count.
	var recorded uint64
	classes := map[string]uint64{}
	for _, c := range s.OffCPU.Classes {
		classes[string(c.Class)] += c.Intervals
		if c.Class != analyze.WaitSleep && c.Class != analyze.WaitNewThread {
			recorded += c.Intervals
		}
	}
	t.Logf("intervals by class: %v", classes)
	lost := s.Manifest.Drops["offcpu.ringbuf_full"]
	// A scheduler event the kernel skipped (a program already running on
	// that CPU) is an interval never seen: counted, it widens the margin.
	skipped := int64(s.Manifest.Drops["offcpu.runs_skipped"])
	t.Logf("%d switches; %d intervals recorded, %d lost, %d runs skipped; drops %v", switches, recorded, lost, skipped, s.Manifest.Drops)
	if lost == 0 {
		t.Error("a one-page ring lost nothing: the test did not flood it")
	}
	// Under emulation (make test-kernels without KVM) the runs on either
	// side of the pair's own count (after its last getrusage: thread and
	// process exit, slowed ~10x and sharing CPU 0 with the recorder) take
	// a few dozen more switches: measured +24 to +37 of ~200k on 6.1 and
	// 6.12. Double counting or a lost drop counter would be thousands.
	over := int64(4)
	if testenv.Emulated() {
		over = int64(switches) / 2000
	}
	// Short: ±4 and 0.01% more. Quiet runs agree within ±1; loaded runs
	// (CI, make test) came 5 and 6 short with no recursion miss counted.
	// Where those few intervals go is an open question (a task storage
	// lookup refused while the storage is busy would lose one silently).
	under := 4 + int64(switches)/10000 + skipped
	if d := int64(recorded+lost) - int64(switches); d < -under || d > over {
		t.Errorf("recorded + lost = %d, the pair switched %d times", recorded+lost, switches)
	}
}
