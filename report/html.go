package report

import (
	"bytes"
	_ "embed"
	"fmt"
	"html/template"
	"io"
	"path/filepath"
	"sort"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/bpfsnap/bpfsnap/analyze"
	"github.com/bpfsnap/bpfsnap/formats"
	"github.com/bpfsnap/bpfsnap/internal/safetext"
)

var (
	//go:embed html.tmpl
	htmlTemplate string
	//go:embed report.css
	reportCSS string
	//go:embed report.js
	reportJS string
)

// DefaultSlices is how many time slices of the window get their own flame
// graph in the report (selected from the samples-over-time chart): the
// report's callers ask the analysis for them (analyze.Request.Slices).
const DefaultSlices = 6

// HTMLOptions configures the HTML report.
type HTMLOptions struct {
	Version string
	// Now stamps the page; time.Now when zero (tests pin it).
	Now time.Time
	// Fleet, for a report of several archives, adds the fleet section
	// (report/fleet.go): analyze.Fleet's view over the same archives.
	Fleet *analyze.FleetSummary
}

// Limits that keep the page small (the goal: under 5 MB for a 60 s demo
// capture) without hiding the answer: the worst endpoints get charts, the
// rest are rows in the table.
const (
	chartedEndpoints = 8
	listedFunctions  = 30
	// Flame graph frames narrower than these (in pixels of a 1160 px graph)
	// are pruned, with the pruned total shown: they cannot be seen or
	// clicked, and a busy host's thousands of them would make the page
	// tens of megabytes.
	wholeMinWidth = 0.3
	sliceMinWidth = 1.0
)

// HTMLArchive is one archive's part of the report, computed by
// BuildHTMLArchive.
type HTMLArchive struct {
	Name      string
	Summary   *analyze.Summary
	Start     string
	Duration  string
	Probes    []probeView
	Endpoints []endpointView
	Slowest   []analyze.HTTPExchange
	CPU       *cpuView
	Mem       *memView
	Growth    *growthView
	// Folded holds the archive's folded CPU stacks, for the download.
	Folded string
	// OffCPU is the off-CPU section (report/offcpu.go) and FoldedOffCPU
	// its folded stacks, for the download.
	OffCPU       *offcpuView
	FoldedOffCPU string
	// Compare is the comparison with a baseline (AddBaseline), or nil.
	Compare *compareView
}

type probeView struct {
	Name, Status, Detail string
	OK                   bool
}

type endpointView struct {
	analyze.HTTPEndpoint
	ErrPct    float64
	Proto     string // "HTTP/1.x", "HTTP/2", "gRPC", with " · TLS"
	Codes     map[string]int64
	Histogram template.HTML
	OverTime  template.HTML
	// Baseline is the endpoint in the comparison (AddBaseline), or nil.
	Baseline *analyze.EndpointDiff
}

type cpuView struct {
	Summary   *analyze.CPUSummary
	Flame     template.HTML
	Timeline  template.HTML
	Slices    []sliceView
	Functions []analyze.CPUFunction
	TopProcs  []analyze.CPUProcess
}

type memView struct {
	Summary *analyze.MemSummary
	Leaks   []leakView
	Flame   template.HTML
}

type leakView struct {
	analyze.MemLeak
	Sparkline template.HTML
}

// sliceView is a time slice's flame graph, packed (pack): unpacked in the
// browser when the slice is first shown.
type sliceView struct {
	Label  string
	Packed string
}

