package report

import (
	"bytes"
	"fmt"
	"html/template"
	"io"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/bpfsnap/bpfsnap/analyze"
)

// OffCPUUnit names the off-CPU flame graph's counts.
const OffCPUUnit = "µs off-CPU"

// OffCPUFlameOptions is what `flamegraph --off-cpu` asks for.
type OffCPUFlameOptions struct {
	Folded   bool
	Title    string
	MinWidth float64
}

// WriteOffCPUFlameGraph draws the summary's off-CPU profile as an SVG
// flame graph weighted by microseconds off the CPU (folded stacks with
// Folded): under each process a frame per wait class ("[lock]", "[disk]",
// ...), then the stack the thread blocked in; the run-queue wait that
// followed is a last "[run queue]" frame.
func WriteOffCPUFlameGraph(w io.Writer, s *analyze.Summary, o OffCPUFlameOptions) error {
	prof, err := s.RequireOffCPU()
	if err != nil {
		return err
	}
	stacks := prof.Folded()
	if o.Folded {
		return analyze.WriteFolded(w, stacks)
	}
	if o.Title == "" {
		o.Title = "Off-CPU flame graph: " + filepath.Base(s.Archive)
	}
	start, d := s.Span()
	sub := fmt.Sprintf("%.1f ms blocked, %.1f ms in the run queue, on %s, %s from %s", prof.BlockedNs/1e6, prof.RunqueueNs/1e6,
		s.Manifest.Host, d.Round(1e6), start.UTC().Format("2006-01-02 15:04:05 MST"))
	if f := s.Filter(); f.Narrowed() {
		sub += " (" + f.Describe() + ")"
	}
	return WriteFlameGraph(w, FlameTreeFromFolded(stacks), FlameOptions{Title: o.Title, Subtitle: sub, MinWidth: o.MinWidth, Unit: OffCPUUnit})
}

// Rows printed in the terminal summary; --json has the full lists.
const (
	offcpuTopStacks    = 5
	offcpuTopProcesses = 8
)

// writeOffCPUText prints the offcpu section: totals by wait class, the
// processes that waited most, the top blocked stacks and throttling.
func writeOffCPUText(out io.Writer, o *analyze.OffCPUSummary) {
	if o == nil {
		return
	}
	safe := TerminalSafe
	fmt.Fprintf(out, "\nOff-CPU: %d intervals of %d threads: %.1f ms blocked, %.1f ms in the run queue\n", o.Intervals, o.Threads, o.BlockedMs, o.RunqueueMs)
	if o.IntervalsWithoutStack > 0 {
		fmt.Fprintf(out, "  (%d intervals without a stack)\n", o.IntervalsWithoutStack)
	}
	for _, c := range o.Classes {
		fmt.Fprintf(out, "  %-11s %10.1f ms blocked %10.1f ms run queue  (%d intervals)\n", c.Class, c.BlockedMs, c.RunqueueMs, c.Intervals)
	}
	for i, p := range o.Processes {
		if i == offcpuTopProcesses {
			fmt.Fprintf(out, "  ... %d more processes\n", len(o.Processes)-i)
			break
		}
		fmt.Fprintf(out, "  %8d  %-16s %10.1f ms blocked %10.1f ms run queue\n", p.PID, safe(p.Comm), p.BlockedMs, p.RunqueueMs)
	}
	for i, st := range o.Stacks {
		if i == offcpuTopStacks {
			break
		}
		fmt.Fprintf(out, "  %10.1f ms %-10s %s [%d]: %s\n", st.Ms, st.Class, safe(st.Process), st.PID, safe(shortStack(st.Stack, 4)))
	}
	// A node has a limit on every pod: the throttled ones are the news.
	listed := 0
	for _, c := range o.Cgroups {
		if c.ThrottledPeriods > 0 && listed < offcpuTopProcesses {
			writeThrottleText(out, "  cgroup", &c)
			listed++
		}
	}
	if rest := len(o.Cgroups) - listed; rest > 0 {
		fmt.Fprintf(out, "  %d more cgroups with a CPU limit (--json lists them)\n", rest)
	}
	for i, p := range o.Pods {
		if i == offcpuTopProcesses {
			fmt.Fprintf(out, "  ... %d more pods\n", len(o.Pods)-i)
			break
		}
		fmt.Fprintf(out, "  pod %s/%s: %.1f ms in the run queue, %.1f ms blocked\n", safe(p.Namespace), safe(p.Pod), p.RunqueueMs, p.BlockedMs)
	}
}

