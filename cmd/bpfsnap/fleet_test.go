package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"html"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bpfsnap/bpfsnap/analyze"
	"github.com/bpfsnap/bpfsnap/formats"
	"github.com/bpfsnap/bpfsnap/internal/fleetfixture"
	"github.com/bpfsnap/bpfsnap/internal/testenv"
	"github.com/bpfsnap/bpfsnap/report"
)

// fleetNodes describes the 20 nodes of the fleet tests: 60 s windows
// starting a little apart, ~31k requests and ~12k CPU samples each; one
// node slow on a route, one that lost data, one with hostile names, one
// with a hot function.
func fleetNodes() []fleetfixture.Node {
	var nodes []fleetfixture.Node
	for i := range 20 {
		n := fleetfixture.Node{Host: fmt.Sprintf("node-%02d", i), Seed: uint64(i + 1),
			Start: time.Date(2026, 12, 7, 9, 30, 0, i*37e6, time.UTC)}
		switch i {
		case 2:
			n.HotFunction = true
		case 4:
			n.Drops = map[string]uint64{"cpu.ringbuf_full": 1234, "http.unparsed": 5}
		case 7:
			n.Hostile = true
		case 13:
			n.SlowRoute, n.SlowFactor = "/api/search", 8
		}
		nodes = append(nodes, n)
	}
	return nodes
}

// writeFleet writes the nodes' archives into dir, two at a time.
func writeFleet(t testing.TB, dir string, nodes []fleetfixture.Node) {
	var wg sync.WaitGroup
	errs := make([]error, len(nodes))
	sem := make(chan struct{}, 2)
	for i, n := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			_, errs[i] = fleetfixture.Write(dir, n)
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
}

// fleetRows reads every request row of the archives: latencies (ms, as
// the analysis computes them) per route and per node, and the answered
// requests per route, straight from the Parquet tables.
type routeKey struct{ process, role, method, route string }

type fleetRows struct {
	latencies map[routeKey][]float64
	perNode   map[routeKey]map[string][]float64
	answered  map[routeKey]int64
	samples   int
}

func readFleetRows(t *testing.T, paths []string) fleetRows {
	t.Helper()
	r := fleetRows{latencies: map[routeKey][]float64{}, perNode: map[routeKey]map[string][]float64{}, answered: map[routeKey]int64{}}
	for _, p := range paths {
		a, err := formats.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		procs, err := formats.ReadAll[formats.ProcessEvent](a, formats.TableProcesses)
		if err != nil {
			t.Fatal(err)
		}
		comm := map[uint32]string{}
		for _, pr := range procs {
			comm[pr.PID] = pr.Comm
		}
		reqs, err := formats.ReadAll[formats.HTTPRequest](a, formats.TableHTTPRequests)
		if err != nil {
			t.Fatal(err)
		}
		samples, err := formats.ReadAll[formats.CPUSample](a, formats.TableCPUSamples)
		if err != nil {
			t.Fatal(err)
		}
		r.samples += len(samples)
		host := a.Manifest().Host
		a.Close()
		for _, q := range reqs {
			if q.ResponseNs == 0 {
				continue
			}
			k := routeKey{comm[q.PID], q.Role, q.Method, analyze.NormalizeRoute(q.Path)}
			r.answered[k]++
			if q.ResponseEndNs == 0 {
				continue
			}
			ms := float64(q.ResponseEndNs-q.RequestNs) / 1e6
			r.latencies[k] = append(r.latencies[k], ms)
			if r.perNode[k] == nil {
				r.perNode[k] = map[string][]float64{}
			}
			r.perNode[k][host] = append(r.perNode[k][host], ms)
		}
	}
	return r
}

