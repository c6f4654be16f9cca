package main

import (
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/bpfsnap/bpfsnap/internal/reportload"
	"github.com/bpfsnap/bpfsnap/internal/testenv"
)

// Opening-time goals of the report (issue 22): a demo-sized report is
// interactive within 1 s, a busy node's within 2 s. Neither is met yet
// (docs/reliability.md); the tests guard against regressions at three
// times the goal, on the fastest of three openings (this machine is shared
// and one opening can take twice another). `make bench` records the
// figures against the goals.
const (
	demoOpenGoal = time.Second
	busyOpenGoal = 2 * time.Second
)

// checkOpenTime opens html in headless Chromium three times and fails when
// the fastest load-to-interactive passes bound.
func checkOpenTime(t *testing.T, chromium, html string, goal, bound time.Duration) {
	t.Helper()
	ts, err := reportload.Measure(chromium, html, t.TempDir(), 3)
	if err != nil {
		t.Fatal(err)
	}
	inter := []time.Duration{ts[0].Interactive, ts[1].Interactive, ts[2].Interactive}
	for i := 1; i < len(inter); i++ {
		for j := i; j > 0 && inter[j] < inter[j-1]; j-- {
			inter[j], inter[j-1] = inter[j-1], inter[j]
		}
	}
	t.Logf("%s: load-to-interactive %v (cold first: %+v); goal %s", filepath.Base(html), inter, ts[0], goal)
	if inter[0] > bound {
		t.Errorf("%s takes %s to become interactive (fastest of 3), over %s", filepath.Base(html), inter[0], bound)
	}
}

// A busy node's report (reportload.WriteBusyNode: 32 CPUs, 40 services,
// 6000 stacks, 160 endpoints) opens in Chromium within the bound.
func TestReportOpenTimeBusyNode(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the browser tests run on Linux")
	}
	chromium := testenv.RequireTool(t, "chromium")
	bin := bpfsnapBin(t)
	dir := t.TempDir()
	archive, html := filepath.Join(dir, "busy.bpfsnap"), filepath.Join(dir, "busy.html")
	if err := reportload.WriteBusyNode(archive); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(bin, "report", archive, "-o", html).CombinedOutput(); err != nil {
		t.Fatalf("report: %v: %s", err, out)
	}
	checkOpenTime(t, chromium, html, busyOpenGoal, 3*busyOpenGoal)
}
