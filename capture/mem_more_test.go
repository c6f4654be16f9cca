//go:build linux

package capture

import (
	"context"
	"github.com/bpfsnap/bpfsnap/capture/recorder"
	"math"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"

	"github.com/bpfsnap/bpfsnap/analyze"
	"github.com/bpfsnap/bpfsnap/formats"
	"github.com/bpfsnap/bpfsnap/internal/testenv"
)

// buildMemC compiles a testdata/mem program.
func buildMemC(t *testing.T, name string, cflags ...string) string {
	t.Helper()
	testenv.RequireTool(t, "gcc")
	bin := filepath.Join(t.TempDir(), name)
	args := append(append([]string{}, cflags...), "-o", bin, "../testdata/mem/"+name+".c", "-pthread")
	if out, err := exec.Command("gcc", args...).CombinedOutput(); err != nil {
		t.Fatalf("gcc: %v: %s", err, out)
	}
	return bin
}

// captureMem runs `capture -p mem FLAGS -- ARGV` and returns the archive's
// analysis and manifest.
func captureMem(t *testing.T, flags []string, argv ...string) (*analyze.MemSummary, *formats.Manifest) {
	t.Helper()
	sets := NewProbeSets()
	fs := pflag.NewFlagSet("capture", pflag.ContinueOnError)
	for _, s := range sets {
		s.BindFlags(fs)
	}
	if err := fs.Parse(flags); err != nil {
		t.Fatal(err)
	}
	return runMemCapture(t, Options{Duration: 2 * time.Minute, Probes: []string{"mem"}, Sets: sets, Command: argv, Version: "test"})
}

// runMemCapture runs a capture with o (its output in a temporary
// directory) and returns the archive's mem analysis and manifest.
func runMemCapture(t *testing.T, o Options) (*analyze.MemSummary, *formats.Manifest) {
	t.Helper()
	o.Output = filepath.Join(t.TempDir(), "mem.bpfsnap")
	if _, err := Run(context.Background(), o); err != nil {
		t.Fatal(err)
	}
	return openMem(t, o.Output)
}

// bySite sums groups by their leaf frame (the call site).
func bySite(ls []analyze.MemLeak) map[string][2]uint64 {
	out := map[string][2]uint64{}
	for _, l := range ls {
		site := "[no stack]"
		if len(l.Stack) > 0 {
			site = l.Stack[0]
		}
		v := out[site]
		out[site] = [2]uint64{v[0] + l.Bytes, v[1] + l.Allocations}
	}
	return out
}

// mmapSites sums the program's own anonymous mappings by the first frame of
// the program's binary (the leaf is libc's mmap or munmap wrapper).
func mmapSites(ls []analyze.MemLeak, sites ...string) map[string]uint64 {
	out := map[string]uint64{}
	for _, l := range ls {
		if l.Kind != "mmap" || l.ByAllocator {
			continue
		}
		for _, f := range l.Stack {
			for _, s := range sites {
				if f == s {
					out[s] += l.Bytes
				}
			}
		}
	}
	return out
}

const (
	memThreads = 4
	memRounds  = 300
	memChurn   = 300
)

// Many threads allocating and freeing at once, blocks freed by another
// thread than the one that allocated them, and partial munmaps: with the
// default settings every leaking site has its exact bytes and count, and
// nothing else of the program is outstanding.
func TestMemThreadsExact(t *testing.T) {
	testenv.RequireBPF(t)
	bin := buildMemC(t, "threads", "-O2", "-fno-omit-frame-pointer")
	mem, man := captureMem(t, nil, bin, recorder.Itoa(memThreads), recorder.Itoa(memRounds), recorder.Itoa(memChurn))
	n := uint64(memThreads * memRounds)
	sites := bySite(mem.Leaks)
	t.Logf("heap sites %v; %d allocations, %d frees; drops %v", sites, mem.Allocations, mem.Frees, man.Drops)
	for k, v := range man.Drops {
		// Lost events break exactness; walks that stopped early (counted
		// as mem.unwind_*: a few of libc's own mapping stacks) do not.
		if strings.HasPrefix(k, "mem.") && !strings.HasPrefix(k, "mem.unwind_") && v > 0 {
			t.Errorf("drop %s = %d", k, v)
		}
	}
	want := map[string][2]uint64{
		"leak_malloc":  {48 * n, n},
		"leak_calloc":  {120 * n, n},
		"leak_realloc": {300 * n, n},
	}
	for site, w := range want {
		if got := sites[site]; got != w {
			t.Errorf("%s: %d bytes in %d blocks, want %d in %d", site, got[0], got[1], w[0], w[1])
		}
	}
	for _, gone := range []string{"churn", "handoff_alloc", "freer", "worker"} {
		if got, ok := sites[gone]; ok {
			t.Errorf("%s reported outstanding: %v", gone, got)
		}
	}
	// churn + 5 allocations (malloc, calloc, malloc+realloc, 2 handoffs)
	// per round and thread, plus main's and libc's own.
	if min := n * (memChurn + 6); mem.Allocations < min || mem.Frees < n*(memChurn+2) {
		t.Errorf("allocations %d (want >= %d), frees %d", mem.Allocations, min, mem.Frees)
	}
	// 3 pages mapped, the middle one unmapped: 2 pages per call remain.
	page := uint64(4096)
	if got := mmapSites(mem.Mappings, "leak_mmap")["leak_mmap"]; got != 2*page*n {
		t.Errorf("leak_mmap: %d bytes mapped, want %d", got, 2*page*n)
	}
	if mem.Unmaps < n {
		t.Errorf("%d munmaps, want >= %d", mem.Unmaps, n)
	}
}