// A report of 20 archives of 60 s (630k requests, 238k CPU samples in
// all): the fleet view's merged percentiles equal those computed from
// every row of every archive, each node's p99 its own, the worst node
// named, the node that lost data listed first; the page opens in Chromium
// without errors or requests, its route rows open their nodes, and the
// flame graph switches from merged to one node's.
func TestFleetReportOf20Archives(t *testing.T) {
	bin := bpfsnapBin(t)
	dir := t.TempDir()
	archives := filepath.Join(dir, "captures")
	if err := os.Mkdir(archives, 0o755); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	writeFleet(t, archives, fleetNodes())
	// Not archives: a note and a subdirectory are not read.
	os.WriteFile(filepath.Join(archives, "notes.txt"), []byte("x"), 0o644)
	os.Mkdir(filepath.Join(archives, "old.bpfsnap"), 0o755)
	t.Logf("20 archives written in %s", time.Since(start).Round(time.Millisecond))

	page := filepath.Join(dir, "fleet.html")
	start = time.Now()
	if out, err := exec.Command(bin, "report", archives, "-o", page).CombinedOutput(); err != nil {
		t.Fatalf("report: %v: %s", err, out)
	}
	took := time.Since(start)
	data, err := os.ReadFile(page)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("report of 20 archives: %s, %.1f MB", took.Round(time.Millisecond), float64(len(data))/1e6)

	var fleet analyze.FleetSummary
	if err := json.Unmarshal(unpackedPart(t, data, "fleet-data"), &fleet); err != nil {
		t.Fatal(err)
	}
	paths, _ := filepath.Glob(filepath.Join(archives, "node-*.bpfsnap"))
	rows := readFleetRows(t, paths)

	if len(fleet.Nodes) != 20 || fleet.Nodes[0].Host != "node-04" || fleet.Nodes[0].Lost != 1234 || fleet.Nodes[1].Lost != 0 {
		t.Fatalf("nodes (lost data first): %d, first %+v", len(fleet.Nodes), fleet.Nodes[0])
	}
	for _, n := range fleet.Nodes {
		if n.DurationS != 60 {
			t.Errorf("%s: window %v s", n.Host, n.DurationS)
		}
	}
	if fleet.Overlap == nil || math.Abs(fleet.Overlap.DurationS-(60-19*0.037)) > 1e-6 {
		t.Errorf("common window: %+v", fleet.Overlap)
	}
	if len(fleet.Routes) != len(rows.latencies) {
		t.Fatalf("%d fleet routes, %d in the rows", len(fleet.Routes), len(rows.latencies))
	}
	var requests int64
	for _, r := range fleet.Routes {
		k := routeKey{r.Process, r.Role, r.Method, r.Route}
		all := append([]float64(nil), rows.latencies[k]...)
		sort.Float64s(all)
		requests += r.Count
		var sum float64
		for _, v := range all {
			sum += v
		}
		if r.Count != rows.answered[k] || len(all) == 0 {
			t.Fatalf("%+v: count %d, %d answered rows", k, r.Count, rows.answered[k])
		}
		for _, c := range []struct {
			name      string
			got, want float64
		}{{"p50", r.P50, analyze.Quantile(all, 0.5)}, {"p90", r.P90, analyze.Quantile(all, 0.9)}, {"p99", r.P99, analyze.Quantile(all, 0.99)},
			{"p99.9", r.P999, analyze.Quantile(all, 0.999)}, {"max", r.Max, all[len(all)-1]}} {
			if c.got != c.want {
				t.Fatalf("%+v: merged %s %v, the rows' %v (%d requests on %d nodes)", k, c.name, c.got, c.want, len(all), len(r.Nodes))
			}
		}
		if math.Abs(r.Mean-sum/float64(len(all))) > 1e-9*r.Mean {
			t.Fatalf("%+v: mean %v, rows %v", k, r.Mean, sum/float64(len(all)))
		}
		if len(r.Nodes) != len(rows.perNode[k]) {
			t.Fatalf("%+v: %d nodes, rows on %d", k, len(r.Nodes), len(rows.perNode[k]))
		}
		worst := 0.0
		for _, n := range r.Nodes {
			l := append([]float64(nil), rows.perNode[k][n.Host]...)
			sort.Float64s(l)
			if n.P99 != analyze.Quantile(l, 0.99) || n.Max != l[len(l)-1] {
				t.Fatalf("%+v on %s: p99 %v max %v, rows %v %v", k, n.Host, n.P99, n.Max, analyze.Quantile(l, 0.99), l[len(l)-1])
			}
			worst = max(worst, n.P99)
		}
		if r.Nodes[0].P99 != worst || r.BestP99 > worst {
			t.Fatalf("%+v: worst node %+v, highest node p99 %v", k, r.Nodes[0], worst)
		}
	}
	search := fleetRoute(t, &fleet, "shop-api", "server", "GET", "/api/search")
	if search.Nodes[0].Host != "node-13" || len(search.Nodes) != 20 || search.Nodes[0].P99 < 3*search.Nodes[1].P99 {
		t.Fatalf("the slow node is not named: %+v", search.Nodes[:2])
	}
	if fleet.CPUSamples != uint64(rows.samples) {
		t.Fatalf("merged profile: %d samples, rows %d", fleet.CPUSamples, rows.samples)
	}
	t.Logf("%d routes, %d requests, %d CPU samples; /api/search merged p99 %.1f ms, node-13 %.1f ms, best node %.1f ms",
		len(fleet.Routes), requests, rows.samples, search.P99, search.Nodes[0].P99, search.BestP99)

	// The page shows the same figures, escapes the hostile names, and
	// holds the page's own three script blocks, no more.
	checkHTML(t, "fleet report", data)
	for _, bad := range []string{"<script>alert", "<svg onload"} {
		if i := strings.Index(string(data), bad); i >= 0 {
			t.Errorf("raw hostile markup %q in the page: %q", bad, data[max(0, i-200):min(len(data), i+100)])
		}
	}
	if !strings.Contains(string(data), html.EscapeString(fleetfixture.HostileComm)) {
		t.Error("the hostile process name is not shown (escaped)")
	}

	chromium := testenv.RequireTool(t, "chromium")
	// Twenty nodes' page opens about as fast as a busy node's.
	checkOpenTime(t, chromium, page, busyOpenGoal, 3*busyOpenGoal)
	p := openInChromium(t, chromium, page, "#fleet")
	if n := p.evalInt(`document.querySelectorAll("#fleet tr.fr").length`); n != len(fleet.Routes) {
		t.Errorf("%d route rows, want %d", n, len(fleet.Routes))
	}
	// The row of shop-api's GET /api/search shows its worst node's p99, and
	// a click opens its nodes.
	row := `[].filter.call(document.querySelectorAll("#fleet tr.fr"), function(tr){
		return tr.cells[0].getAttribute("data-v") === "shop-api server" && tr.querySelector("td.route code").textContent === "GET /api/search"; })[0]`
	if got := p.evalString(`(function(){ var tr = ` + row + `; return tr.querySelector("td.worst").textContent + " " + tr.cells[tr.cells.length-2].textContent; })()`); !strings.HasSuffix(got, fmt.Sprintf("%.0f ms node-13", search.Nodes[0].P99)) {
		t.Errorf("/api/search row: %q, want its worst node's p99 %.0f ms and node-13", got, search.Nodes[0].P99)
	}
	if n := p.evalInt(`(function(){ var tr = ` + row + `; tr.click();
		var d = tr.nextElementSibling; return d.offsetParent === null ? -1 : d.querySelectorAll("table.pernode > tbody > tr").length; })()`); n != 20 {
		t.Errorf("clicking a route shows %d node rows, want 20", n)
	}
	// The merged graph has every node's samples; node-02's own graph (its
	// archive section's, copied) has its hot function's larger share.
	merged := p.evalString(`(function(){ var svg = document.querySelector('#fleet .fleetflame[data-node="merged"] svg');
		return svg.getAttribute("data-total") + " " + window.bpfsnapFlame.search(svg, "^main\\.compress$").pct.toFixed(1); })()`)
	node2 := p.evalString(`(function(){ var i = [].filter.call(document.querySelectorAll("#fleet .fleetsel option"), function(o){ return o.textContent.indexOf("node-02 ") === 0; })[0].value;
		if (!window.bpfsnapFleet.show(i)) return "not shown";
		var svg = document.querySelector('#fleet .fleetflame[data-node="node"]:not(.hidden) svg');
		var hidden = document.querySelector('#fleet .fleetflame[data-node="merged"]').classList.contains("hidden");
		return svg.getAttribute("data-total") + " " + window.bpfsnapFlame.search(svg, "^main\\.compress$").pct.toFixed(1) + " " + hidden; })()`)
	var mTotal, nTotal int
	var mPct, nPct float64
	var hidden bool
	fmt.Sscan(merged, &mTotal, &mPct)
	fmt.Sscan(node2, &nTotal, &nPct, &hidden)
	if mTotal != rows.samples || nTotal*15 > mTotal || !hidden || nPct < 5*mPct || mPct <= 0 {
		t.Errorf("flame graphs: merged %q (want %d samples), node-02 %q", merged, rows.samples, node2)
	}
	p.checkClean()
}

