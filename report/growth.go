package report

import (
	"fmt"
	"html/template"
	"io"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/bpfsnap/bpfsnap/analyze"
)

// WriteGrowthFlameGraph draws the growth section as a flame graph weighted
// by the bytes each stack made resident (anonymous and shared memory), or
// folded stacks whose counts are bytes. A summary without growth data is
// an error.
func WriteGrowthFlameGraph(w io.Writer, s *analyze.Summary, o CPUFlameOptions) error {
	g, err := s.RequireGrowth()
	if err != nil {
		return err
	}
	return writeFoldedOrFlame(w, analyze.GrowthFolded(g), o.Folded, "Memory growth flame graph: "+filepath.Base(s.Archive),
		FlameOptions{Title: o.Title, Subtitle: growthSubtitle(s, g), Unit: "bytes", MinWidth: o.MinWidth})
}

func growthSubtitle(s *analyze.Summary, g *analyze.GrowthSummary) string {
	start, d := s.Span()
	sub := fmt.Sprintf("%s made resident (anonymous and shared memory) on %s, %s from %s", HumanBytes(int64(g.Bytes)), s.Manifest.Host,
		d.Round(1e6), start.UTC().Format("2006-01-02 15:04:05 MST"))
	if g.Estimated {
		sub += fmt.Sprintf(", estimated from one sample per %s", HumanBytes(int64(g.SampleBytes)))
	}
	if f := s.Filter(); f.Narrowed() {
		sub += " (" + f.Describe() + ")"
	}
	return sub
}

// writeGrowthText prints the growth section for `analyze`.
func writeGrowthText(out io.Writer, g *analyze.GrowthSummary) {
	if g == nil {
		return
	}
	safe := TerminalSafe
	fmt.Fprintf(out, "\nMemory growth: %s made resident (anonymous and shared), %s of file pages mapped in, %d events",
		HumanBytes(int64(g.Bytes)), HumanBytes(int64(g.FileBytes)), g.Events)
	if g.Estimated {
		fmt.Fprintf(out, " (estimates: one sample per %s on average)", HumanBytes(int64(g.SampleBytes)))
	}
	fmt.Fprintln(out)
	for i, p := range g.Processes {
		if i == 10 {
			fmt.Fprintf(out, "  ... %d more processes\n", len(g.Processes)-i)
			break
		}
		fmt.Fprintf(out, "  %10s made resident by %s [%d]", HumanBytes(int64(p.Bytes)), safe(p.Process), p.PID)
		if p.ExactBytes > 0 {
			fmt.Fprintf(out, " (exactly %s over the window)", HumanBytes(int64(p.ExactBytes)))
		}
		if len(p.RSS) > 0 {
			fmt.Fprintf(out, "; RSS %s -> %s (peak %s), data mappings %+d MiB", HumanBytes(int64(p.RSSStartBytes)), HumanBytes(int64(p.RSSEndBytes)),
				HumanBytes(int64(p.RSSPeakBytes)), p.VMDataGrowthBytes>>20)
		}
		fmt.Fprintln(out)
	}
	for i, st := range g.Stacks {
		if i == 10 {
			break
		}
		fmt.Fprintf(out, "  %10s %s [%d]: %s\n", HumanBytes(int64(st.Bytes)), safe(st.Process), st.PID, safe(growthSite(st.Stack)))
	}
}

// growthSite names where a growth stack touched memory: its first user
// frames (the kernel's fault handling is the same in every stack).
func growthSite(stack []string) string {
	var user []string
	for _, f := range stack {
		if strings.HasSuffix(f, analyze.KernelSuffix) {
			continue
		}
		user = append(user, f)
		if len(user) == 3 {
			break
		}
	}
	if len(user) == 0 {
		if len(stack) == 0 {
			return "[no stack]"
		}
		return stack[0]
	}
	return strings.Join(user, " < ")
}

// growthView is the report's growth section.
type growthView struct {
	Summary *analyze.GrowthSummary
	RSS     []rssView
	Flame   template.HTML
	Stacks  []growthStackView
}

type rssView struct {
	analyze.GrowthProcess
	Chart template.HTML
}

type growthStackView struct {
	analyze.GrowthStack
	Site string
}

// maxRSSCharts bounds the RSS curves drawn: the processes that grew most.
const maxRSSCharts = 8

func buildGrowthView(s *analyze.Summary) (*growthView, error) {
	g := s.Growth
	v := &growthView{Summary: g}
	windowS := s.Manifest.Window.Duration().Seconds()
	for _, p := range g.Processes {
		if len(p.RSS) == 0 || len(v.RSS) == maxRSSCharts {
			continue
		}
		v.RSS = append(v.RSS, rssView{GrowthProcess: p, Chart: template.HTML(rssChart(p.RSS, windowS, 560, 90))})
	}
	for i, st := range g.Stacks {
		if i == 15 {
			break
		}
		v.Stacks = append(v.Stacks, growthStackView{GrowthStack: st, Site: growthSite(st.Stack)})
	}
	if folded := analyze.GrowthFolded(g); len(folded) > 0 {
		var b strings.Builder
		if err := WriteFlameGraph(&b, FlameTreeFromFolded(folded), FlameOptions{Title: "Memory made resident by stack", Unit: "bytes",
			OmitScript: true, MinWidth: wholeMinWidth, Width: 1160}); err != nil {
			return nil, err
		}
		v.Flame = template.HTML(b.String())
	}
	return v, nil
}

// rssChart draws a process's resident set (and its anonymous part) over
// the window.
func rssChart(points []analyze.RSSPoint, windowS float64, width, height int) string {
	var b strings.Builder
	sw := newSVGWriter(&b)
	sw.start("svg", false, "xmlns", "http://www.w3.org/2000/svg", "class", "chart rss", "width", strconv.Itoa(width), "height", strconv.Itoa(height),
		"viewBox", fmt.Sprintf("0 0 %d %d", width, height), "role", "img")
	var maxv uint64
	for _, p := range points {
		maxv = max(maxv, p.Bytes)
	}
	sw.element("title", "resident set over the window, max "+HumanBytes(int64(maxv)))
	if len(points) > 0 && maxv > 0 && windowS > 0 {
		padB, padL := 16, 4
		plotW, plotH := float64(width-2*padL), float64(height-padB-4)
		line := func(value func(analyze.RSSPoint) uint64, class string) {
			var path strings.Builder
			for i, p := range points {
				x := float64(padL) + plotW*min(p.T/windowS, 1)
				y := 4 + plotH - plotH*float64(value(p))/float64(maxv)
				cmd := "L"
				if i == 0 {
					cmd = "M"
				}
				fmt.Fprintf(&path, "%s%s %s", cmd, ff1(x), ff1(y))
			}
			sw.start("path", true, "class", class, "d", path.String())
		}
		line(func(p analyze.RSSPoint) uint64 { return p.Bytes }, "line")
		line(func(p analyze.RSSPoint) uint64 { return p.AnonBytes }, "line anon")
		sw.element("text", "0 s", "class", "axis", "x", strconv.Itoa(padL), "y", strconv.Itoa(height-3))
		sw.element("text", ff1(windowS)+" s", "class", "axis end", "x", strconv.Itoa(width-padL), "y", strconv.Itoa(height-3))
		sw.element("text", "max "+HumanBytes(int64(maxv)), "class", "axis", "x", strconv.Itoa(padL+2), "y", "12")
	}
	sw.end("svg")
	sw.flush()
	return b.String()
}