// --mem-sample: only a sample reaches user space, frees of unsampled
// blocks send nothing, and the weights scale the figures back.
func TestMemSampledEstimate(t *testing.T) {
	testenv.RequireBPF(t)
	bin := buildMemC(t, "threads", "-O2", "-fno-omit-frame-pointer")
	// 4 × 2000 rounds of 100 churned blocks: 800,000 allocations (~290
	// MB). One sample per 1 KiB keeps ~1 in 3 of the 300-byte leaks.
	const rounds, churn, every = 2000, 100, 1024
	mem, man := captureMem(t, []string{"--mem-sample", recorder.Itoa(every)}, bin, recorder.Itoa(memThreads), recorder.Itoa(rounds), recorder.Itoa(churn))
	n := float64(memThreads * rounds)
	sites := bySite(mem.Leaks)
	t.Logf("sites %v; %d allocations (est.), %d rows; details %v", sites, mem.Allocations, man.Tables[formats.TableMemEvents], probeDetails(man.Probes, "mem"))
	if !mem.Estimated || mem.SampleBytes != every {
		t.Errorf("estimated %v, sample_bytes %d", mem.Estimated, mem.SampleBytes)
	}
	// Expected samples per site: n × (1-exp(-size/every)); allow 4
	// standard deviations of the estimate (binomial).
	for site, size := range map[string]float64{"leak_malloc": 48, "leak_calloc": 120, "leak_realloc": 300} {
		p := -math.Expm1(-size / every)
		tol := 4 * math.Sqrt(n*p*(1-p)) / p * size
		got := float64(sites[site][0])
		if math.Abs(got-n*size) > tol {
			t.Errorf("%s: estimated %.0f bytes, true %.0f (tolerance %.0f)", site, got, n*size, tol)
		}
	}
	// Sampled churn blocks are freed like the others: nothing outstanding.
	if got, ok := sites["churn"]; ok {
		t.Errorf("churn outstanding: %v", got)
	}
	// The kernel kept unsampled allocations and their frees off the ring:
	// the churn averages ~365 bytes, sampled with probability ~0.3, so
	// about a third of the ~1.7M calls become rows.
	total := n * (churn + 5)
	if rows := float64(man.Tables[formats.TableMemEvents]); rows == 0 || rows > 0.4*2*total {
		t.Errorf("%.0f mem_events rows for ~%.0f calls", rows, 2*total)
	}
	if math.Abs(float64(mem.Allocations)-total)/total > 0.1 {
		t.Errorf("estimated %d allocations, true ~%.0f", mem.Allocations, total)
	}
}

