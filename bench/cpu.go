package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func init() {
	benchmarks = append(benchmarks, benchmark{"cpu profiling overhead", benchCPU})
}

// benchCPU: the cost of sampling on a CPU-bound workload (testdata's
// cpuburn, a fixed amount of work): its run time bare, under a whole-host
// `capture -p cpu` and under `perf record -g` at the same frequency, run
// interleaved; and the bytes each tool stores per sample.
func benchCPU(env *Env) ([]Row, error) {
	burn := filepath.Join(env.Dir, "cpuburn")
	if out, err := exec.Command("gcc", "-O1", "-fno-omit-frame-pointer", "-o", burn, "testdata/demo/cpuburn.c").CombinedOutput(); err != nil {
		return nil, fmt.Errorf("gcc: %v: %s", err, out)
	}
	const rounds = "1200" // ~10 s of work on this VM: 24 runs of it are most of the harness time
	timed := func(argv ...string) (float64, error) {
		start := time.Now()
		out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput()
		if err != nil {
			return 0, fmt.Errorf("%v: %v: %s", argv, err, out)
		}
		return time.Since(start).Seconds(), nil
	}
	var rows []Row
	for _, hz := range []string{"99", "999"} {
		var ours, perfs, oursBytes, perfBytes []float64
		for i := 0; i < env.Reps; i++ {
			bare, err := timed(burn, rounds)
			if err != nil {
				return nil, err
			}
			// bpfsnap: a whole-host capture running around the workload.
			out := filepath.Join(env.Dir, "cpu.bpfsnap")
			os.Remove(out)
			capture := exec.Command(env.Bpfsnap, "capture", "-p", "cpu", "--freq", hz, "-d", "10m", "-o", out)
			if err := capture.Start(); err != nil {
				return nil, err
			}
			time.Sleep(1500 * time.Millisecond)
			with, err := timed(burn, rounds)
			capture.Process.Signal(syscall.SIGINT)
			capture.Wait()
			if err != nil {
				return nil, err
			}
			samples, size := archiveSamples(env.Bpfsnap, out)
			// perf record -g of the workload alone (its usual use).
			data := filepath.Join(env.Dir, "perf.data")
			withPerf, err := timed("perf", "record", "-q", "-F", hz, "-g", "-o", data, "--", burn, rounds)
			if err != nil {
				return nil, err
			}
			perfSamples := perfSampleCount(data)
			st, _ := os.Stat(data)
			ours = append(ours, bare/with)
			perfs = append(perfs, bare/withPerf)
			if samples > 0 && perfSamples > 0 && st != nil {
				oursBytes = append(oursBytes, float64(size)/float64(samples))
				perfBytes = append(perfBytes, float64(st.Size())/float64(perfSamples))
			}
		}
		o, p := stats(ours), stats(perfs)
		rows = append(rows, Row{
			Name:   "CPU profiling at " + hz + " Hz: work rate kept",
			Result: o.Format("%.3f"), Peer: "perf record -g: " + p.Format("%.3f"),
			Goal: map[string]string{"99": "overhead < 1% (≥ 0.99)"}[hz], Met: map[bool]string{true: yesNo(o.Median >= 0.99)}[hz == "99"],
			Note: "cpuburn " + rounds + " rounds, run time bare / under capture; whole-host capture vs perf on the workload only",
		})
		ob, pb := stats(oursBytes), stats(perfBytes)
		rows = append(rows, Row{
			Name:   "CPU profiling at " + hz + " Hz: bytes per sample",
			Result: ob.Format("%.1f"), Peer: "perf.data: " + pb.Format("%.1f"),
			Goal: "smaller than perf.data", Met: yesNo(ob.Median < pb.Median),
			Note: "archive size (all tables, whole host) / cpu_samples rows; perf.data size / samples in perf report",
		})
	}
	return rows, nil
}

// archiveSamples returns the cpu_samples rows and the file size of an archive.
func archiveSamples(bin, path string) (int64, int64) {
	out, err := exec.Command(bin, "inspect", "--json", path).Output()
	if err != nil {
		return 0, 0
	}
	// "cpu_samples": N in the manifest's table counts.
	s := string(out)
	i := strings.Index(s, `"cpu_samples": `)
	if i < 0 {
		return 0, 0
	}
	rest := s[i+len(`"cpu_samples": `):]
	n, _ := strconv.ParseInt(strings.TrimRight(strings.SplitN(rest, "\n", 2)[0], ","), 10, 64)
	st, err := os.Stat(path)
	if err != nil {
		return 0, 0
	}
	return n, st.Size()
}

// perfSampleCount sums the samples perf report attributes per pid.
func perfSampleCount(data string) int64 {
	out, err := exec.Command("perf", "report", "-i", data, "--stdio", "-q", "--sort", "pid", "-F", "sample").Output()
	if err != nil {
		return 0
	}
	var total int64
	for _, l := range strings.Split(string(out), "\n") {
		if f := strings.Fields(l); len(f) > 0 {
			if n, err := strconv.ParseInt(f[0], 10, 64); err == nil {
				total += n
			}
		}
	}
	return total
}
