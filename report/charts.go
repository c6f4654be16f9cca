package report

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

// Charts for the HTML report, drawn in Go as small inline SVGs through the
// escaping svgWriter. Numbers carry units in their labels and titles.

func ff1(v float64) string { return strconv.FormatFloat(v, 'f', 1, 64) }

// fmtMs formats a latency for labels: µs below 1 ms, ms above.
func fmtMs(ms float64) string {
	switch {
	case ms < 1:
		return strconv.FormatFloat(ms*1000, 'f', 0, 64) + " µs"
	case ms < 100:
		return strconv.FormatFloat(ms, 'f', 2, 64) + " ms"
	default:
		return strconv.FormatFloat(ms, 'f', 0, 64) + " ms"
	}
}

// latencyHistogram draws the distribution of sorted latencies (ms) on a
// log-scale x axis, so a fast mode and a slow tail both show.
func latencyHistogram(sorted []float64, width, height int) string {
	var b strings.Builder
	sw := newSVGWriter(&b)
	sw.start("svg", false, "xmlns", "http://www.w3.org/2000/svg", "class", "chart", "width", strconv.Itoa(width), "height", strconv.Itoa(height),
		"viewBox", fmt.Sprintf("0 0 %d %d", width, height), "role", "img")
	sw.element("title", "latency histogram (log scale)")
	if len(sorted) == 0 {
		sw.end("svg")
		sw.flush()
		return b.String()
	}
	lo, hi := math.Max(sorted[0], 0.001), math.Max(sorted[len(sorted)-1], 0.001)
	if hi <= lo {
		hi = lo * 1.5
	}
	llo, lhi := math.Log10(lo), math.Log10(hi)
	const bins = 40
	counts := make([]int, bins)
	for _, v := range sorted {
		i := int(float64(bins) * (math.Log10(math.Max(v, 0.001)) - llo) / (lhi - llo))
		counts[min(max(i, 0), bins-1)]++
	}
	maxc := 0
	for _, c := range counts {
		maxc = max(maxc, c)
	}
	padB, padL := 16, 4
	plotH := float64(height - padB - 4)
	bw := float64(width-2*padL) / bins
	for i, c := range counts {
		if c == 0 {
			continue
		}
		h := plotH * float64(c) / float64(maxc)
		from := math.Pow(10, llo+(lhi-llo)*float64(i)/bins)
		to := math.Pow(10, llo+(lhi-llo)*float64(i+1)/bins)
		sw.start("rect", false, "class", "bar", "x", ff1(float64(padL)+float64(i)*bw), "y", ff1(4+plotH-h), "width", ff1(math.Max(bw-1, 1)), "height", ff1(h))
		sw.element("title", fmt.Sprintf("%s – %s: %d requests", fmtMs(from), fmtMs(to), c))
		sw.end("rect")
	}
	sw.element("text", fmtMs(lo), "class", "axis", "x", strconv.Itoa(padL), "y", strconv.Itoa(height-3))
	sw.element("text", fmtMs(hi), "class", "axis end", "x", strconv.Itoa(width-padL), "y", strconv.Itoa(height-3))
	sw.end("svg")
	sw.flush()
	return b.String()
}

// maxPoints bounds the points of a latency-over-time chart: beyond it the
// series is reduced to the slowest request of each pixel column, which is
// what a reader looks for.
const maxPoints = 600

