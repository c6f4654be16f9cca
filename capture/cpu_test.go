//go:build linux

package capture

import (
	"context"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"

	"github.com/bpfsnap/bpfsnap/analyze"
	"github.com/bpfsnap/bpfsnap/formats"
	"github.com/bpfsnap/bpfsnap/internal/testenv"
)

// buildCPUBurn compiles the demo workload with frame pointers.
func buildCPUBurn(t *testing.T) string {
	t.Helper()
	testenv.RequireTool(t, "gcc")
	bin := filepath.Join(t.TempDir(), "cpuburn")
	if out, err := exec.Command("gcc", "-O1", "-fno-omit-frame-pointer", "-o", bin, "../testdata/demo/cpuburn.c").CombinedOutput(); err != nil {
		t.Fatalf("gcc: %v: %s", err, out)
	}
	return bin
}

// captureCPU records a command with the cpu probe set at freq Hz.
func captureCPU(t *testing.T, freq string, duration time.Duration, argv ...string) string {
	t.Helper()
	sets := NewProbeSets()
	fs := pflag.NewFlagSet("capture", pflag.ContinueOnError)
	for _, s := range sets {
		s.BindFlags(fs)
	}
	if err := fs.Parse([]string{"--freq", freq}); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "cpu.bpfsnap")
	_, err := Run(context.Background(), Options{Output: out, Duration: duration, Probes: []string{"cpu"}, Sets: sets, Command: argv, Version: "test"})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func foldedOf(t *testing.T, path string) ([]analyze.FoldedStack, *analyze.CPUProfile, *formats.Manifest) {
	t.Helper()
	a, err := formats.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	prof, err := analyze.LoadCPU(a, analyze.Options{})
	if err != nil {
		t.Fatalf("cpu profile: %v", err)
	}
	return prof.Folded(analyze.FoldOptions{}), prof, a.Manifest()
}

// foldedText is the folded output, for failure messages.
func foldedText(lines []analyze.FoldedStack) string {
	var b strings.Builder
	analyze.WriteFolded(&b, lines)
	return b.String()
}

// samplesUnder sums folded lines whose frames contain caller directly
// followed by fn (caller is fn's parent).
func samplesUnder(lines []analyze.FoldedStack, caller, fn string) uint64 {
	var n uint64
	for _, l := range lines {
		for i := 1; i < len(l.Frames); i++ {
			if l.Frames[i] == fn && l.Frames[i-1] == caller {
				n += l.Count
				break
			}
		}
	}
	return n
}

// Two functions that split CPU 3:1 under one caller are both found under
// it, in that ratio.
func TestCPUKnownRatio(t *testing.T) {
	testenv.RequireBPF(t)
	bin := buildCPUBurn(t)
	path := captureCPU(t, "999", 30*time.Second, bin, "2500")
	lines, prof, m := foldedOf(t, path)
	a, b := samplesUnder(lines, "work", "hot_a"), samplesUnder(lines, "work", "hot_b")
	if a+b < 1000 {
		t.Fatalf("only %d+%d samples of hot_a/hot_b under work (total %d); folded:\n%s", a, b, prof.Samples, foldedText(lines))
	}
	share := 100 * float64(a) / float64(a+b)
	t.Logf("hot_a %d, hot_b %d samples: %.1f%% / %.1f%%; drops %v", a, b, share, 100-share, m.Drops)
	if math.Abs(share-75) > 3 {
		t.Errorf("hot_a share %.1f%%, want 75%% ± 3", share)
	}
	if samplesUnder(lines, "main", "work") < a+b {
		t.Errorf("work is not under main in every stack")
	}
}

