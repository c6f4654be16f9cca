package report

import (
	_ "embed"
	"encoding/json"
	"fmt"
	"html/template"
	"math"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/bpfsnap/bpfsnap/analyze"
)

var (
	//go:embed fleet.css
	fleetCSS string
	//go:embed fleet.js
	fleetJS string
)

// fleetDetailedRoutes bounds the routes whose per-node table and spread
// chart the fleet section draws; the others are rows (with their worst
// node named).
const fleetDetailedRoutes = 60

// fleetView is the fleet section of a report of several archives
// (HTMLOptions.Fleet): nodes, merged routes with their per-node spread,
// the fleet's slowest requests, and the CPU flame graph merged over the
// nodes, or any node's own (the page's archive sections hold those).
type fleetView struct {
	Summary *analyze.FleetSummary
	Nodes   []fleetNodeView
	Routes  []fleetRouteView
	Slowest []fleetExchangeView
	Overlap string
	// Hosts counts the nodes' distinct hosts (fewer than the nodes when
	// one host made several archives).
	Hosts int
	Flame template.HTML
	// CPUNodes are the nodes whose archive section has a flame graph.
	CPUNodes []fleetNodeView
	CSS      template.CSS
	// Packed is the FleetSummary as JSON, packed (pack) for the download.
	Packed string
}

type fleetNodeView struct {
	analyze.FleetNode
	Name  string
	Start string
	// Part is the node's archive section in the page (its index among
	// the archives given to WriteHTML), -1 when it has none.
	Part int
}

type fleetRouteView struct {
	analyze.FleetRoute
	Worst    analyze.FleetRouteNode
	Spread   template.HTML
	Detailed bool
}

type fleetExchangeView struct {
	analyze.FleetExchange
	Part int
}

// buildFleetView lays out the fleet section; archives are the page's
// archive sections, matched to the fleet's nodes by archive path.
func buildFleetView(f *analyze.FleetSummary, archives []*HTMLArchive) (*fleetView, error) {
	data, err := json.Marshal(f)
	if err != nil {
		return nil, err
	}
	v := &fleetView{Summary: f, CSS: template.CSS(fleetCSS), Packed: pack(string(data))}
	part := map[string]int{}
	for i, a := range archives {
		part[a.Summary.Archive] = i
	}
	partOf := func(archive string) int {
		if i, ok := part[archive]; ok {
			return i
		}
		return -1
	}
	for _, n := range f.Nodes {
		nv := fleetNodeView{FleetNode: n, Name: filepath.Base(n.Archive), Start: n.Start.UTC().Format("2006-01-02 15:04:05.000 UTC"), Part: partOf(n.Archive)}
		v.Nodes = append(v.Nodes, nv)
		if nv.Part >= 0 && archives[nv.Part].CPU != nil {
			v.CPUNodes = append(v.CPUNodes, nv)
		}
	}
	if o := f.Overlap; o != nil {
		v.Overlap = fmt.Sprintf("every window covers %s from %s", fmtSeconds(o.DurationS), o.Start.UTC().Format("15:04:05.000 UTC"))
	} else if len(f.Nodes) > 1 {
		v.Overlap = "the windows do not all overlap: compare nodes with care"
	}
	label := nodeLabels(f.Nodes)
	hosts := map[string]bool{}
	for _, n := range f.Nodes {
		hosts[n.Host] = true
	}
	v.Hosts = len(hosts)
	for i, r := range f.Routes {
		r.Nodes = append([]analyze.FleetRouteNode(nil), r.Nodes...)
		for j := range r.Nodes {
			r.Nodes[j].Host = label(r.Nodes[j].Node, r.Nodes[j].Host)
		}
		rv := fleetRouteView{FleetRoute: r, Worst: r.Worst(), Detailed: i < fleetDetailedRoutes}
		if rv.Detailed {
			rv.Spread = template.HTML(spreadChart(r, 140, 30))
		}
		v.Routes = append(v.Routes, rv)
	}
	for _, x := range f.Slowest {
		x.Host = label(x.Node, x.Host)
		v.Slowest = append(v.Slowest, fleetExchangeView{FleetExchange: x, Part: x.Node})
	}
	if folded := f.Folded(); len(folded) > 0 {
		title := fmt.Sprintf("CPU: %d nodes merged", len(v.CPUNodes))
		fl, err := flameHTML(folded, title, wholeMinWidth)
		if err != nil {
			return nil, err
		}
		v.Flame = fl
	}
	return v, nil
}

