//go:build linux

package capture

import (
	"bufio"
	"bytes"
	"context"
	"debug/elf"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"

	"github.com/bpfsnap/bpfsnap/analyze"
	"github.com/bpfsnap/bpfsnap/formats"
	"github.com/bpfsnap/bpfsnap/internal/testenv"
)

// probeSetsWithFlags returns every probe set with its flags parsed from
// flags (as `capture FLAGS` would).
func probeSetsWithFlags(t *testing.T, flags ...string) []ProbeSet {
	t.Helper()
	sets := NewProbeSets()
	fs := pflag.NewFlagSet("capture", pflag.ContinueOnError)
	for _, s := range sets {
		s.BindFlags(fs)
	}
	if err := fs.Parse(flags); err != nil {
		t.Fatal(err)
	}
	return sets
}

// captureWithFlags records with the cpu probe set and extra capture flags.
func captureWithFlags(t *testing.T, flags []string, duration time.Duration, argv ...string) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), "cpu.bpfsnap")
	if _, err := Run(context.Background(), Options{Output: out, Duration: duration, Probes: []string{"cpu"}, Sets: probeSetsWithFlags(t, flags...), Command: argv, Version: "test"}); err != nil {
		t.Fatal(err)
	}
	return out
}

// buildChain compiles the unwinder's known-chain program without frame
// pointers: main -> chain_a -> chain_b -> qsort (libc) -> chain_cmp ->
// chain_c -> chain_leaf.
func buildChain(t *testing.T) string {
	t.Helper()
	testenv.RequireTool(t, "gcc")
	bin := filepath.Join(t.TempDir(), "chain")
	if out, err := exec.Command("gcc", "-O2", "-fomit-frame-pointer", "-o", bin, "../internal/unwind/testdata/chain.c").CombinedOutput(); err != nil {
		t.Fatalf("gcc: %v: %s", err, out)
	}
	return bin
}

var chainRootFirst = []string{"main", "chain_a", "chain_b", "chain_cmp", "chain_c", "chain_leaf"}

// hasChain reports whether frames (root first) hold want in order with at
// least one frame between chain_b and chain_cmp (libc's qsort).
func hasChain(frames []string, want []string) bool {
	j, at := 0, map[string]int{}
	for i, f := range frames {
		if j < len(want) && f == want[j] {
			at[f] = i
			j++
		}
	}
	return j == len(want) && at["chain_cmp"]-at["chain_b"] > 1
}

// Without frame pointers, --unwind dwarf gives the whole chain, through
// libc, from _start down to the leaf, for at least 95% of the samples; perf
// record --call-graph dwarf sees the same chain.
func TestUnwindDWARFChainMatchesPerf(t *testing.T) {
	testenv.RequireBPF(t)
	bin := buildChain(t)
	path := captureWithFlags(t, []string{"--freq", "499", "--unwind", "dwarf"}, 3*time.Second, bin, "2")
	lines, _, man := foldedOf(t, path)
	var total, rooted, chained int64
	for _, l := range lines {
		if len(l.Frames) < 2 || filepath.Base(l.Frames[0]) != "chain" && !strings.HasPrefix(l.Frames[0], "chain") {
			continue
		}
		user := userFrames(l.Frames[1:])
		total += int64(l.Count)
		if len(user) > 0 && user[0] == "_start" {
			rooted += int64(l.Count)
		}
		if hasChain(user, chainRootFirst) {
			chained += int64(l.Count)
		}
	}
	t.Logf("samples %d, rooted at _start %d, full chain %d; drops %v; details %v", total, rooted, chained, man.Drops, probeDetails(man.Probes, "cpu"))
	if total < 300 {
		t.Fatalf("only %d samples of the chain program", total)
	}
	if float64(rooted) < 0.95*float64(total) {
		t.Errorf("%d of %d samples unwound to _start, want >= 95%%", rooted, total)
	}
	if float64(chained) < 0.90*float64(total) {
		t.Errorf("%d of %d samples hold the full chain", chained, total)
	}
	requireIncompleteCounted(t, man, total-rooted)
	d := probeDetails(man.Probes, "cpu")
	if d["unwind"] != "dwarf" || !strings.Contains(d["unwind.binaries"], "libc.so.6=dwarf") {
		t.Errorf("probe details do not record the unwinding decisions: %v", d)
	}

	// perf record --call-graph dwarf on the same workload.
	perf := testenv.RequireTool(t, "perf")
	data := filepath.Join(t.TempDir(), "perf.data")
	if out, err := exec.Command(perf, "record", "-q", "-F", "499", "--call-graph", "dwarf", "-o", data, "--", bin, "2").CombinedOutput(); err != nil {
		t.Fatalf("perf record: %v\n%s", err, out)
	}
	out, err := exec.Command(perf, "script", "-i", data, "-F", "comm,ip,sym").Output()
	if err != nil {
		t.Fatalf("perf script: %v", err)
	}
	var perfTotal, perfChained int
	for _, stack := range perfStacks(out) {
		perfTotal++
		rootFirst := make([]string, len(stack))
		for i, f := range stack {
			rootFirst[len(stack)-1-i] = f
		}
		if hasChain(rootFirst, chainRootFirst) {
			perfChained++
		}
	}
	t.Logf("perf: %d samples, %d with the full chain", perfTotal, perfChained)
	if perfTotal == 0 || float64(perfChained) < 0.9*float64(perfTotal) {
		t.Fatalf("perf itself did not see the chain (%d/%d): the comparison is void", perfChained, perfTotal)
	}
}

