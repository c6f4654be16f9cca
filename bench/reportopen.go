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
		row, err := openRow(chromium, "report opening", r.name, r.html, r.what, dir, r.goal, reps)
		if err != nil {
			return nil, err
		}
		rows = append(rows, row)
	}
	return rows, nil
}

// openRow (a row of the benchmark named only) opens html reps times in headless Chromium (the first cold) and
// makes its row: load-to-interactive against goal, with the first paint
// and the load event in the note.
func openRow(chromium, only, name, html, what, scratch string, goal time.Duration, reps int) (Row, error) {
	ts, err := reportload.Measure(chromium, html, scratch, reps)
	if err != nil {
		return Row{}, err
	}
	var inter, load, paint []float64
	for _, t := range ts {
		inter = append(inter, t.Interactive.Seconds())
		load = append(load, t.Load.Seconds())
		paint = append(paint, t.FirstPaint.Seconds())
	}
	st, _ := os.Stat(html)
	size := 0.0
	if st != nil {
		size = float64(st.Size()) / 1e6
	}
	s := stats(inter)
	return Row{Name: name, Result: s.Format("%.2f") + " s",
		Goal: fmt.Sprintf("< %.0f s", goal.Seconds()), Met: yesNo(s.Median < goal.Seconds()),
		Note: fmt.Sprintf("`go run ./bench -only %q`: %s, %.1f MB; headless Chromium (%s), %d openings in one browser (the first cold), from navigation start to the first frame after the load event with the main thread free; first contentful paint %s s, load event end %s s",
			only, what, size, cmdOut(chromium, "--version"), reps, stats(paint).Format("%.2f"), stats(load).Format("%.2f"))}, nil
}