func fleetRoute(t *testing.T, f *analyze.FleetSummary, process, role, method, route string) analyze.FleetRoute {
	t.Helper()
	for _, r := range f.Routes {
		if r.Process == process && r.Role == role && r.Method == method && r.Route == route {
			return r
		}
	}
	t.Fatalf("no route %s %s %s %s", process, role, method, route)
	return analyze.FleetRoute{}
}

// unpackedPart returns the text the page holds packed (report/packed.go)
// in the element of that id.
func unpackedPart(t *testing.T, page []byte, id string) []byte {
	t.Helper()
	m := regexp.MustCompile(`<div hidden id="` + regexp.QuoteMeta(id) + `" data-packed="([^"]*)"`).FindSubmatch(page)
	if m == nil {
		t.Fatalf("no packed %s in the page", id)
	}
	text, err := unpack(m[1])
	if err != nil {
		t.Fatalf("%s: %v", id, err)
	}
	return text
}

// report --baseline over several archives: each archive analyzed in
// parallel (buildReport, run here in-process so `go test -race` sees it)
// is compared with the one baseline, and the page has the fleet section
// and each node's comparison with the baseline (the slow node's slow
// route among its changes).
func TestFleetReportWithBaseline(t *testing.T) {
	dir := t.TempDir()
	var nodes []fleetfixture.Node
	for i, h := range []string{"base", "node-a", "node-b", "node-c"} {
		n := fleetfixture.Node{Host: h, Seed: uint64(i + 1), Window: 10 * time.Second,
			Start: time.Date(2026, 12, 7, 9, 30, 0, 0, time.UTC)}
		if h == "node-b" {
			n.SlowRoute, n.SlowFactor = "/api/search", 8
		}
		nodes = append(nodes, n)
	}
	writeFleet(t, dir, nodes)
	req := analyze.Request{Sections: analyze.AllSections}
	base, err := analyze.Load(filepath.Join(dir, "base.bpfsnap"), req)
	if err != nil {
		t.Fatal(err)
	}
	paths := []string{filepath.Join(dir, "node-a.bpfsnap"), filepath.Join(dir, "node-b.bpfsnap"), filepath.Join(dir, "node-c.bpfsnap")}
	parts, fleet, err := buildReport(paths, req, base)
	if err != nil {
		t.Fatal(err)
	}
	if fleet == nil || len(fleet.Nodes) != 3 || len(parts) != 3 {
		t.Fatalf("fleet %v, %d parts", fleet, len(parts))
	}
	for _, p := range parts {
		if p.Compare == nil {
			t.Fatalf("%s: not compared with the baseline", p.Summary.Archive)
		}
	}
	var page bytes.Buffer
	if err := report.WriteHTML(&page, parts, report.HTMLOptions{Fleet: fleet}); err != nil {
		t.Fatal(err)
	}
	checkHTML(t, "fleet report with a baseline", page.Bytes())
	if n := strings.Count(page.String(), "vs baseline base.bpfsnap"); n < 3 {
		t.Errorf("%d differential flame graphs, want one per node", n)
	}
	if !strings.Contains(page.String(), `<section id="fleet">`) {
		t.Error("no fleet section")
	}
	if got := parts[1].Compare.Changes; len(got) == 0 || !strings.Contains(strings.Join(got, " "), "/api/search") {
		t.Errorf("node-b's changes do not name its slow route: %q", got)
	}
}