// requireIncompleteCounted checks that the samples which did not unwind
// to the root (unrooted of them in the test's workload) are counted: the
// cpu.unwind_<reason> drops add up to the walks the probe details call
// incomplete, cover the unrooted samples, and each is a warning the
// analysis shows.
func requireIncompleteCounted(t *testing.T, man *formats.Manifest, unrooted int64) {
	t.Helper()
	var counted uint64
	for k, v := range man.Drops {
		if strings.HasPrefix(k, "cpu.unwind_") {
			counted += v
		}
	}
	d := probeDetails(man.Probes, "cpu")
	walks, err1 := strconv.ParseUint(d["unwind.walks"], 10, 64)
	complete, err2 := strconv.ParseUint(d["unwind.complete"], 10, 64)
	if err1 != nil || err2 != nil || complete > walks {
		t.Fatalf("probe details lack the walk counts: %v", d)
	}
	if walks-complete != counted {
		t.Errorf("%d walks, %d complete, but the cpu.unwind_* drops count %d incomplete", walks, complete, counted)
	}
	if uint64(unrooted) > counted {
		t.Errorf("%d samples did not reach the root, only %d counted in the drops %v", unrooted, counted, man.Drops)
	}
	warnings := strings.Join(analyze.Warnings(man), "\n")
	for k, v := range man.Drops {
		if strings.HasPrefix(k, "cpu.unwind_") && v > 0 && !strings.Contains(warnings, fmt.Sprintf("%s: %d ", k, v)) {
			t.Errorf("drop %s=%d is not in the analysis warnings:\n%s", k, v, warnings)
		}
	}
}

// userFrames drops kernel frames (marked _[k]).
func userFrames(frames []string) []string {
	var out []string
	for _, f := range frames {
		if !strings.HasSuffix(f, "_[k]") {
			out = append(out, f)
		}
	}
	return out
}

func probeDetails(probes []formats.Probe, name string) map[string]string {
	for _, p := range probes {
		if p.Name == name {
			return p.Details
		}
	}
	return nil
}

// perfStacks parses `perf script -F comm,ip,sym` into leaf-first symbol
// lists, one per sample.
func perfStacks(out []byte) [][]string {
	var stacks [][]string
	var cur []string
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	flush := func() {
		if cur != nil {
			stacks = append(stacks, cur)
		}
		cur = nil
	}
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.TrimSpace(line) == "":
			flush()
		case strings.HasPrefix(line, "\t") || strings.HasPrefix(line, " "):
			f := strings.Fields(line)
			if len(f) >= 2 {
				sym := f[1]
				if i := strings.Index(sym, "+0x"); i > 0 {
					sym = sym[:i]
				}
				cur = append(cur, sym)
			}
		default:
			flush()
			cur = []string{}
		}
	}
	flush()
	return stacks
}