// BuildHTMLArchive lays out one archive's analysis for the report: the
// summary, charts for the worst endpoints, and the flame graphs (whole
// window and the time slices the summary was analyzed with, see
// DefaultSlices). It runs no analysis of its own.
func BuildHTMLArchive(s *analyze.Summary) (*HTMLArchive, error) {
	var err error
	m := s.Manifest
	h := &HTMLArchive{
		Name:     filepath.Base(s.Archive),
		Summary:  s,
		Start:    m.Window.StartWall.UTC().Format("2006-01-02 15:04:05 UTC"),
		Duration: m.Window.Duration().Round(time.Millisecond).String(),
	}
	for _, p := range m.Probes {
		pv := probeView{Name: p.Name, OK: p.Attached, Status: "attached"}
		if !p.Attached {
			pv.Status, pv.Detail = "failed", p.Error
		} else {
			var kv []string
			for k, v := range p.Details {
				kv = append(kv, k+"="+v)
			}
			sort.Strings(kv)
			pv.Detail = strings.Join(kv, ", ")
		}
		h.Probes = append(h.Probes, pv)
	}
	if s.HTTP != nil {
		windowS := m.Window.Duration().Seconds()
		for i, e := range s.HTTP.Endpoints {
			ev := endpointView{HTTPEndpoint: e, Proto: ProtocolLabel(e), Codes: e.Status}
			if e.GRPCStatus != nil {
				ev.Codes = e.GRPCStatus
			}
			if e.Count > 0 {
				ev.ErrPct = 100 * float64(e.Errors) / float64(e.Count)
			}
			if i < chartedEndpoints {
				ev.Histogram = template.HTML(latencyHistogram(e.Latencies, 260, 70))
				ev.OverTime = template.HTML(latencyOverTime(e.Series, windowS, 260, 70))
			}
			h.Endpoints = append(h.Endpoints, ev)
		}
		h.Slowest = s.HTTP.Slowest
	}
	if s.Mem != nil {
		mv := &memView{Summary: s.Mem}
		for i, l := range s.Mem.Leaks {
			if i == 20 {
				break
			}
			mv.Leaks = append(mv.Leaks, leakView{MemLeak: l, Sparkline: template.HTML(sparkline(l.Growth, 160, 28))})
		}
		if folded := analyze.MemFolded(s.Mem); len(folded) > 0 {
			var b bytes.Buffer
			if err := WriteFlameGraph(&b, FlameTreeFromFolded(folded), FlameOptions{Title: "Outstanding memory by allocation stack", Unit: "bytes", OmitScript: true, Width: 1160}); err != nil {
				return nil, err
			}
			mv.Flame = template.HTML(b.String())
		}
		h.Mem = mv
	}
	if s.Growth != nil {
		if h.Growth, err = buildGrowthView(s); err != nil {
			return nil, err
		}
	}
	if s.CPU != nil && s.CPU.Samples > 0 {
		if h.CPU, h.Folded, err = buildCPUView(s); err != nil {
			return nil, err
		}
	}
	if h.OffCPU, h.FoldedOffCPU, err = buildOffCPUView(s); err != nil {
		return nil, err
	}
	return h, nil
}

// buildCPUView draws the CPU section from the profile the summary was
// made from: the whole window and its slices come from one pass over the
// samples (analyze.Options.Slices), not one pass per graph.
func buildCPUView(s *analyze.Summary) (*cpuView, string, error) {
	prof := s.CPUProfile()
	folded := prof.Folded(analyze.FoldOptions{})
	var fb bytes.Buffer
	if err := analyze.WriteFolded(&fb, folded); err != nil {
		return nil, "", err
	}
	v := &cpuView{Summary: s.CPU, Functions: s.CPU.Functions, TopProcs: s.CPU.Processes}
	if len(v.Functions) > listedFunctions {
		v.Functions = v.Functions[:listedFunctions]
	}
	if len(v.TopProcs) > 8 {
		v.TopProcs = v.TopProcs[:8]
	}
	flame, err := flameHTML(folded, "CPU: whole window", wholeMinWidth)
	if err != nil {
		return nil, "", err
	}
	v.Flame = flame
	// One flame graph per time slice, so a reader can compare before and
	// during a spike.
	for _, sl := range prof.Slices {
		label := fmt.Sprintf("%.1f–%.1f s", sl.From.Seconds(), sl.To.Seconds())
		fl, err := flameHTML(sl.Profile.Folded(analyze.FoldOptions{}), "CPU: "+label, sliceMinWidth)
		if err != nil {
			return nil, "", err
		}
		v.Slices = append(v.Slices, sliceView{Label: label, Packed: pack(string(fl))})
	}
	tl := s.CPU.Timeline
	v.Timeline = template.HTML(timelineChart(tl.Samples, len(prof.Slices), 1160, 60, float64(tl.StepNs)/1e9))
	return v, fb.String(), nil
}

