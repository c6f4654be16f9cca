package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"github.com/bpfsnap/bpfsnap/internal/fleetfixture"
)

func init() {
	benchmarks = append(benchmarks, benchmark{"fleet report", benchFleetReport})
}

// fleetNodes and fleetRate size the fleet: 20 nodes, 60 s windows, 1000
// requests/s (with the client mirrors ~63k rows per node, 1.26M in all)
// and 99 Hz on 2 CPUs.
const (
	fleetNodes = 20
	fleetRate  = 1000
)

// benchFleetReport: `bpfsnap report DIR` of 20 archives (the fleet view
// with every archive's sections, analyzed in parallel) against `bpfsnap
// analyze --json` of each archive one after the other, interleaved.
func benchFleetReport(env *Env) ([]Row, error) {
	dir := filepath.Join(env.Dir, "fleet")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	start := time.Now()
	var paths []string
	var bytes int64
	for i := range fleetNodes {
		n := fleetfixture.Node{Host: fmt.Sprintf("node-%02d", i), Seed: uint64(i + 1), RequestsPerSec: fleetRate,
			Start: time.Date(2026, 12, 7, 9, 30, 0, i*37e6, time.UTC)}
		if i == 13 {
			n.SlowRoute, n.SlowFactor = "/api/search", 8
		}
		p, err := fleetfixture.Write(dir, n)
		if err != nil {
			return nil, err
		}
		st, err := os.Stat(p)
		if err != nil {
			return nil, err
		}
		bytes += st.Size()
		paths = append(paths, p)
	}
	gen := time.Since(start)
	html := filepath.Join(env.Dir, "fleet.html")
	defer os.Remove(html)
	var repWall, oneWall, anWall, ratios, repCPU, anCPU, rss, anRSS []float64
	for i := 0; i < max(env.Reps, 1); i++ {
		t0 := time.Now()
		rep := exec.Command(env.Bpfsnap, "report", dir, "-o", html)
		if out, err := rep.CombinedOutput(); err != nil {
			return nil, fmt.Errorf("report: %v: %s", err, out)
		}
		rw := time.Since(t0).Seconds()
		// The same on one CPU: what the work costs without the parallel
		// analyses.
		t0 = time.Now()
		one := exec.Command(env.Bpfsnap, "report", dir, "-o", html)
		one.Env = append(os.Environ(), "GOMAXPROCS=1")
		if out, err := one.CombinedOutput(); err != nil {
			return nil, fmt.Errorf("report: %v: %s", err, out)
		}
		oneWall = append(oneWall, time.Since(t0).Seconds())
		var aw, ac, ar float64
		for _, p := range paths {
			t0 := time.Now()
			an := exec.Command(env.Bpfsnap, "analyze", "--json", p)
			if err := an.Run(); err != nil {
				return nil, fmt.Errorf("analyze %s: %v", p, err)
			}
			aw += time.Since(t0).Seconds()
			ac += cpuSeconds(an)
			ar = max(ar, maxRSSMB(an))
		}
		repWall, anWall, ratios = append(repWall, rw), append(anWall, aw), append(ratios, rw/aw)
		repCPU, anCPU, rss, anRSS = append(repCPU, cpuSeconds(rep)), append(anCPU, ac), append(rss, maxRSSMB(rep)), append(anRSS, ar)
	}
	r := stats(ratios)
	rows := []Row{{
		Name:   fmt.Sprintf("fleet report: %d archives of 60 s, wall time (s)", fleetNodes),
		Result: stats(repWall).Format("%.2f"),
		Peer:   "`analyze --json` of each, one after the other: " + stats(anWall).Format("%.2f") + "; ratio " + r.Format("%.2f"),
		Goal:   "within 1.5× of analyzing them", Met: yesNo(r.Median <= 1.5),
		Note: fmt.Sprintf("`go run ./bench -only \"fleet report\"`: %d archives written with formats' writer (internal/fleetfixture, %.0f s, %s in all): "+
			"%d requests/s (plus a client's mirror of a tenth of one service's) and 99 Hz on 2 CPUs for 60 s each, ~1.26M requests and 238k samples in all; "+
			"`bpfsnap report DIR` (the fleet view merging every route exactly, and each archive's sections with their flame graphs; archives analyzed in parallel) against `bpfsnap analyze --json` of every archive in turn; "+
			"CPU time (user+sys) %s s against %s s (each analyze process starts with a fresh heap: most of the difference is zeroing memory); "+
			"report with GOMAXPROCS=1 %s s; peak RSS of report %s MB (of one analyze: %s MB); %d interleaved runs",
			fleetNodes, gen.Seconds(), humanMB(bytes), fleetRate, stats(repCPU).Format("%.2f"), stats(anCPU).Format("%.2f"),
			stats(oneWall).Format("%.2f"), stats(rss).Format("%.0f"), stats(anRSS).Format("%.0f"), max(env.Reps, 1)),
	}}
	// The page those 20 archives make, opened as the "report opening"
	// rows open theirs, against the busy node's goal.
	chromium, err := exec.LookPath("chromium")
	if err != nil {
		return nil, fmt.Errorf("chromium: %w", err)
	}
	open, err := openRow(chromium, "fleet report", fmt.Sprintf("report opening: the fleet report of %d archives, load-to-interactive", fleetNodes), html,
		"the page the row above writes (fleet view, and every archive's sections)", dir, 2*time.Second, max(env.Reps, 3))
	if err != nil {
		return nil, err
	}
	return append(rows, open), nil
}

// maxRSSMB is a finished command's peak resident set, in MB.
func maxRSSMB(cmd *exec.Cmd) float64 {
	if cmd.ProcessState == nil {
		return 0
	}
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		return float64(ru.Maxrss) / 1024 // kilobytes on Linux
	}
	return 0
}