// nginx from the distribution is built without frame pointers: with
// --unwind dwarf its worker's stacks under load reach libc's start-up code
// (__libc_start_main) through main and the event loop, for >= 95% of the
// samples, as perf record --call-graph dwarf sees them.
func TestUnwindDWARFNginx(t *testing.T) {
	testenv.RequireBPF(t)
	wrk := testenv.RequireTool(t, "wrk")
	port := freePort(t)
	master := startNginx(t, t.TempDir(), port, "", "")
	load := func() {
		out, err := exec.Command(wrk, "-t1", "-c8", "-d2s", fmt.Sprintf("http://127.0.0.1:%d/index.html", port)).CombinedOutput()
		if err != nil {
			t.Errorf("wrk: %v\n%s", err, out)
		}
	}

	lines, man := runCPUCapture(t, []string{"--freq", "499", "--unwind", "dwarf"}, Options{Duration: time.Minute, PIDs: []uint32{uint32(master)}}, func() {
		load()
		time.Sleep(300 * time.Millisecond)
	})
	var total, rooted, worker int64
	for _, l := range lines {
		user := userFrames(l.Frames[1:])
		if len(user) == 0 {
			continue
		}
		total += int64(l.Count)
		if reachesStart(user) {
			rooted += int64(l.Count)
		}
		if indexOfFrame(user, "ngx_process_events_and_timers") >= 0 && indexOfFrame(user, "main") >= 0 {
			worker += int64(l.Count)
		}
	}
	if len(lines) > 0 {
		t.Logf("a stack: %s", strings.Join(lines[0].Frames, ";"))
	}
	t.Logf("nginx: %d samples with user frames, %d reach __libc_start_main, %d under main..ngx_process_events_and_timers; drops %v; details %v",
		total, rooted, worker, man.Drops, probeDetails(man.Probes, "cpu"))
	if total < 200 {
		t.Fatalf("only %d nginx samples", total)
	}
	if float64(rooted) < 0.95*float64(total) {
		t.Errorf("%d of %d nginx samples unwound to __libc_start_main, want >= 95%%", rooted, total)
	}
	if float64(worker) < 0.5*float64(total) {
		t.Errorf("only %d of %d samples under main..ngx_process_events_and_timers", worker, total)
	}
	requireIncompleteCounted(t, man, total-rooted)

	// perf record --call-graph dwarf on the same worker, same load.
	perf := testenv.RequireTool(t, "perf")
	data := filepath.Join(t.TempDir(), "perf.data")
	// perf -p follows the threads of one process: give it the worker.
	children, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", master, master))
	if err != nil || len(strings.Fields(string(children))) == 0 {
		t.Fatalf("no nginx worker: %v", err)
	}
	rec := exec.Command(perf, "record", "-q", "-F", "499", "--call-graph", "dwarf", "-o", data, "-p", strings.Fields(string(children))[0])
	if err := rec.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	load()
	rec.Process.Signal(os.Interrupt)
	rec.Wait() // exits through the signal; the data file is judged below
	out, err := exec.Command(perf, "script", "-i", data, "-F", "comm,ip,sym").Output()
	if err != nil {
		t.Fatalf("perf script: %v", err)
	}
	var perfTotal, perfRooted, perfWorker int
	for _, stack := range perfStacks(out) {
		if len(stack) == 0 {
			continue
		}
		perfTotal++
		if indexOfFrame(stack, "__libc_start_main") >= 0 || indexOfFrame(stack, "__libc_start_call_main") >= 0 {
			perfRooted++
		}
		if indexOfFrame(stack, "ngx_process_events_and_timers") >= 0 && indexOfFrame(stack, "main") >= 0 {
			perfWorker++
		}
	}
	t.Logf("perf: %d samples, %d reach libc start-up, %d under main..ngx_process_events_and_timers", perfTotal, perfRooted, perfWorker)
	if perfTotal == 0 || perfWorker == 0 {
		t.Fatalf("perf saw no nginx worker stacks: the comparison is void")
	}
	// Same shape: the share of samples under the event loop agrees within
	// 15 points (different sampling instants, same workload).
	ours, theirs := 100*float64(worker)/float64(total), 100*float64(perfWorker)/float64(perfTotal)
	if d := ours - theirs; d > 15 || d < -15 {
		t.Errorf("under main..ngx_process_events_and_timers: bpfsnap %.1f%%, perf %.1f%%", ours, theirs)
	}
}

// reachesStart reports whether a root-first user stack starts in libc's
// start-up code (the nginx binary is stripped, so _start has no name).
func reachesStart(rootFirst []string) bool {
	for i := 0; i < len(rootFirst) && i < 3; i++ {
		if rootFirst[i] == "__libc_start_main" {
			return true
		}
	}
	return false
}

