package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
)

func init() {
	benchmarks = append(benchmarks, benchmark{"dwarf unwinding", benchUnwind})
}

// unwindWorkload is CPU-bound C without frame pointers whose hot path runs
// through libc (qsort calls back into the program), so frame-pointer walks
// break and DWARF unwinding has work to do. It prints its own CPU time in
// ns (CPU time, not wall time: this machine is shared, and other tenants
// move wall time by tens of percent) (to the file argv[2]: the recorders print on stdout too), which
// excludes the recorders' start-up and tear-down.
const unwindWorkload = `#include <stdio.h>
#include <stdlib.h>
#include <time.h>
volatile unsigned long sink;
__attribute__((noinline)) void leaf(int n) { for (int i = 0; i < n; i++) sink += i; }
__attribute__((noinline)) int mid(int x) { volatile int b[8]; b[x & 7] = x; leaf(20000); return b[x & 7]; }
__attribute__((noinline)) int cmp(const void *p, const void *q) { return mid(*(const int *)p) - *(const int *)q; }
__attribute__((noinline)) void sorter(int seed) { int v[16]; for (int i = 0; i < 16; i++) v[i] = (seed * 7919 + i * 104729) % 1000; qsort(v, 16, sizeof v[0], cmp); sink += v[0]; }
int main(int argc, char **argv) {
	int rounds = argc > 1 ? atoi(argv[1]) : 1500;
	struct timespec a, b;
	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &a);
	for (int r = 0; r < rounds; r++) sorter(r);
	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &b);
	FILE *f = argc > 2 ? fopen(argv[2], "w") : stdout;
	fprintf(f, "%lld\n", (long long)(b.tv_sec - a.tv_sec) * 1000000000LL + (b.tv_nsec - a.tv_nsec));
	return 0;
}
`

// unwindRounds sizes the workload: ~7 s of CPU per run on this machine,
// enough for ~7000 samples at 999 Hz; four variants × Reps runs of it keep
// the row under four minutes.
const unwindRounds = "3750"