// latencyOverTime draws each request as a dot at (time in window, latency).
func latencyOverTime(series [][2]float64, windowS float64, width, height int) string {
	var b strings.Builder
	sw := newSVGWriter(&b)
	sw.start("svg", false, "xmlns", "http://www.w3.org/2000/svg", "class", "chart", "width", strconv.Itoa(width), "height", strconv.Itoa(height),
		"viewBox", fmt.Sprintf("0 0 %d %d", width, height), "role", "img")
	sw.element("title", "latency over time")
	maxv := 0.0
	for _, p := range series {
		maxv = math.Max(maxv, p[1])
	}
	if len(series) == 0 || windowS <= 0 || maxv <= 0 {
		sw.end("svg")
		sw.flush()
		return b.String()
	}
	padB, padL := 16, 4
	plotW, plotH := float64(width-2*padL), float64(height-padB-4)
	cols := map[int][2]float64{}
	for _, p := range series {
		c := int(plotW * p[0] / windowS)
		if old, ok := cols[c]; !ok || p[1] > old[1] {
			cols[c] = p
		}
	}
	points := series
	if len(series) > maxPoints {
		points = points[:0:0]
		for _, p := range cols {
			points = append(points, p)
		}
	}
	var path strings.Builder
	for _, p := range points {
		x := float64(padL) + plotW*p[0]/windowS
		y := 4 + plotH - plotH*p[1]/maxv
		fmt.Fprintf(&path, "M%s %sh0.1", ff1(x), ff1(y))
	}
	sw.start("path", true, "class", "dots", "d", path.String())
	sw.element("text", "0 s", "class", "axis", "x", strconv.Itoa(padL), "y", strconv.Itoa(height-3))
	sw.element("text", ff1(windowS)+" s", "class", "axis end", "x", strconv.Itoa(width-padL), "y", strconv.Itoa(height-3))
	sw.element("text", "max "+fmtMs(maxv), "class", "axis", "x", strconv.Itoa(padL+2), "y", "12")
	sw.end("svg")
	sw.flush()
	return b.String()
}

// timelineChart draws samples per time bucket; each bar carries the slice
// index the page's script uses to switch flame graphs.
func timelineChart(counts []uint64, slices int, width, height int, stepS float64) string {
	var b strings.Builder
	sw := newSVGWriter(&b)
	sw.start("svg", false, "xmlns", "http://www.w3.org/2000/svg", "class", "chart timeline", "width", strconv.Itoa(width), "height", strconv.Itoa(height),
		"viewBox", fmt.Sprintf("0 0 %d %d", width, height), "role", "img")
	sw.element("title", "CPU samples over time")
	var maxc uint64
	for _, c := range counts {
		maxc = max(maxc, c)
	}
	if len(counts) > 0 && maxc > 0 {
		bw := float64(width) / float64(len(counts))
		plotH := float64(height - 14)
		for i, c := range counts {
			h := plotH * float64(c) / float64(maxc)
			slice := i * slices / len(counts)
			sw.start("rect", false, "class", "bar", "data-slice", strconv.Itoa(slice), "x", ff1(float64(i)*bw), "y", ff1(plotH-h),
				"width", ff1(math.Max(bw-0.5, 0.5)), "height", ff1(math.Max(h, 0.5)))
			sw.element("title", fmt.Sprintf("%.1f–%.1f s: %d samples", float64(i)*stepS, float64(i+1)*stepS, c))
			sw.end("rect")
		}
	}
	sw.end("svg")
	sw.flush()
	return b.String()
}

// sparkline draws a small line of a series (outstanding bytes over the
// window), so a steady climb stands out from a step that stays flat.
func sparkline(values []uint64, width, height int) string {
	var b strings.Builder
	sw := newSVGWriter(&b)
	sw.start("svg", false, "xmlns", "http://www.w3.org/2000/svg", "class", "chart spark", "width", strconv.Itoa(width), "height", strconv.Itoa(height),
		"viewBox", fmt.Sprintf("0 0 %d %d", width, height), "role", "img")
	var maxv uint64
	for _, v := range values {
		maxv = max(maxv, v)
	}
	sw.element("title", "outstanding bytes over the window, max "+HumanBytes(int64(maxv)))
	if len(values) > 1 && maxv > 0 {
		var path strings.Builder
		for i, v := range values {
			x := float64(width-2) * float64(i) / float64(len(values)-1)
			y := float64(height-3) - float64(height-6)*float64(v)/float64(maxv)
			cmd := "L"
			if i == 0 {
				cmd = "M"
			}
			fmt.Fprintf(&path, "%s%s %s", cmd, ff1(x+1), ff1(y))
		}
		sw.start("path", true, "class", "line", "d", path.String())
	}
	sw.end("svg")
	sw.flush()
	return b.String()
}
