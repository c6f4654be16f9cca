//go:build linux

package recorder

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/bpfsnap/bpfsnap/formats"
	"github.com/bpfsnap/bpfsnap/internal/symbolize"
)

// A million short process lives (fork, exec, two samples, exit, and a
// sample of the life still in flight after its exit), each with a pid of
// its own as on a node with pid_max 4194304, go through the stack
// recorder: its memory stays flat (Go heap and RSS under 256 MiB), the
// per-life state is dropped after the grace, and the late sample still
// resolves to the life's stack.
//
// The feed is synthetic (a million real processes take ~15 minutes to
// fork here): every life maps the same program and library (two real
// files, found through the first life's /proc/PID/root), as a cron job or
// a CI step does.
func TestMillionLivesMemoryFlat(t *testing.T) {
	lives := 1_000_000
	if testing.Short() {
		lives = 100_000
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	maps := []symbolize.Mapping{
		fileMapping(t, self, 0x400000, 0x480000, 0x1000),
		fileMapping(t, "/bin/sh", 0x7f0000000000, 0x7f0000180000, 0x28000),
		{Start: 0x7ffc00000000, End: 0x7ffc00002000, Perms: "r-xp", Path: "[vdso]"},
	}
	r := syntheticStacks(t, maps)
	// The first life's pid has a root to find the files through; the
	// others are gone, as short lives are by the time they are read.
	if err := os.MkdirAll(filepath.Join(r.s.procRoot, "1000"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/", filepath.Join(r.s.procRoot, "1000", "root")); err != nil {
		t.Fatal(err)
	}
	kernel := []uint64{0xffffffff81000100, 0xffffffff81000200}

	var heapMax uint64
	var heaps []string
	ms := func() uint64 {
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapAlloc
	}
	base := ms()
	now := uint64(1_000_000_000)
	start := time.Now()
	for i := 0; i < lives; i++ {
		pid := uint32(1000 + i)
		now += 1_000_000 // a life a millisecond: 1000 process exits a second
		r.onProcess(formats.ProcessEvent{TimeNs: now, Kind: formats.ProcessFork, PID: pid})
		r.onProcess(formats.ProcessEvent{TimeNs: now, Kind: formats.ProcessExec, PID: pid})
		// Two samples in the program and libc, varied a little across
		// lives as real jobs are: 64 distinct stacks in all.
		user := []uint64{0x7f0000001000 + uint64(i%8)*32, 0x401000 + uint64(i%64/8)*64, 0x402000}
		id := r.Record(pid, kernel, user)
		if again := r.Record(pid, nil, user); again == 0 || id == 0 {
			t.Fatalf("life %d: stack ids %d, %d", i, id, again)
		}
		r.onProcess(formats.ProcessEvent{TimeNs: now, Kind: formats.ProcessExit, PID: pid})
		// A sample of the exited life, read after its exit: still its
		// state, still the same stack.
		if late := r.Record(pid, kernel, user); late != id {
			t.Fatalf("life %d: a sample read after the exit got stack %d, want %d", i, late, id)
		}
		if (i+1)%100_000 == 0 {
			cur := ms()
			h := cur - min(base, cur)
			heapMax = max(heapMax, h)
			heaps = append(heaps, strconv.FormatUint(h>>20, 10))
		}
	}
	elapsed := time.Since(start)
	debug.FreeOSMemory()
	rss := vmRSS(t)
	r.mu.Lock()
	procs, retired, raws, stacks, frames := len(r.procs), len(r.retired), len(r.rawStacks), len(r.stacks), len(r.frames)
	r.mu.Unlock()
	t.Logf("%d lives in %s: Go heap above the start, MiB, every 100k lives: %s; RSS %d MiB; states kept %d (retired %d), raw stacks %d, stacks %d, frames %d",
		lives, elapsed.Round(time.Millisecond), strings.Join(heaps, " "), rss>>20, procs, retired, raws, stacks, frames)
	if heapMax > 256<<20 || rss > 256<<20 {
		t.Errorf("memory grew with lives: Go heap up to %d MiB, RSS %d MiB (bound 256 MiB)", heapMax>>20, rss>>20)
	}
	// exitGrace at 1000 exits a second keeps ~2000 lives; the storm
	// bound is maxRetired.
	if keep := int(exitGrace/time.Millisecond) + 10; procs > keep || retired > keep || raws > 2*keep {
		t.Errorf("per-life state not dropped: %d states, %d retired, %d raw stacks (want ≤ %d)", procs, retired, raws, keep)
	}
	if stacks != 2*64 || frames != 2+8+8+1 {
		t.Errorf("%d stacks, %d frames: want 128 and 19 (frames are shared by (binary, offset) across lives)", stacks, frames)
	}

	// After the grace, the last lives are gone too; a pid reused later
	// starts a life of its own.
	r.onProcess(formats.ProcessEvent{TimeNs: now + uint64(exitGrace) + 1, Kind: formats.ProcessScan, PID: 1})
	r.mu.Lock()
	procs, raws = len(r.procs), len(r.rawStacks)
	r.mu.Unlock()
	if procs != 1 || raws != 0 {
		t.Errorf("after the grace: %d states (want the scanned one), %d raw stacks", procs, raws)
	}
}

// A storm of exits faster than the grace is bounded by maxRetired.
func TestRetiredStatesBounded(t *testing.T) {
	r := syntheticStacks(t, nil)
	for i := 0; i < 3*maxRetired; i++ {
		pid := uint32(10 + i)
		r.onProcess(formats.ProcessEvent{TimeNs: 5, Kind: formats.ProcessFork, PID: pid}) // all at one instant
		r.onProcess(formats.ProcessEvent{TimeNs: 5, Kind: formats.ProcessExit, PID: pid})
	}
	// A sample of a pid never announced makes a state that is retired too.
	r.Record(7, []uint64{0xffffffff81000100}, nil)
	if len(r.procs) > maxRetired+1 || len(r.retired) > maxRetired {
		t.Errorf("%d states, %d retired after %d exits in no time (bound %d)", len(r.procs), len(r.retired), 3*maxRetired, maxRetired)
	}
	if p := r.procs[7]; p == nil || !p.retired {
		t.Errorf("a life met through a sample is not retired: %+v", p)
	}
}

// fileMapping is an executable mapping of a real file, with its device
// and inode as a maps line shows them.
func fileMapping(t *testing.T, path string, start, end, off uint64) symbolize.Mapping {
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	sys := st.Sys().(*syscall.Stat_t)
	return symbolize.Mapping{Start: start, End: end, Perms: "r-xp", Offset: off,
		Dev: fmt.Sprintf("%02x:%02x", unix.Major(sys.Dev), unix.Minor(sys.Dev)), Inode: sys.Ino, Path: path}
}

// syntheticStacks is a stack recorder whose processes all map maps. Its
// host root starts with an empty proc directory: a process without a
// directory there is gone.
func syntheticStacks(t *testing.T, maps []symbolize.Mapping) *StackRecorder {
	dir := t.TempDir()
	w, err := formats.Create(filepath.Join(dir, "lives.bpfsnap"), formats.Manifest{}, formats.CreateOptions{SealInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.Abort)
	if err := os.MkdirAll(filepath.Join(dir, "host", "proc"), 0o755); err != nil {
		t.Fatal(err)
	}
	r := NewDetachedSession(w, Options{HostRoot: filepath.Join(dir, "host")}).Stacks()
	r.readMaps = func(uint32) ([]symbolize.Mapping, error) { return maps, nil }
	return r
}

func vmRSS(t *testing.T) uint64 {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			kb, _ := strconv.ParseUint(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10
		}
	}
	t.Fatal("no VmRSS in /proc/self/status")
	return 0
}