func indexOfFrame(frames []string, name string) int {
	for i, f := range frames {
		if f == name {
			return i
		}
	}
	return -1
}

// Stack copies hold whatever the program keeps on its stack: they reach the
// archive only with --keep-stack-bytes.
func TestUnwindStackBytesStayOnTheNode(t *testing.T) {
	testenv.RequireBPF(t)
	bin := buildChain(t)
	// chain_a overwrites pad[n%100] (n = 3 here) after copying the secret.
	secret := []byte("STACK-SECRET-7f3a")
	count := func(path string) (rows, withSecret int, hasTable bool) {
		a, err := formats.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		defer a.Close()
		if !a.HasTable(formats.TableStackBytes) {
			return 0, 0, false
		}
		all, err := formats.ReadAll[formats.StackBytes](a, formats.TableStackBytes)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range all {
			if bytes.Contains(r.Bytes, secret) {
				withSecret++
			}
		}
		return len(all), withSecret, true
	}
	kept := captureWithFlags(t, []string{"--freq", "199", "--unwind", "dwarf", "--keep-stack-bytes"}, 2*time.Second, bin, "1")
	rows, withSecret, _ := count(kept)
	if rows == 0 || withSecret == 0 {
		t.Fatalf("--keep-stack-bytes: %d rows, %d with the stack secret (the test needs it on the copied stack)", rows, withSecret)
	}
	dflt := captureWithFlags(t, []string{"--freq", "199", "--unwind", "dwarf"}, 2*time.Second, bin, "1")
	if rows, _, has := count(dflt); has || rows > 0 {
		t.Fatalf("without --keep-stack-bytes the archive has a %s table (%d rows)", formats.TableStackBytes, rows)
	}
	raw, err := os.ReadFile(dflt)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(raw, secret) {
		t.Fatal("the stack secret is in the archive file")
	}
}

// inlineSource is the symbolizer's test program: main -> run -> mix
// (always_inline) -> step (always_inline) -> spin.
const inlineSource = "../internal/symbolize/testdata/inline.c"

