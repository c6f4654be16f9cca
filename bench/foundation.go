package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"github.com/bpfsnap/bpfsnap/formats"
)

// benchProcessOverhead: a fork+exec-heavy workload (the worst case for the
// always-on process probe) timed with and without a whole-host capture.
func benchProcessOverhead(env *Env) ([]Row, error) {
	const spawns = 2000
	workload := func() (float64, error) {
		start := time.Now()
		for i := 0; i < spawns; i++ {
			if err := exec.Command("/bin/true").Run(); err != nil {
				return 0, err
			}
		}
		return float64(spawns) / time.Since(start).Seconds(), nil
	}
	var ratios, bare []float64
	for i := 0; i < env.Reps; i++ {
		without, err := workload()
		if err != nil {
			return nil, err
		}
		out := filepath.Join(env.Dir, fmt.Sprintf("proc-%d.bpfsnap", i))
		capture := exec.Command(env.Bpfsnap, "capture", "-d", "5m", "-o", out)
		if err := capture.Start(); err != nil {
			return nil, err
		}
		time.Sleep(1500 * time.Millisecond) // attach and scan
		with, err := workload()
		capture.Process.Signal(syscall.SIGINT)
		if werr := capture.Wait(); werr != nil && err == nil {
			err = fmt.Errorf("capture: %w", werr)
		}
		os.Remove(out)
		if err != nil {
			return nil, err
		}
		bare = append(bare, without)
		ratios = append(ratios, with/without)
	}
	return []Row{{
		Name:   "process tracking: fork+exec rate kept under capture",
		Result: stats(ratios).Format("%.3f"),
		Goal:   "≥ 0.95",
		Met:    yesNo(stats(ratios).Median >= 0.95),
		Note:   fmt.Sprintf("%d × fork+exec of /bin/true, bare %s/s; whole-host capture (process probe only)", spawns, stats(bare).Format("%.0f")),
	}}, nil
}

// benchWriter: how fast the archive writer takes rows, and how small they
// end up, with the writer's real sealing and compression.
func benchWriter(env *Env) ([]Row, error) {
	const rows = 2_000_000
	var rates, sizes []float64
	for i := 0; i < env.Reps; i++ {
		out := filepath.Join(env.Dir, fmt.Sprintf("w-%d.bpfsnap", i))
		w, err := formats.Create(out, formats.Manifest{}, formats.CreateOptions{})
		if err != nil {
			return nil, err
		}
		t := formats.NewTable[formats.CPUSample](w, formats.TableCPUSamples)
		batch := make([]formats.CPUSample, 1024)
		start := time.Now()
		for n := 0; n < rows; n += len(batch) {
			for j := range batch {
				k := uint64(n + j)
				batch[j] = formats.CPUSample{TimeNs: k * 10_101_010, CPU: uint32(k % 2), PID: uint32(1000 + k%50), TID: uint32(1000 + k%200), CgroupID: 4242, Comm: "worker", StackID: k % 5000}
			}
			if err := t.Write(batch...); err != nil {
				return nil, err
			}
		}
		if err := w.Finish(nil); err != nil {
			return nil, err
		}
		rates = append(rates, rows/time.Since(start).Seconds())
		st, err := os.Stat(out)
		if err != nil {
			return nil, err
		}
		sizes = append(sizes, float64(st.Size())/rows)
		os.Remove(out)
	}
	return []Row{
		{Name: "archive writer: rows/s into sealed zstd Parquet", Result: stats(rates).Format("%.0f"), Note: "cpu_samples rows, batches of 1024, 1 s seals, finish + bundle included"},
		{Name: "archive writer: bytes per cpu_samples row", Result: stats(sizes).Format("%.2f"), Note: "same run"},
	}, nil
}

func yesNo(ok bool) string {
	if ok {
		return "yes"
	}
	return "no"
}
