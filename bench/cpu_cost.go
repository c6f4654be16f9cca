package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"
)

func init() {
	benchmarks = append(benchmarks, benchmark{"cpu profiling cost per sample", benchCPUCost})
}

// benchCPUCost measures what one CPU sample costs, as CPU time, so the
// overhead at 99 Hz can be read even where the workload's own run-to-run
// noise is larger than the effect: two busy loops keep both CPUs sampled
// at 999 Hz for 8 s, under a whole-host `capture -p cpu` (BPF run time of
// its programs, kernel.bpf_stats_enabled, plus the recorder's CPU) and
// under a whole-host `perf record -g` (perf's own CPU), one after the
// other; each is divided by its samples.
func benchCPUCost(env *Env) ([]Row, error) {
	burn := filepath.Join(env.Dir, "cpuburn")
	if out, err := exec.Command("gcc", "-O1", "-fno-omit-frame-pointer", "-o", burn, "testdata/demo/cpuburn.c").CombinedOutput(); err != nil {
		return nil, fmt.Errorf("gcc: %v: %s", err, out)
	}
	exec.Command("sysctl", "-qw", "kernel.bpf_stats_enabled=1").Run()
	defer exec.Command("sysctl", "-qw", "kernel.bpf_stats_enabled=0").Run()
	const hz, window = "999", 8 * time.Second
	busy := func() func() {
		var cmds []*exec.Cmd
		for i := 0; i < 2; i++ {
			c := exec.Command(burn, "100000")
			c.Start()
			cmds = append(cmds, c)
		}
		return func() {
			for _, c := range cmds {
				c.Process.Kill()
				c.Wait()
			}
		}
	}
	var bpfUs, recUs, oursUs, perfUs []float64
	for i := 0; i < env.Reps; i++ {
		stop := busy()
		out := filepath.Join(env.Dir, "cost.bpfsnap")
		os.Remove(out)
		capture := exec.Command(env.Bpfsnap, "capture", "-p", "cpu", "--freq", hz, "-d", "10m", "-o", out)
		if err := capture.Start(); err != nil {
			stop()
			return nil, err
		}
		time.Sleep(2 * time.Second) // attached
		t0, n0 := cpuTicks(capture.Process.Pid), bpfRunNs(capture.Process.Pid)
		time.Sleep(window)
		t1, n1 := cpuTicks(capture.Process.Pid), bpfRunNs(capture.Process.Pid)
		capture.Process.Signal(syscall.SIGINT)
		capture.Wait()
		stop()
		// The samples of the measured part: the share of the window's rows.
		rows, _ := archiveSamples(env.Bpfsnap, out)
		total := window.Seconds() + 2
		samples := float64(rows) * window.Seconds() / total
		if samples <= 0 {
			return nil, fmt.Errorf("capture recorded no samples")
		}
		b, r := (n1-n0)/1000/samples, (t1-t0)*1e4/samples
		bpfUs, recUs, oursUs = append(bpfUs, b), append(recUs, r), append(oursUs, b+r)

		stop = busy()
		data := filepath.Join(env.Dir, "cost.perf.data")
		perf := exec.Command("perf", "record", "-q", "-a", "-F", hz, "-g", "-o", data, "--", "sleep", strconv.Itoa(int(window.Seconds())))
		if err := perf.Run(); err != nil {
			stop()
			return nil, fmt.Errorf("perf record: %w", err)
		}
		stop()
		ru, ok := perf.ProcessState.SysUsage().(*syscall.Rusage)
		ps := perfSampleCount(data)
		if !ok || ps == 0 {
			return nil, fmt.Errorf("perf recorded no samples")
		}
		cpu := time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
		perfUs = append(perfUs, float64(cpu.Microseconds())/float64(ps))
	}
	o := stats(oursUs)
	// At 99 Hz on two busy CPUs: 198 samples a second of 2 CPU-seconds.
	overhead := func(us float64) float64 { return 100 * 99 * 2 * us / 2e6 }
	return []Row{{
		Name:   "CPU profiling: CPU time per sample (µs), BPF programs + recorder",
		Result: o.Format("%.2f"), Peer: "perf record -g -a: " + stats(perfUs).Format("%.2f") + " (perf's own CPU)",
		Note: fmt.Sprintf("2 busy loops at %s Hz for %s, whole host; BPF run time (bpf_stats) %s + recorder CPU %s µs per sample; "+
			"perf's in-kernel sampling is not in its figure (it runs in the sampled task), ours is",
			hz, window, stats(bpfUs).Format("%.2f"), stats(recUs).Format("%.2f")),
	}, {
		Name:   "CPU profiling: overhead at 99 Hz on two busy CPUs, from the cost per sample",
		Result: fmt.Sprintf("%.3f %%", overhead(o.Median)), Peer: fmt.Sprintf("perf record -g: %.3f %%", overhead(stats(perfUs).Median)),
		Goal: "< 1%", Met: yesNo(overhead(o.Median) < 1),
		Note: "198 samples/s × µs per sample / 2 CPU-seconds",
	}}, nil
}