// benchUnwind: run time of the workload bare, under bpfsnap capture -p cpu
// (--unwind dwarf and fp) and under perf record --call-graph dwarf, all at
// 999 Hz, interleaved; plus output bytes per sample of each recorder.
func benchUnwind(env *Env) ([]Row, error) {
	src := filepath.Join(env.Dir, "unwind.c")
	bin := filepath.Join(env.Dir, "unwind-work")
	if err := os.WriteFile(src, []byte(unwindWorkload), 0o644); err != nil {
		return nil, err
	}
	if out, err := exec.Command("gcc", "-O2", "-fomit-frame-pointer", "-o", bin, src).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("gcc: %v: %s", err, out)
	}
	const freq = "999"
	timing := filepath.Join(env.Dir, "unwind-ns")
	runNs := func(argv ...string) (float64, error) {
		os.Remove(timing)
		if out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput(); err != nil {
			return 0, fmt.Errorf("%s: %v: %s", strings.Join(argv, " "), err, out)
		}
		b, err := os.ReadFile(timing)
		if err != nil {
			return 0, fmt.Errorf("%s: no timing written", argv[0])
		}
		return strconv.ParseFloat(strings.TrimSpace(string(b)), 64)
	}
	type variant struct {
		name  string
		argv  func(out string) []string
		size  func(out string) (bytes, samples float64, err error)
		ratio []float64
		bps   []float64
	}
	var unwindUs []float64 // user-space unwinding CPU per sample, from the manifest
	bpfsnapSize := func(out string) (float64, float64, error) {
		if js, err := exec.Command(env.Bpfsnap, "inspect", "--json", out).Output(); err == nil {
			var in struct {
				Manifest struct {
					Probes []struct {
						Name    string            `json:"name"`
						Details map[string]string `json:"details"`
					} `json:"probes"`
				} `json:"manifest"`
			}
			if json.Unmarshal(js, &in) == nil {
				for _, p := range in.Manifest.Probes {
					us, _ := strconv.ParseFloat(p.Details["unwind.user_cpu_us"], 64)
					walks, _ := strconv.ParseFloat(p.Details["unwind.walks"], 64)
					if p.Name == "cpu" && walks > 0 {
						unwindUs = append(unwindUs, us/walks)
					}
				}
			}
		}
		st, err := os.Stat(out)
		if err != nil {
			return 0, 0, err
		}
		js, err := exec.Command(env.Bpfsnap, "analyze", "--json", out).Output()
		if err != nil {
			return 0, 0, fmt.Errorf("analyze: %v", err)
		}
		var sum struct {
			CPU struct {
				Samples float64 `json:"samples"`
			} `json:"cpu"`
		}
		if err := json.Unmarshal(js, &sum); err != nil {
			return 0, 0, err
		}
		return float64(st.Size()), sum.CPU.Samples, nil
	}
	variants := []*variant{
		{name: "bpfsnap --unwind dwarf", argv: func(out string) []string {
			return []string{env.Bpfsnap, "capture", "-p", "cpu", "--freq", freq, "--unwind", "dwarf", "-d", "5m", "-o", out, "--", bin, unwindRounds, timing}
		}, size: bpfsnapSize},
		{name: "bpfsnap --unwind fp", argv: func(out string) []string {
			return []string{env.Bpfsnap, "capture", "-p", "cpu", "--freq", freq, "--unwind", "fp", "-d", "5m", "-o", out, "--", bin, unwindRounds, timing}
		}, size: bpfsnapSize},
		{name: "perf record --call-graph dwarf", argv: func(out string) []string {
			return []string{"perf", "record", "-q", "-F", freq, "--call-graph", "dwarf", "-o", out, "--", bin, unwindRounds, timing}
		}, size: func(out string) (float64, float64, error) {
			st, err := os.Stat(out)
			if err != nil {
				return 0, 0, err
			}
			script, err := exec.Command("perf", "script", "-i", out, "-F", "time").Output()
			if err != nil {
				return 0, 0, fmt.Errorf("perf script: %v", err)
			}
			return float64(st.Size()), float64(strings.Count(string(script), "\n")), nil
		}},
	}
	var bare []float64
	for i := 0; i < env.Reps; i++ {
		b, err := runNs(bin, unwindRounds, timing)
		if err != nil {
			return nil, err
		}
		bare = append(bare, b)
		for _, v := range variants {
			out := filepath.Join(env.Dir, fmt.Sprintf("unwind-%d.out", i))
			ns, err := runNs(v.argv(out)...)
			if err != nil {
				return nil, err
			}
			v.ratio = append(v.ratio, ns/b-1)
			bytes, samples, err := v.size(out)
			os.Remove(out)
			if err != nil {
				return nil, err
			}
			if samples > 0 {
				v.bps = append(v.bps, bytes/samples)
			}
		}
	}
	pct := func(v *variant) Stats {
		out := make([]float64, len(v.ratio))
		for i, r := range v.ratio {
			out[i] = 100 * r
		}
		return stats(out)
	}
	dwarf, fp, perf := variants[0], variants[1], variants[2]
	how := fmt.Sprintf("-O2 -fomit-frame-pointer C through qsort, %s Hz, workload CPU time vs bare (%s ms), %d interleaved runs", freq, stats(scale(bare, 1e-6)).Format("%.0f"), env.Reps)
	rows := []Row{
		{Name: "dwarf unwinding: workload slowdown, --unwind dwarf (peer: perf record --call-graph dwarf)",
			Result: pct(dwarf).Format("%.1f %%"), Peer: pct(perf).Format("%.1f %%"), Goal: "≤ 5 %", Met: yesNo(pct(dwarf).Median <= 5), Note: how},
		{Name: "dwarf unwinding: workload slowdown, --unwind fp (no stack copy)", Result: pct(fp).Format("%.1f %%"), Note: how},
		{Name: "dwarf unwinding: output bytes per sample, --unwind dwarf (peer: perf.data)",
			Result: stats(dwarf.bps).Format("%.0f"), Peer: stats(perf.bps).Format("%.0f"), Note: "archive size / samples; stack bytes are unwound on the node and never stored"},
		{Name: "dwarf unwinding: recorder CPU per sample to unwind 8 KiB of stack (µs)", Result: stats(unwindUs).Format("%.1f"),
			Note: "manifest unwind.user_cpu_us / unwind.walks (Go CFI walk + stack dedup, in the recorder, not in the workload)"},
	}
	return rows, nil
}

func scale(xs []float64, f float64) []float64 {
	out := make([]float64, len(xs))
	for i, x := range xs {
		out[i] = x * f
	}
	return out
}

func goalIf(ok bool) string {
	if ok {
		return "≤ 5 %"
	}
	return ""
}