// A program built with -O2 -fomit-frame-pointer: with --mem-unwind dwarf
// (and auto) the allocation stack is the whole chain main → chain_a →
// chain_b → malloc; with frame pointers only it stops at chain_b.
func TestMemDWARFChain(t *testing.T) {
	testenv.RequireBPF(t)
	bin := buildMemC(t, "chain", "-O2", "-fomit-frame-pointer")
	const leaks = 500
	for _, mode := range []string{"dwarf", "auto", "fp"} {
		mem, man := captureMem(t, []string{"--mem-unwind", mode}, bin, recorder.Itoa(leaks), "300")
		var chain []string
		var bytes, count uint64
		for _, l := range mem.Leaks {
			if len(l.Stack) > 0 && l.Stack[0] == "chain_b" {
				bytes += l.Bytes
				count += l.Allocations
				if chain == nil || len(l.Stack) > len(chain) {
					chain = l.Stack
				}
			}
		}
		t.Logf("%s: chain_b %d bytes in %d blocks, stack %v; details %v", mode, bytes, count, chain, probeDetails(man.Probes, "mem"))
		if bytes != 40*leaks || count != leaks {
			t.Errorf("%s: chain_b holds %d bytes in %d blocks, want %d in %d", mode, bytes, count, 40*leaks, leaks)
		}
		full := len(chain) >= 3 && chain[1] == "chain_a" && chain[2] == "main"
		if mode != "fp" && !full {
			t.Errorf("%s: allocation stack %v, want chain_b < chain_a < main", mode, chain)
		}
		if mode == "fp" && full {
			t.Logf("fp: the frame-pointer walk found the chain anyway")
		}
		if d := probeDetails(man.Probes, "mem"); mode != "fp" && (d["unwind"] != mode || d["unwind.walks"] == "" || d["unwind.walks"] == "0") {
			t.Errorf("%s: probe details %v", mode, d)
		}
	}
}

// A ring of one page cannot keep up with a flat-out malloc/free loop: the
// kernel loses most records, single allocations and whole batches of 32
// frees alike. Every event must still be either recorded or counted in
// mem.ringbuf_full, so recorded + dropped is the number of calls made.
func TestMemFloodAccounted(t *testing.T) {
	testenv.RequireBPF(t)
	bin := buildMemC(t, "pairs", "-O2", "-fno-omit-frame-pointer")
	const pairs = 300000
	mem, man := runMemCapture(t, Options{Duration: 2 * time.Minute, Probes: []string{"mem"}, Sets: NewProbeSets(),
		Command: []string{bin, recorder.Itoa(pairs)}, RingPages: 1, Version: "test"})
	lost := man.Drops["mem.ringbuf_full"]
	got := mem.Allocations + mem.Frees + lost
	t.Logf("%d allocations + %d frees recorded, %d lost: %d of %d calls; drops %v", mem.Allocations, mem.Frees, lost, got, 2*pairs, man.Drops)
	if lost == 0 {
		t.Errorf("a one-page ring lost nothing: the test no longer floods it")
	}
	// The program's own pairs, plus the few allocations libc makes for
	// stdio (stdout's buffer, never freed).
	if got < 2*pairs || got > 2*pairs+16 {
		t.Errorf("recorded + lost = %d, want %d (+ libc's few)", got, 2*pairs)
	}
}

// Frees wait in a per-CPU batch in the kernel. A batch is sent when full,
// or when its oldest free is a second old: after a kill -9 of the
// recorder, a recovered archive has the frees of all but the last second
// (a program freeing slowly would otherwise look like it leaked
// everything).
func TestMemKill9KeepsSlowFrees(t *testing.T) {
	testenv.RequireBPF(t)
	bin := buildSelf(t)
	prog := buildMemC(t, "slowfree", "-O2", "-fno-omit-frame-pointer")
	const frees, gapMs = 20, 200
	out := filepath.Join(t.TempDir(), "killed.bpfsnap")
	cmd := exec.Command(bin, "capture", "-p", "mem", "-d", "60s", "-o", out, "--", prog, recorder.Itoa(frees), recorder.Itoa(gapMs))
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { exec.Command("pkill", "-KILL", "-f", prog).Run() })
	// The frees end after ~4 s; the once-a-second seal follows.
	time.Sleep(time.Duration(frees*gapMs)*time.Millisecond + 3*time.Second)
	cmd.Process.Kill()
	cmd.Wait()
	if msg, err := exec.Command(bin, "recover", out+formats.PartialSuffix).CombinedOutput(); err != nil {
		t.Fatalf("recover: %v: %s", err, msg)
	}
	mem, _ := openMem(t, out)
	t.Logf("recovered: %d allocations, %d frees of the program's %d pairs", mem.Allocations, mem.Frees, frees)
	// Frees 200 ms apart: a batch goes every ~6 frees, so the last ~5 of
	// each CPU's may wait in the kernel when the recorder dies.
	if mem.Frees < frees/2 {
		t.Errorf("%d of %d frees recovered: the kernel held the rest", mem.Frees, frees)
	}
}
