package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
)

func init() {
	benchmarks = append(benchmarks, benchmark{"memory growth", benchGrowth})
}

// growthWorkload is fault-heavy C: each round maps 64 MiB, touches every
// page (16,384 page faults, each making a fresh 4 KiB page resident) and
// unmaps it. It writes its own CPU time in ns to argv[2] (process CPU
// time: the faults' kernel time and the probes' BPF time are charged to
// it; wall time on this shared machine is noise) and its fault count to
// argv[3].
const growthWorkload = `#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <time.h>
#define SIZE (64UL << 20)
__attribute__((noinline)) void touch(volatile char *p) { for (unsigned long i = 0; i < SIZE; i += 4096) p[i] = 1; }
int main(int argc, char **argv) {
	int rounds = atoi(argv[1]);
	struct timespec a, b;
	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &a);
	for (int r = 0; r < rounds; r++) {
		char *p = mmap(NULL, SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		madvise(p, SIZE, MADV_NOHUGEPAGE);
		touch(p);
		munmap(p, SIZE);
	}
	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &b);
	FILE *f = fopen(argv[2], "w");
	fprintf(f, "%lld\n", (long long)(b.tv_sec - a.tv_sec) * 1000000000LL + (b.tv_nsec - a.tv_nsec));
	fclose(f);
	f = fopen(argv[3], "w");
	fprintf(f, "%lu\n", (unsigned long)rounds * (SIZE / 4096));
	fclose(f);
	return 0;
}
`

// growthRounds: 12 rounds are ~197k page faults, ~3 s of CPU per run on
// this VM (a fault costs ~14 µs here: a nested guest); five variants ×
// Reps runs keep the row at a few minutes.
const growthRounds = "12"

// benchGrowth: the fault-heavy workload bare, under capture -p growth
// (default byte sampling, and every growth event), and under perf record
// -e page-faults -g (its default: ~4000 samples/s), interleaved. Per
// fault: the CPU the probes add to the workload, over its fault count.
func benchGrowth(env *Env) ([]Row, error) {
	src := filepath.Join(env.Dir, "growth.c")
	bin := filepath.Join(env.Dir, "growth-work")
	if err := os.WriteFile(src, []byte(growthWorkload), 0o644); err != nil {
		return nil, err
	}
	if out, err := exec.Command("gcc", "-O2", "-o", bin, src).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("gcc: %v: %s", err, out)
	}
	timing, faults := filepath.Join(env.Dir, "growth-ns"), filepath.Join(env.Dir, "growth-faults")
	readNum := func(p string) (float64, error) {
		b, err := os.ReadFile(p)
		if err != nil {
			return 0, fmt.Errorf("%s: not written", filepath.Base(p))
		}
		return strconv.ParseFloat(strings.TrimSpace(string(b)), 64)
	}
	run := func(argv ...string) (ns, n float64, err error) {
		os.Remove(timing)
		if out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput(); err != nil {
			return 0, 0, fmt.Errorf("%s: %v: %s", strings.Join(argv, " "), err, out)
		}
		if ns, err = readNum(timing); err != nil {
			return 0, 0, err
		}
		n, err = readNum(faults)
		return ns, n, err
	}
	work := []string{bin, growthRounds, timing, faults}
	type variant struct {
		name     string
		argv     func(out string) []string
		slow     []float64 // % over bare
		perFault []float64 // ns added per fault
	}
	capture := func(extra ...string) func(string) []string {
		return func(out string) []string {
			a := append([]string{env.Bpfsnap, "capture", "-p", "growth", "-d", "5m", "-o", out}, extra...)
			return append(append(a, "--"), work...)
		}
	}
	variants := []*variant{
		{name: "bpfsnap -p growth", argv: capture()},
		{name: "bpfsnap -p growth --growth-sample 0", argv: capture("--growth-sample", "0")},
		{name: "bpfsnap -p growth --growth-unwind fp", argv: capture("--growth-unwind", "fp")},
		{name: "perf record -e page-faults -g", argv: func(out string) []string {
			return append([]string{"perf", "record", "-q", "-e", "page-faults", "-g", "-o", out, "--"}, work...)
		}},
	}
	var bare []float64
	for i := 0; i < env.Reps; i++ {
		b, _, err := run(work...)
		if err != nil {
			return nil, err
		}
		bare = append(bare, b)
		for _, v := range variants {
			out := filepath.Join(env.Dir, fmt.Sprintf("growth-%d.out", i))
			ns, n, err := run(v.argv(out)...)
			os.Remove(out)
			if err != nil {
				return nil, err
			}
			v.slow = append(v.slow, 100*(ns/b-1))
			v.perFault = append(v.perFault, (ns-b)/n)
		}
	}
	how := fmt.Sprintf("C mapping, touching and unmapping 64 MiB %s times (%s ms of CPU bare, ~197k faults), workload CPU time (faults' kernel time included) vs bare, %d interleaved runs",
		growthRounds, stats(scale(bare, 1e-6)).Format("%.0f"), env.Reps)
	def, all, fp, perf := variants[0], variants[1], variants[2], variants[3]
	return []Row{
		{Name: "memory growth: workload slowdown, -p growth (peer: perf record -e page-faults -g)",
			Result: stats(def.slow).Format("%.1f %%"), Peer: stats(perf.slow).Format("%.1f %%"), Note: how + "; default one sample per 64 KiB, 8 KiB stack copies"},
		{Name: "memory growth: cost per page fault, -p growth (peer: perf record -e page-faults -g)",
			Result: stats(def.perFault).Format("%.0f ns"), Peer: stats(perf.perFault).Format("%.0f ns"), Note: "(CPU time − bare) / faults, same runs"},
		{Name: "memory growth: cost per page fault, --growth-sample 0 (every fault recorded with its stack)",
			Result: stats(all.perFault).Format("%.0f ns"), Note: "same runs; ring drops counted in growth.ringbuf_full"},
		{Name: "memory growth: cost per page fault, --growth-unwind fp (no stack copy)",
			Result: stats(fp.perFault).Format("%.0f ns"), Note: "same runs"},
	}, nil
}