func writeThrottleText(out io.Writer, prefix string, t *analyze.CgroupThrottle) {
	limit := "no limit"
	if t.QuotaCPUs > 0 {
		limit = fmt.Sprintf("limit %.2f CPUs", t.QuotaCPUs)
	}
	partial := ""
	if t.Partial {
		partial = " (seen at one end of the window only)"
	}
	fmt.Fprintf(out, "%s v%d %s: %s, throttled %d of %d periods (%.1f%%), %.1f ms; run queue %.1f ms%s\n", prefix, t.Version,
		TerminalSafe(t.Path), limit, t.ThrottledPeriods, t.Periods, t.ThrottledPct, t.ThrottledMs, t.RunqueueMs, partial)
}

// shortStack names a stack by its first user frames (where the program
// waited), falling back to the kernel's, leaf first: "a < b < c".
func shortStack(stack []string, n int) string {
	var user []string
	for _, f := range stack {
		if !strings.HasSuffix(f, analyze.KernelSuffix) {
			user = append(user, f)
		}
	}
	if len(user) == 0 {
		user = stack
	}
	if len(user) == 0 {
		return "[no stack]"
	}
	return strings.Join(user[:min(n, len(user))], " < ")
}

// splitLine is one line saying where a time split went.
func splitLine(ts *analyze.TimeSplit) string {
	pct := func(ms float64) string { return strconv.FormatFloat(100*ts.Share(ms), 'f', 0, 64) + "%" }
	parts := []string{"on CPU " + pct(ts.OnCPUMs)}
	if ts.OnCPUSource == analyze.OnCPUFromScheduler {
		for _, c := range analyze.WaitClasses {
			if v := ts.OffCPUByClassMs[c]; ts.Share(v) >= 0.005 {
				parts = append(parts, c+" "+pct(v))
			}
		}
		parts = append(parts, "run queue "+pct(ts.RunqueueMs))
	} else {
		parts[0] += " (from samples; capture -p offcpu for the rest)"
	}
	return strings.Join(parts, ", ")
}

// writeTimeSplitsText prints, under the HTTP table, where each server
// endpoint's time went and the stack it mostly blocked or ran in.
func writeTimeSplitsText(out io.Writer, h *analyze.HTTPSummary) {
	any := false
	for i, e := range h.Endpoints {
		if i == 20 || e.TimeSplit == nil {
			continue
		}
		if !any {
			fmt.Fprintln(out, "  where the time went (the serving thread, inside each request):")
			any = true
		}
		ts := e.TimeSplit
		fmt.Fprintf(out, "  %s %s: %s\n", TerminalSafe(e.Method), TerminalSafe(e.Route), splitLine(ts))
		if len(ts.BlockedStacks) > 0 && ts.Dominant != "on_cpu" && ts.Dominant != "runqueue" {
			b := ts.BlockedStacks[0]
			fmt.Fprintf(out, "      blocked %.1f ms (%s) in %s\n", b.Ms, b.Class, TerminalSafe(shortStack(b.Stack, 4)))
		} else if len(ts.CPUStacks) > 0 {
			c := ts.CPUStacks[0]
			fmt.Fprintf(out, "      on CPU ~%.1f ms in %s\n", c.Ms, TerminalSafe(shortStack(c.Stack, 4)))
		}
		if t := ts.Throttling; t != nil {
			writeThrottleText(out, "      its cgroup was throttled:", t)
		}
	}
	if slow := analyze.SlowRequestsSplit(h); slow != nil {
		fmt.Fprintf(out, "  the %d slowest requests: %s\n", slow.Requests, splitLine(slow))
	}
}

// offcpuView is the report's off-CPU section of one archive.
type offcpuView struct {
	Summary *analyze.OffCPUSummary
	Flame   template.HTML
	Slices  []sliceView
}

// buildOffCPUView draws the off-CPU flame graphs: the whole window and the
// same time slices as the CPU section.
func buildOffCPUView(s *analyze.Summary) (*offcpuView, string, error) {
	prof := s.OffCPUProfile()
	if prof == nil || len(prof.Stacks) == 0 {
		return nil, "", nil
	}
	folded := prof.Folded()
	var fb bytes.Buffer
	if err := analyze.WriteFolded(&fb, folded); err != nil {
		return nil, "", err
	}
	v := &offcpuView{Summary: s.OffCPU}
	var err error
	if v.Flame, err = offFlameHTML(folded, "Off-CPU: whole window", wholeMinWidth); err != nil {
		return nil, "", err
	}
	for _, sl := range prof.Slices {
		label := fmt.Sprintf("%.1f–%.1f s", sl.From.Seconds(), sl.To.Seconds())
		fl, err := offFlameHTML(sl.Profile.Folded(), "Off-CPU: "+label, sliceMinWidth)
		if err != nil {
			return nil, "", err
		}
		v.Slices = append(v.Slices, sliceView{Label: label, Packed: pack(string(fl))})
	}
	return v, fb.String(), nil
}

