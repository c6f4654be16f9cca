//go:build linux

package capture

import (
	"bufio"
	"bytes"
	"context"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"

	"github.com/bpfsnap/bpfsnap/formats"
	"github.com/bpfsnap/bpfsnap/internal/testenv"
)

// captureWithFlags records with the cpu probe set and extra capture flags.
func captureWithFlags(t *testing.T, flags []string, duration time.Duration, argv ...string) string {
	t.Helper()
	sets := NewProbeSets()
	fs := pflag.NewFlagSet("capture", pflag.ContinueOnError)
	for _, s := range sets {
		s.BindFlags(fs)
	}
	if err := fs.Parse(flags); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "cpu.bpfsnap")
	if _, err := Run(context.Background(), Options{Output: out, Duration: duration, Probes: []string{"cpu"}, Sets: sets, Command: argv, Version: "test"}); err != nil {
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
		total += l.Value
		if len(user) > 0 && user[0] == "_start" {
			rooted += l.Value
		}
		if hasChain(user, chainRootFirst) {
			chained += l.Value
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
