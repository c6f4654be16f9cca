package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/bpfsnap/bpfsnap/internal/reportload"
)

func init() {
	benchmarks = append(benchmarks, benchmark{"report opening time", benchReportOpen})
}

// benchReportOpen opens two reports in headless Chromium and times
// load-to-interactive (internal/reportload: navigation start to the first
// frame after the load event with the main thread free): the 60 s demo's
// report, which the "end to end" row writes (run here when that row did not
// run before in this harness), and the report of a synthetic busy node
// (reportload.WriteBusyNode).
func benchReportOpen(env *Env) ([]Row, error) {
	chromium, err := exec.LookPath("chromium")
	if err != nil {
		return nil, fmt.Errorf("chromium: %w", err)
	}
	demo := filepath.Join(env.Dir, "e2e", "report.html") // written by benchE2E
	if _, err := os.Stat(demo); err != nil {
		if _, err := benchE2E(env); err != nil {
			return nil, fmt.Errorf("the demo report: %w", err)
		}
	}
	dir := filepath.Join(env.Dir, "reportopen")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	busy, busyHTML := filepath.Join(dir, "busy.bpfsnap"), filepath.Join(dir, "busy.html")
	if err := reportload.WriteBusyNode(busy); err != nil {
		return nil, err
	}
	if out, err := exec.Command(env.Bpfsnap, "report", busy, "-o", busyHTML).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("report: %v: %s", err, out)
	}
	reps := max(env.Reps, 3)
	var rows []Row
	for _, r := range []struct {
		name, html string
		goal       time.Duration
		what       string
	}{
		{"report opening: the 60 s demo report (node + mem archives), load-to-interactive", demo, time.Second,
			"the page the \"end to end\" row writes"},
		{"report opening: a busy node's report, load-to-interactive", busyHTML, 2 * time.Second,
			fmt.Sprintf("synthetic 60 s whole-node archive (reportload.WriteBusyNode): %d CPUs at %d Hz (75%% busy), %d services in 8 namespaces, %d jobs, %d distinct stacks up to 48 frames, %d endpoints, %d requests",
				reportload.BusyCPUs, reportload.BusyHz, reportload.BusyServices, reportload.BusyJobs, reportload.BusyStacks, reportload.BusyEndpoints, reportload.BusyRequests)},
	} {
		ts, err := reportload.Measure(chromium, r.html, dir, reps)
		if err != nil {
			return nil, err
		}
		var inter, load, paint []float64
		for _, t := range ts {
			inter = append(inter, t.Interactive.Seconds())
			load = append(load, t.Load.Seconds())
			paint = append(paint, t.FirstPaint.Seconds())
		}
		st, _ := os.Stat(r.html)
		size := 0.0
		if st != nil {
			size = float64(st.Size()) / 1e6
		}
		s := stats(inter)
		rows = append(rows, Row{Name: r.name, Result: stats(inter).Format("%.2f") + " s",
			Goal: fmt.Sprintf("< %.0f s", r.goal.Seconds()), Met: yesNo(s.Median < r.goal.Seconds()),
			Note: fmt.Sprintf("`go run ./bench -only \"report opening\"`: %s, %.1f MB; headless Chromium (%s), %d openings in one browser (the first cold), from navigation start to the first frame after the load event with the main thread free; first contentful paint %s s, load event end %s s",
				r.what, size, cmdOut(chromium, "--version"), reps, stats(paint).Format("%.2f"), stats(load).Format("%.2f"))})
	}
	return rows, nil
}
