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
	benchmarks = append(benchmarks, benchmark{"flight recorder", benchRing})
}

// ringMinutes is how long the flight recorder row records: the issue asks
// for 10 minutes; make bench's budget takes 3 (`go run ./bench -only
// "flight recorder" -ring-minutes 10` for the long form).
var ringMinutes = 3

// benchRing: a flight recorder (capture --ring 60s -p cpu,http, whole
// host) kept running under steady load (a service at a fixed request rate
// and a CPU-bound loop): its CPU and RSS over the run, what it keeps on
// disk, and how long a dump of the last minute takes.
func benchRing(env *Env) ([]Row, error) {
	dir := filepath.Join(env.Dir, "ring")
	_, port, stop, err := startService(dir)
	if err != nil {
		return nil, err
	}
	defer stop()
	burn := exec.Command("sh", "-c", "while :; do :; done")
	burn.Start()
	defer func() { burn.Process.Kill(); burn.Wait() }()
	time.Sleep(2 * time.Second)

	out := filepath.Join(dir, "node.bpfsnap")
	rec := exec.Command(env.Bpfsnap, "capture", "--ring", "60s", "-p", "cpu,http", "-o", out)
	if err := rec.Start(); err != nil {
		return nil, err
	}
	defer func() { rec.Process.Kill(); rec.Wait() }()
	stopLoad := make(chan struct{})
	loadDone := make(chan struct{})
	url := fmt.Sprintf("http://127.0.0.1:%d/api?us=50", port)
	go func() {
		defer close(loadDone)
		for {
			select {
			case <-stopLoad:
				return
			default:
			}
			constantRate(url, 500, 5*time.Second) // 500 req/s
		}
	}()
	time.Sleep(5 * time.Second)
	t0, wall0 := cpuTicks(rec.Process.Pid), time.Now()
	var rssMax, rssFirst, diskMax int64
	var dumpS []float64
	var rssEachMinute []string // a leak shows as a rise that goes on, a dump's peak as a step
	end := time.Now().Add(time.Duration(ringMinutes) * time.Minute)
	for i := 0; time.Now().Before(end); i++ {
		time.Sleep(10 * time.Second)
		rss := procRSSKiB(rec.Process.Pid)
		if rssFirst == 0 {
			rssFirst = rss
		}
		rssMax = max(rssMax, rss)
		diskMax = max(diskMax, dirBytes(out+".partial"))
		if i%6 == 5 { // a dump every minute
			rssEachMinute = append(rssEachMinute, fmt.Sprintf("%.0f", float64(rss)/1024))
			before := countDumps(dir)
			d0 := time.Now()
			rec.Process.Signal(syscall.SIGUSR1)
			for countDumps(dir) == before && time.Since(d0) < time.Minute {
				time.Sleep(20 * time.Millisecond)
			}
			dumpS = append(dumpS, time.Since(d0).Seconds())
		}
	}
	cpu := (cpuTicks(rec.Process.Pid) - t0) / 100 / time.Since(wall0).Seconds()
	close(stopLoad)
	<-loadDone
	rec.Process.Signal(syscall.SIGINT)
	rec.Wait()
	how := fmt.Sprintf("capture --ring 60s -p cpu,http (whole host) for %d min beside a service at 500 req/s (50 µs of CPU each) and a busy loop", ringMinutes)
	return []Row{{
		Name:   "flight recorder: recorder CPU (share of one CPU) and RSS (MiB, first → most)",
		Result: fmt.Sprintf("%.3f; %.1f → %.1f", cpu, float64(rssFirst)/1024, float64(rssMax)/1024),
		Note:   how + "; RSS sampled every 10 s; before each minute's dump (MiB): " + strings.Join(rssEachMinute, ", "),
	}, {
		Name:   "flight recorder: on disk at most (MiB)",
		Result: fmt.Sprintf("%.1f", float64(diskMax)/(1<<20)),
		Note:   "the recorder's directory: the last 62 s of event chunks plus the stacks, frames and processes it keeps whole",
	}, {
		Name:   "flight recorder: dump of the last 60 s, time from SIGUSR1 to the archive (s)",
		Result: stats(dumpS).Format("%.2f"),
		Note:   fmt.Sprintf("%d dumps, one a minute, while recording goes on", len(dumpS)),
	}}, nil
}

func procRSSKiB(pid int) int64 {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			n, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return n
		}
	}
	return 0
}

func dirBytes(dir string) int64 {
	var n int64
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if fi, err := e.Info(); err == nil {
			n += fi.Size()
		}
	}
	return n
}

func countDumps(dir string) int {
	m, _ := filepath.Glob(filepath.Join(dir, "node-*.bpfsnap"))
	return len(m)
}