// flameHTML renders an inline flame graph; the page includes the script once.
func flameHTML(folded []analyze.FoldedStack, title string, minWidth float64) (template.HTML, error) {
	var b bytes.Buffer
	err := WriteFlameGraph(&b, FlameTreeFromFolded(folded), FlameOptions{Title: title, OmitScript: true, MinWidth: minWidth, Width: 1160})
	return template.HTML(b.String()), err
}

type glance struct {
	WorstEndpoint *endpointView
	WorstArchive  string
	BiggestLeak   *analyze.MemLeak
	// OutsideLibc replaces the leak card when a process's memory grows
	// outside libc by more than the biggest libc leak holds.
	OutsideLibc *analyze.MemOutsideLibc
	HotFunction *analyze.CPUFunction
	HotArchive  string
	Warnings    int
	SlowTime    *slowTime
}

type pageData struct {
	Title     string
	Generated string
	Version   string
	Archives  []*HTMLArchive
	Glance    glance
	Warnings  []string
	CSS       template.CSS
	JS        template.JS
	FlameJS   template.JS
	// Data is embedded as JSON for the downloads.
	Data         []*analyze.Summary
	Folded       string
	FoldedOffCPU string
	// Fleet is the fleet section, nil for one archive.
	Fleet *fleetView
}