// A Go program's hot function is found by name (Go keeps frame pointers;
// names come from pclntab, so a stripped binary works too).
func TestCPUGoHotFunction(t *testing.T) {
	testenv.RequireBPF(t)
	dir := t.TempDir()
	src := `package main

import "os"

//go:noinline
func spinHot(n int) int {
	s := 0
	for i := 0; i < n; i++ {
		s += i * i % 7
	}
	return s
}

func main() {
	s := 0
	for r := 0; r < 60; r++ {
		s += spinHot(20_000_000)
	}
	os.Exit(s & 0)
}
`
	os.WriteFile(filepath.Join(dir, "main.go"), []byte(src), 0o644)
	os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module spin\n\ngo 1.22\n"), 0o644)
	bin := filepath.Join(dir, "spin")
	cmd := exec.Command("go", "build", "-ldflags=-s -w", "-o", bin, ".")
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v: %s", err, out)
	}
	path := captureCPU(t, "499", 30*time.Second, bin)
	_, prof, _ := foldedOf(t, path)
	sum := prof.Summarize()
	if len(sum.Functions) == 0 || sum.Functions[0].Name != "main.spinHot" || sum.Functions[0].SelfPct < 80 {
		t.Fatalf("top functions of a stripped Go binary: %+v", sum.Functions[:min(5, len(sum.Functions))])
	}
	// spinHot is a frameless leaf (Go omits the frame pointer setup for
	// those), so a frame-pointer walk skips its direct caller; the stack
	// still reaches runtime.main.
	var root bool
	for _, f := range sum.Functions {
		if f.Name == "runtime.main" && f.TotalPct > 80 {
			root = true
		}
	}
	if !root {
		t.Errorf("the hot function's stacks do not reach runtime.main: %+v", sum.Functions)
	}
}

// A process that runs for about a second and exits long before the end of
// the window is still fully symbolized.
func TestCPUShortLivedProcessSymbolized(t *testing.T) {
	testenv.RequireBPF(t)
	bin := buildCPUBurn(t)
	path := captureCPU(t, "499", 30*time.Second, "/bin/sh", "-c", "sleep 0.5; "+bin+" 600; sleep 2.5")
	lines, _, m := foldedOf(t, path)
	var burn uint64
	for _, l := range lines {
		if l.Frames[0] != "cpuburn" {
			continue
		}
		burn += l.Count
		if slices.Contains(l.Frames, "__x64_sys_execve_[k]") {
			// Sampled inside the exec: the user registers are still the
			// shell's, in an address space that is gone ([unknown]).
			continue
		}
		for _, f := range l.Frames[1:] {
			if strings.HasPrefix(f, "cpuburn+0x") || strings.HasPrefix(f, "[unknown]") {
				t.Errorf("unresolved frame %q of the exited process in %v", f, l.Frames)
			}
		}
	}
	if burn < 200 {
		t.Fatalf("only %d samples of the short-lived process:\n%s", burn, foldedText(lines))
	}
	if m.Window.Duration() < 3*time.Second {
		t.Errorf("window %s ended before the process had long exited", m.Window.Duration())
	}
}

// perf record -g and bpfsnap agree on the top functions of one workload.
func TestCPUAgreesWithPerf(t *testing.T) {
	testenv.RequireBPF(t)
	perf := testenv.RequireTool(t, "perf")
	bin := buildCPUBurn(t)
	data := filepath.Join(t.TempDir(), "perf.data")
	if out, err := exec.Command(perf, "record", "-F", "499", "-g", "-o", data, "--", bin, "2000").CombinedOutput(); err != nil {
		t.Fatalf("perf record: %v: %s", err, out)
	}
	rep, err := exec.Command(perf, "report", "-i", data, "--stdio", "--no-children", "-q", "--sort", "sym", "-g", "none").Output()
	if err != nil {
		t.Fatalf("perf report: %v", err)
	}
	perfTop := topSymbols(string(rep), 2)

	path := captureCPU(t, "499", 30*time.Second, bin, "2000")
	_, prof, _ := foldedOf(t, path)
	sum := prof.Summarize()
	var ours []string
	for _, f := range sum.Functions[:2] {
		ours = append(ours, f.Name)
	}
	sort.Strings(ours)
	t.Logf("perf top: %v, bpfsnap top: %v", perfTop, ours)
	if strings.Join(perfTop, ",") != strings.Join(ours, ",") || perfTop[0] != "hot_a" {
		t.Errorf("perf says %v, bpfsnap says %v", perfTop, ours)
	}
}

var perfLine = regexp.MustCompile(`^\s*([0-9.]+)%\s+\[\.\]\s+(\S+)`)

// topSymbols returns the n user-space symbols with the most self samples
// in `perf report --stdio` output, sorted by name.
func topSymbols(report string, n int) []string {
	type sym struct {
		name string
		pct  float64
	}
	var syms []sym
	for _, l := range strings.Split(report, "\n") {
		if m := perfLine.FindStringSubmatch(l); m != nil {
			p, _ := strconv.ParseFloat(m[1], 64)
			syms = append(syms, sym{m[2], p})
		}
	}
	sort.Slice(syms, func(i, j int) bool { return syms[i].pct > syms[j].pct })
	var out []string
	for i := 0; i < n && i < len(syms); i++ {
		out = append(out, syms[i].name)
	}
	sort.Strings(out)
	return out
}