func offFlameHTML(folded []analyze.FoldedStack, title string, minWidth float64) (template.HTML, error) {
	var b bytes.Buffer
	err := WriteFlameGraph(&b, FlameTreeFromFolded(folded), FlameOptions{Title: title, OmitScript: true, MinWidth: minWidth, Width: 1160, Unit: OffCPUUnit})
	return template.HTML(b.String()), err
}

// splitColors are the time split bar's colours: on CPU, run queue, then
// one per wait class (analyze.WaitClasses order).
var splitColors = map[string]string{
	"on_cpu": "#e8743b", "runqueue": "#b07aa1",
	analyze.WaitLock: "#d64550", analyze.WaitDisk: "#8c6d31", analyze.WaitNetwork: "#4e79a7", analyze.WaitSleep: "#76b7b2",
	analyze.WaitPageFault: "#9c755f", analyze.WaitIdle: "#bab0ac", analyze.WaitPreempted: "#b07aa1", analyze.WaitNewThread: "#b07aa1", analyze.WaitOther: "#9d9d9d",
}

// timeSplitBar draws a split as one horizontal bar of its parts, each with
// a title naming it, and the unaccounted rest (on-CPU from samples) blank.
func timeSplitBar(ts *analyze.TimeSplit, width, height int) template.HTML {
	var b strings.Builder
	sw := newSVGWriter(&b)
	sw.start("svg", false, "xmlns", "http://www.w3.org/2000/svg", "class", "chart split", "width", strconv.Itoa(width), "height", strconv.Itoa(height),
		"viewBox", fmt.Sprintf("0 0 %d %d", width, height), "role", "img")
	sw.element("title", "where the time went: "+splitLine(ts))
	x := 0.0
	part := func(name string, ms float64) {
		w := float64(width) * ts.Share(ms)
		if w <= 0 {
			return
		}
		w = min(w, float64(width)-x)
		sw.start("rect", false, "x", ff1(x), "y", "0", "width", ff1(w), "height", strconv.Itoa(height), "fill", splitColors[name])
		sw.element("title", fmt.Sprintf("%s: %s (%.0f%%)", strings.ReplaceAll(name, "_", " "), fmtMs(ms), 100*ts.Share(ms)))
		sw.end("rect")
		x += w
	}
	part("on_cpu", ts.OnCPUMs)
	for _, c := range analyze.WaitClasses {
		part(c, ts.OffCPUByClassMs[c])
	}
	part("runqueue", ts.RunqueueMs)
	sw.end("svg")
	sw.flush()
	return template.HTML(b.String())
}

// slowTime is the "where did the slow requests' time go" card.
type slowTime struct {
	Split   *analyze.TimeSplit
	Archive string
	Pct     float64
	Label   string
	Where   string // the top blocked (or CPU) stack, short
	Bar     template.HTML
}

// slowTimeCard picks, over the archives, the slow requests' split with the
// most requests.
func slowTimeCard(prev *slowTime, a *HTMLArchive) *slowTime {
	ts := analyze.SlowRequestsSplit(a.Summary.HTTP)
	if ts == nil || ts.OnCPUSource != analyze.OnCPUFromScheduler || (prev != nil && prev.Split.Requests >= ts.Requests) {
		return prev // without the offcpu probe, only on-CPU time is known
	}
	c := &slowTime{Split: ts, Archive: a.Name, Pct: 100 * ts.Share(ts.DominantMs()), Bar: timeSplitBar(ts, 240, 12)}
	switch ts.Dominant {
	case "on_cpu":
		c.Label = "on the CPU"
	case "runqueue":
		c.Label = "waiting for a CPU (run queue)"
	default:
		c.Label = "blocked: " + strings.ReplaceAll(ts.Dominant, "_", " ")
	}
	for _, st := range ts.BlockedStacks {
		if st.Class == ts.Dominant {
			c.Where = shortStack(st.Stack, 3)
			break
		}
	}
	return c
}

// templateFuncs are the off-CPU section's template helpers.
var offcpuTemplateFuncs = template.FuncMap{
	"splitBar":   func(ts *analyze.TimeSplit) template.HTML { return timeSplitBar(ts, 360, 14) },
	"splitLine":  splitLine,
	"shortStack": func(st []string) string { return shortStack(st, 3) },
}