// nodeLabels names nodes in the fleet's tables: by host, and when several
// archives come from one host (two captures, a flight recorder's dumps),
// by host and archive, so their rows can be told apart.
func nodeLabels(nodes []analyze.FleetNode) func(index int, host string) string {
	hosts := map[string]int{}
	for _, n := range nodes {
		hosts[n.Host]++
	}
	names := map[int]string{}
	for _, n := range nodes {
		if hosts[n.Host] > 1 {
			names[n.Index] = n.Host + " (" + filepath.Base(n.Archive) + ")"
		}
	}
	return func(index int, host string) string {
		if name, ok := names[index]; ok {
			return name
		}
		return host
	}
}

func fmtSeconds(s float64) string { return strconv.FormatFloat(s, 'f', 1, 64) + " s" }

// spreadChart draws a route's p99 on each node as a dot on a log axis,
// the worst in red, with the merged p99 as a line: one slow node stands
// out from a fleet that is slow everywhere.
func spreadChart(r analyze.FleetRoute, width, height int) string {
	var b strings.Builder
	sw := newSVGWriter(&b)
	sw.start("svg", false, "xmlns", "http://www.w3.org/2000/svg", "class", "chart spread", "width", strconv.Itoa(width), "height", strconv.Itoa(height),
		"viewBox", fmt.Sprintf("0 0 %d %d", width, height), "role", "img")
	sw.element("title", "p99 per node (dots) and merged p99 (line), log scale")
	lo, hi := math.Max(math.Min(r.BestP99, r.P50), 0.001), math.Max(r.Worst().P99, r.P99)
	hi = math.Max(hi, 0.001)
	if hi <= lo*1.01 {
		lo, hi = lo/1.5, hi*1.5
	}
	const padL, padR, axisY = 6.0, 6.0, 14.0
	x := func(v float64) float64 {
		t := (math.Log10(math.Max(v, lo)) - math.Log10(lo)) / (math.Log10(hi) - math.Log10(lo))
		return padL + t*(float64(width)-padL-padR)
	}
	sw.start("line", true, "class", "axisline", "x1", ff1(padL), "x2", ff1(float64(width)-padR), "y1", ff1(axisY), "y2", ff1(axisY))
	sw.start("line", false, "class", "merged", "x1", ff1(x(r.P99)), "x2", ff1(x(r.P99)), "y1", "3", "y2", ff1(axisY+8))
	sw.element("title", "merged p99 "+fmtMs(r.P99))
	sw.end("line")
	for i := len(r.Nodes) - 1; i >= 0; i-- { // the worst drawn last, on top
		n := r.Nodes[i]
		class := "node"
		if i == 0 && len(r.Nodes) > 1 {
			class = "node worst"
		}
		sw.start("circle", false, "class", class, "cx", ff1(x(n.P99)), "cy", ff1(axisY), "r", "4")
		sw.element("title", fmt.Sprintf("%s: p99 %s over %d requests", n.Host, fmtMs(n.P99), n.Count))
		sw.end("circle")
	}
	sw.element("text", fmtMs(lo), "class", "axis", "x", ff1(padL), "y", strconv.Itoa(height-2))
	sw.element("text", fmtMs(hi), "class", "axis end", "x", ff1(float64(width)-padR), "y", strconv.Itoa(height-2))
	sw.end("svg")
	sw.flush()
	return b.String()
}

// Compact drops what the page no longer needs once the archive's part is
// laid out: every request's latency and time, kept by the analysis for the
// charts, which are drawn by now. A report of many archives keeps only the
// parts, so its memory follows the page, not the requests (the fleet view
// holds the latency lists it merges).
func (h *HTMLArchive) Compact() {
	for i := range h.Endpoints {
		h.Endpoints[i].Latencies, h.Endpoints[i].Series = nil, nil
	}
	if s := h.Summary.HTTP; s != nil {
		for i := range s.Endpoints {
			s.Endpoints[i].Latencies, s.Endpoints[i].Series = nil, nil
		}
	}
}