// Functions inlined into their caller (always_inline, -O2 -g) appear as
// frames of their own between the caller and their callee, marked inlined,
// each with the line of the call it made, with frame pointers and with
// DWARF unwinding; every frame chain of the program's code is the one
// binutils' addr2line -i gives for the same address.
func TestInlinedFramesInCapture(t *testing.T) {
	testenv.RequireBPF(t)
	testenv.RequireTool(t, "gcc")
	a2l := testenv.RequireTool(t, "addr2line")
	lineSpin := testenv.SourceLine(t, inlineSource, "INLINE-CALL-SPIN")
	lineStep := testenv.SourceLine(t, inlineSource, "INLINE-CALL-STEP")
	lineMix := testenv.SourceLine(t, inlineSource, "INLINE-CALL-MIX")
	stepFirst := testenv.SourceLine(t, inlineSource, "unsigned long step(unsigned long x)")
	for _, mode := range []struct {
		unwind string
		cflags []string
	}{
		{"fp", []string{"-fno-omit-frame-pointer"}},
		{"dwarf", []string{"-fomit-frame-pointer"}},
	} {
		t.Run(mode.unwind, func(t *testing.T) {
			bin := filepath.Join(t.TempDir(), "inline")
			args := append(append([]string{"-O2", "-g"}, mode.cflags...), "-o", bin, inlineSource)
			if out, err := exec.Command("gcc", args...).CombinedOutput(); err != nil {
				t.Fatalf("gcc: %v: %s", err, out)
			}
			path := captureWithFlags(t, []string{"--freq", "499", "--unwind", mode.unwind}, 3*time.Second, bin, "2")
			_, prof, _ := foldedOf(t, path)
			var total, inInline, chained, spinLeaf, stepLeaf uint64
			var others []string // a few stacks without the chain, for the failure message
			physical := map[uint64]*formats.Frame{}
			expanded := map[uint64][]*formats.Frame{} // physical frame id -> its frames, innermost first
			for _, s := range prof.Stacks {
				if prof.ProcessName(s.PID) != "inline" {
					continue
				}
				var user []*formats.Frame // root first
				for i := len(s.Frames) - 1; i >= 0; i-- {
					if !s.Frames[i].Kernel {
						user = append(user, s.Frames[i])
					}
				}
				total += s.Count
				// Remember how each code address of the binary expanded.
				var pending []*formats.Frame
				for i := len(user) - 1; i >= 0; i-- { // leaf first
					f := user[i]
					pending = append(pending, f)
					if !f.Inlined {
						if f.Module == bin {
							physical[f.FrameID] = f
							expanded[f.FrameID] = pending
						}
						pending = nil
					}
				}
				k, under := -1, false
				for i, f := range user {
					if f.Function == "step" || f.Function == "mix" || f.Function == "spin" {
						inInline += s.Count
						under = true
						if f.Function == "mix" {
							k = i
						}
						break
					}
				}
				if k < 2 || k+1 >= len(user) || user[k-2].Function != "main" || user[k-1].Function != "run" || user[k-1].Inlined ||
					!user[k].Inlined || user[k+1].Function != "step" || !user[k+1].Inlined {
					if len(others) < 5 && under {
						var names []string
						for _, f := range user {
							names = append(names, analyze.FrameName(f))
						}
						others = append(others, fmt.Sprintf("%d %s", s.Count, strings.Join(names, ";")))
					}
					continue
				}
				run, mix, step := user[k-1], user[k], user[k+1]
				if filepath.Base(run.File) != "inline.c" || int(run.Line) != lineMix || int(mix.Line) != lineStep {
					t.Errorf("call lines: run at %s:%d (want %d), mix at %d (want %d)", run.File, run.Line, lineMix, mix.Line, lineStep)
					continue
				}
				chained += s.Count
				switch {
				case k+2 < len(user) && user[k+2].Function == "spin" && !user[k+2].Inlined:
					if int(step.Line) != lineSpin {
						t.Errorf("step calls spin from line %d, want %d", step.Line, lineSpin)
					}
					spinLeaf += s.Count
				case k+2 == len(user):
					// step's own loop, right after the call of spin.
					if int(step.Line) <= stepFirst || int(step.Line) > stepFirst+5 {
						t.Errorf("leaf in step at line %d, not in step's body (%d..)", step.Line, stepFirst)
					}
					stepLeaf += s.Count
				}
			}
			t.Logf("%s: %d samples, %d in inlined code or below it, %d with main;run;mix_[i];step_[i] (%d then spin, %d in step itself)",
				mode.unwind, total, inInline, chained, spinLeaf, stepLeaf)
			if spinLeaf < 20 || stepLeaf < 20 {
				t.Fatalf("too few samples under the inlined functions (%d in spin, %d in step); other stacks:\n%s", spinLeaf, stepLeaf, strings.Join(others, "\n"))
			}
			if float64(chained) < 0.9*float64(inInline) {
				t.Errorf("only %d of %d samples in step/mix/spin have main;run;mix_[i];step_[i]; others:\n%s", chained, inInline, strings.Join(others, "\n"))
			}
			// The oracle: addr2line -i on every code address of the
			// binary the stacks hold.
			ef, err := elf.Open(bin)
			if err != nil {
				t.Fatal(err)
			}
			defer ef.Close()
			compared := 0
			for id, f := range physical {
				var vaddr uint64
				for _, p := range ef.Progs {
					if p.Type == elf.PT_LOAD && f.FileOffset >= p.Off && f.FileOffset < p.Off+p.Filesz {
						vaddr = f.FileOffset - p.Off + p.Vaddr
					}
				}
				out, err := exec.Command(a2l, "-i", "-f", "-e", bin, fmt.Sprintf("0x%x", vaddr)).Output()
				if err != nil {
					t.Fatalf("addr2line: %v", err)
				}
				var want []string
				ls := strings.Split(strings.TrimSpace(string(out)), "\n")
				for i := 0; i+1 < len(ls); i += 2 {
					pos, _, _ := strings.Cut(ls[i+1], " (discriminator")
					want = append(want, ls[i]+" "+filepath.Base(pos))
				}
				var got []string
				for _, g := range expanded[id] {
					pos := "??:?" // as addr2line says it
					if g.File != "" {
						pos = fmt.Sprintf("%s:%d", filepath.Base(g.File), g.Line)
					}
					got = append(got, g.Function+" "+pos)
				}
				if strings.Join(got, " | ") != strings.Join(want, " | ") {
					t.Errorf("0x%x: bpfsnap %q, addr2line -i %q", vaddr, got, want)
				}
				compared++
			}
			t.Logf("%d code addresses of the program compared with addr2line -i", compared)
		})
	}
}