// WriteHTML writes one self-contained page for one or more archives (one
// per node, say): everything inline, no external resources.
func WriteHTML(w io.Writer, archives []*HTMLArchive, opts HTMLOptions) error {
	now := opts.Now
	if now.IsZero() {
		now = time.Now()
	}
	p := pageData{
		Title:     "bpfsnap report",
		Generated: now.UTC().Format("2006-01-02 15:04 UTC"),
		Version:   opts.Version,
		Archives:  archives,
		CSS:       template.CSS(reportCSS + diffCSS),
		JS:        template.JS(reportJS),
		FlameJS:   template.JS(FlameGraphScript()),
	}
	var hosts []string
	var folded, foldedOff strings.Builder
	for _, a := range archives {
		m := a.Summary.Manifest
		hosts = append(hosts, m.Host)
		p.Data = append(p.Data, a.Summary)
		for _, wmsg := range a.Summary.Warnings {
			if len(archives) > 1 {
				wmsg = a.Name + ": " + wmsg
			}
			p.Warnings = append(p.Warnings, wmsg)
		}
		folded.WriteString(a.Folded)
		foldedOff.WriteString(a.FoldedOffCPU)
		p.Glance.SlowTime = slowTimeCard(p.Glance.SlowTime, a)
		for i := range a.Endpoints {
			e := &a.Endpoints[i]
			if worseEndpoint(e, p.Glance.WorstEndpoint) {
				p.Glance.WorstEndpoint, p.Glance.WorstArchive = e, a.Name
			}
		}
		if a.Mem != nil {
			glanceMem(&p.Glance, a.Mem.Summary)
		}
		if a.CPU != nil {
			for i := range a.CPU.Summary.Functions {
				f := &a.CPU.Summary.Functions[i]
				if g := p.Glance.HotFunction; g == nil || f.SelfPct > g.SelfPct {
					p.Glance.HotFunction, p.Glance.HotArchive = f, a.Name
				}
			}
		}
	}
	if o, l := p.Glance.OutsideLibc, p.Glance.BiggestLeak; o != nil && l != nil && l.Bytes >= max(o.GrowingBytes, 1) {
		p.Glance.OutsideLibc = nil
	}
	p.Glance.Warnings = len(p.Warnings)
	p.Folded = pack(folded.String())
	if foldedOff.Len() > 0 {
		p.FoldedOffCPU = pack(foldedOff.String())
	}
	p.Title = "bpfsnap report: " + strings.Join(hosts, ", ")
	if opts.Fleet != nil {
		var err error
		if p.Fleet, err = buildFleetView(opts.Fleet, archives); err != nil {
			return err
		}
		// The fleet section's script runs in the page's own script block
		// (a page has no other).
		p.JS += template.JS("\n" + fleetJS)
	}
	t, err := template.New("report").Funcs(template.FuncMap{
		"ms":    fmtMs,
		"pct":   func(v float64) string { return fmt.Sprintf("%.1f%%", v) },
		"f1":    func(v float64) string { return fmt.Sprintf("%.1f", v) },
		"bytes": func(v uint64) string { return HumanBytes(int64(v)) },
		"f3":    func(v float64) string { return fmt.Sprintf("%.3f", v) },
		"ts":    func(t time.Time) string { return t.UTC().Format("15:04:05.000") },
		"statusList": func(m map[string]int64) string {
			var keys []string
			for k := range m {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			var parts []string
			for _, k := range keys {
				parts = append(parts, fmt.Sprintf("%s×%d", k, m[k]))
			}
			return strings.Join(parts, " ")
		},
	}).Funcs(offcpuTemplateFuncs).Funcs(compareFuncs).Parse(htmlTemplate)
	if err == nil {
		t, err = t.Parse(diffTemplate)
	}
	if err != nil {
		return err
	}
	var page bytes.Buffer
	if err := t.Execute(&page, p); err != nil {
		return err
	}
	_, err = io.WriteString(w, pageSafe(page.String()))
	return err
}

// pageSafe writes control characters (but tab and newlines), C1 controls,
// Unicode format characters (bidi overrides) and invalid UTF-8 as visible
// escapes, like TerminalSafe. html/template escapes markup but passes
// those through from workload strings, and they have no business in a page:
// they are parse errors, and bidi overrides reorder what the reader sees.
// The page's own markup, styles and scripts contain none of them, and the
// embedded JSON already escapes them, so this only touches workload text.
func pageSafe(page string) string {
	var b strings.Builder
	last := 0
	for i := 0; i < len(page); {
		r, size := utf8.DecodeRuneInString(page[i:])
		var esc string
		switch {
		case r == '\t' || r == '\n' || r == '\r':
		case r == utf8.RuneError && size == 1:
			esc = fmt.Sprintf(`\x%02x`, page[i])
		case r < 0x100 && safetext.Unsafe(r):
			esc = fmt.Sprintf(`\x%02x`, r)
		case safetext.Unsafe(r):
			esc = fmt.Sprintf(`\u%04x`, r)
		}
		if esc != "" {
			if b.Len() == 0 {
				b.Grow(len(page) + 64)
			}
			b.WriteString(page[last:i])
			b.WriteString(esc)
			last = i + size
		}
		i += size
	}
	if last == 0 {
		return page
	}
	b.WriteString(page[last:])
	return b.String()
}

// glanceMem takes an archive's memory headline candidates: its biggest leak
// among processes that allocate through libc (a Go service's loader
// allocation of a few hundred bytes is no headline), and its process that
// grows most outside libc.
func glanceMem(g *glance, m *analyze.MemSummary) {
	outside := map[uint32]bool{}
	for i := range m.OutsideLibc {
		o := &m.OutsideLibc[i]
		outside[o.PID] = true
		if g.OutsideLibc == nil || o.GrowingBytes > g.OutsideLibc.GrowingBytes {
			g.OutsideLibc = o
		}
	}
	for i := range m.Leaks {
		l := &m.Leaks[i]
		if outside[l.PID] {
			continue
		}
		if g.BiggestLeak == nil || l.Bytes > g.BiggestLeak.Bytes {
			g.BiggestLeak = l
		}
		break
	}
}

// worseEndpoint ranks endpoints for the "worst endpoint" card: a server's
// view first (that is the service the incident is about; the same
// requests seen by a client on the node are a mirror), then by p99.
func worseEndpoint(e, than *endpointView) bool {
	if than == nil {
		return true
	}
	if (e.Role == formats.RoleServer) != (than.Role == formats.RoleServer) {
		return e.Role == formats.RoleServer
	}
	return e.P99 > than.P99
}
