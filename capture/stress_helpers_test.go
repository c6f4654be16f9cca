//go:build linux

package capture

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/bpfsnap/bpfsnap/formats"
	"github.com/bpfsnap/bpfsnap/internal/testenv"
)

// requireStress skips the long forms of the reliability suite unless
// `make stress` (BPFSNAP_STRESS=1) asked for them: they take minutes.
func requireStress(t *testing.T) {
	t.Helper()
	if os.Getenv("BPFSNAP_STRESS") != "1" {
		t.Skip("long stress test: run with BPFSNAP_STRESS=1 (make stress)")
	}
}

// buildC compiles one C source file of a test workload.
func buildC(t *testing.T, name, src string, flags ...string) string {
	t.Helper()
	testenv.RequireTool(t, "gcc")
	dir := t.TempDir()
	c := filepath.Join(dir, name+".c")
	if err := os.WriteFile(c, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, name)
	args := append([]string{"-O1", "-fno-omit-frame-pointer", "-o", bin, c}, flags...)
	if out, err := exec.Command("gcc", args...).CombinedOutput(); err != nil {
		t.Fatalf("gcc %s: %v: %s", name, err, out)
	}
	return bin
}

// rssSample is one reading of a process's resident set.
type rssSample struct {
	At  time.Duration // since the watch started
	RSS uint64        // KiB
}

// rssWatcher samples VmRSS and VmHWM of one process from /proc/PID/status
// until it exits. The peak also comes from wait4's rusage (Maxrss), which
// covers the last moments between two samples.
type rssWatcher struct {
	mu      sync.Mutex
	samples []rssSample
	hwm     uint64 // KiB
	stop    chan struct{}
	done    chan struct{}
}

func watchRSS(pid int, every time.Duration) *rssWatcher {
	w := &rssWatcher{stop: make(chan struct{}), done: make(chan struct{})}
	start := time.Now()
	go func() {
		defer close(w.done)
		tick := time.NewTicker(every)
		defer tick.Stop()
		for {
			rss, hwm, ok := procStatusMem(pid)
			if ok {
				w.mu.Lock()
				w.samples = append(w.samples, rssSample{time.Since(start), rss})
				w.hwm = max(w.hwm, hwm)
				w.mu.Unlock()
			}
			select {
			case <-w.stop:
				return
			case <-tick.C:
			}
		}
	}()
	return w
}

// finish stops sampling and folds in the rusage peak of the exited process.
func (w *rssWatcher) finish(ps *os.ProcessState) (samples []rssSample, peakKiB uint64) {
	close(w.stop)
	<-w.done
	w.mu.Lock()
	defer w.mu.Unlock()
	peak := w.hwm
	if ps != nil {
		if ru, ok := ps.SysUsage().(*syscall.Rusage); ok && ru.Maxrss > 0 {
			peak = max(peak, uint64(ru.Maxrss))
		}
	}
	return append([]rssSample(nil), w.samples...), peak
}

func procStatusMem(pid int) (rss, hwm uint64, ok bool) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, found := strings.Cut(sc.Text(), ":")
		if !found {
			continue
		}
		n, _ := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		switch k {
		case "VmRSS":
			rss, ok = n, true
		case "VmHWM":
			hwm = n
		}
	}
	return rss, hwm, ok
}

// maxRSSBetween is the largest sample in [from, to).
func maxRSSBetween(samples []rssSample, from, to time.Duration) (uint64, int) {
	var m uint64
	n := 0
	for _, s := range samples {
		if s.At >= from && s.At < to {
			m = max(m, s.RSS)
			n++
		}
	}
	return m, n
}

// kernelProcessRows counts the rows the kernel's process probes produced
// (fork, exec, exit), leaving out the /proc scan and info rows.
func kernelProcessRows(t *testing.T, path string) (rows []formats.ProcessEvent, n int) {
	t.Helper()
	a, err := formats.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	rows, err = formats.ReadAll[formats.ProcessEvent](a, formats.TableProcesses)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rows {
		switch r.Kind {
		case formats.ProcessFork, formats.ProcessExec, formats.ProcessExit:
			n++
		}
	}
	return rows, n
}

func mib(kib uint64) float64 { return float64(kib) / 1024 }
