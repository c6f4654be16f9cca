package report

import (
	_ "embed"
	"fmt"
	"hash/fnv"
	"io"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/bpfsnap/bpfsnap/analyze"
)

//go:embed flamegraph.js
var flameJS string

//go:embed flamegraph.css
var flameCSS string

// FlameGraphScript is the flame graph's script, for a page that embeds
// several graphs with OmitScript and includes the script once. It
// initializes every <svg class="bpfsnap-flame"> in the document and exposes
// window.bpfsnapFlame.{search(svg, term), reset(svg), zoom(svg, g)}.
func FlameGraphScript() string { return flameJS }

// FlameNode is one frame of a flame graph: a function at one position of the
// call tree, with the samples of its subtree.
type FlameNode struct {
	Name  string
	Total uint64 // samples in this frame and everything it called
	Self  uint64 // samples where this frame was the leaf
	// Base and BaseSelf are a baseline profile's Total and Self at the
	// same frame, for differential graphs (AddBase); widths stay Total's.
	Base, BaseSelf uint64
	Children       []*FlameNode
	index          map[string]*FlameNode
}

// NewFlameTree returns an empty tree; its root is the "all" frame.
func NewFlameTree() *FlameNode { return &FlameNode{Name: "all"} }

// FlameTreeFromFolded builds a tree from folded stacks.
func FlameTreeFromFolded(stacks []analyze.FoldedStack) *FlameNode {
	root := NewFlameTree()
	for _, s := range stacks {
		root.Add(s.Frames, s.Count)
	}
	return root
}

// Add adds count samples of one stack, frames root first. Names are made
// safe (analyze.SafeFrameName), so a tree built from hostile folded text
// holds no newlines or control characters.
func (n *FlameNode) Add(frames []string, count uint64) {
	if count == 0 {
		return
	}
	n.walk(frames, func(f *FlameNode) { f.Total += count }).Self += count
}

// walk calls visit on n and on the frame of each of frames below it (root
// first, names made safe), adding the frames missing, and returns the last.
func (n *FlameNode) walk(frames []string, visit func(*FlameNode)) *FlameNode {
	visit(n)
	cur := n
	for _, name := range frames {
		name = analyze.SafeFrameName(name)
		c := cur.index[name]
		if c == nil {
			c = &FlameNode{Name: name}
			if cur.index == nil {
				cur.index = map[string]*FlameNode{}
			}
			cur.index[name] = c
			cur.Children = append(cur.Children, c)
		}
		visit(c)
		cur = c
	}
	return cur
}

// FlameOptions tunes the rendering. The zero value renders a 1200 px wide
// standalone graph with its script.
type FlameOptions struct {
	Title    string // default "CPU flame graph"
	Subtitle string // e.g. archive, time slice and filters
	Width    int    // in SVG user units, default 1200
	// MinWidth drops frames narrower than this many units (default 0.1):
	// they cannot be seen or clicked and would only grow the file.
	MinWidth float64
	// OmitScript leaves out the <script>, for a page that embeds several
	// graphs and includes FlameGraphScript once.
	OmitScript bool
	// Unit names what the counts are ("samples", "bytes").
	Unit string
	// Color, when set, gives each frame's fill instead of the name's hue
	// (differential graphs colour by change).
	Color func(n *FlameNode, depth int) string
	// Describe, when set, adds a sentence about the frame to its tooltip.
	Describe func(n *FlameNode) string
}

const (
	flameFrameHeight = 16
	flameFontSize    = 12
	flameCharWidth   = 0.59 * flameFontSize // average glyph width of the monospace font
	flamePad         = 10
	flameTop         = 56 // title, subtitle, controls
	flameBottom      = 24 // details line
)

// WriteFlameGraph writes root as one <svg> element: a valid standalone SVG
// file, and usable inline in HTML. Every frame is
// <g class="f" data-n="SAMPLES"><title>NAME&#xA;…</title><rect/><text/></g>
// (no <text> when the frame is too narrow for a label),
// written through the XML-escaping writer; the script reads names from the
// DOM only.
func WriteFlameGraph(w io.Writer, root *FlameNode, opts FlameOptions) error {
	if opts.Width <= 0 {
		opts.Width = 1200
	}
	if opts.MinWidth <= 0 {
		opts.MinWidth = 0.1
	}
	if opts.Title == "" {
		opts.Title = "CPU flame graph"
	}
	if opts.Unit == "" {
		opts.Unit = "samples"
	}
	usable := float64(opts.Width - 2*flamePad)
	var scale float64
	if root.Total > 0 {
		scale = usable / float64(root.Total)
	}
	depth := visibleDepth(root, scale, opts.MinWidth)
	height := flameTop + (depth+1)*flameFrameHeight + flameBottom
	sw := newSVGWriter(w)
	ff := func(v float64) string { return strconv.FormatFloat(v, 'f', 2, 64) }
	itoa := strconv.Itoa
	sw.start("svg", false,
		"xmlns", "http://www.w3.org/2000/svg",
		"class", "bpfsnap-flame",
		"version", "1.1",
		"width", itoa(opts.Width), "height", itoa(height),
		"viewBox", fmt.Sprintf("0 0 %d %d", opts.Width, height),
		"data-unit", opts.Unit,
		"data-total", strconv.FormatUint(root.Total, 10),
		"data-pad", itoa(flamePad),
		"data-char-width", ff(flameCharWidth))
	sw.raw("<style>")
	sw.raw(flameCSS)
	sw.raw("</style>")
	sw.start("rect", true, "class", "bg", "x", "0", "y", "0", "width", itoa(opts.Width), "height", itoa(height))
	sw.element("text", opts.Title, "class", "title", "x", itoa(opts.Width/2), "y", "20")
	if opts.Subtitle != "" {
		sw.element("text", opts.Subtitle, "class", "subtitle", "x", itoa(opts.Width/2), "y", "36")
	}
	sw.element("text", "Reset zoom", "class", "reset hidden", "x", itoa(flamePad), "y", "50")
	sw.element("text", "Search", "class", "search", "x", itoa(opts.Width-flamePad), "y", "50")
	sw.element("text", "", "class", "matched", "x", itoa(opts.Width-flamePad-60), "y", "50")
	sw.element("text", "", "class", "details", "x", itoa(flamePad), "y", itoa(height-8))
	sw.start("g", false, "class", "frames")
	fw := frameWriter{sw: sw, total: root.Total, scale: scale, min: opts.MinWidth, unit: opts.Unit,
		baseY: float64(height - flameBottom - flameFrameHeight), ff: ff, color: opts.Color, describe: opts.Describe}
	if fw.color == nil {
		fw.color = func(n *FlameNode, depth int) string { return frameColor(n.Name, depth) }
	}
	if root.Total > 0 {
		fw.write(root, 0, flamePad)
	}
	sw.end("g")
	if !opts.OmitScript {
		// CDATA keeps the script literal both in XML and in HTML's foreign
		// content; the script is our constant and contains no "]]>".
		sw.raw("<script><![CDATA[\n")
		sw.raw(flameJS)
		sw.raw("\n]]></script>")
	}
	sw.end("svg")
	sw.raw("\n")
	return sw.flush()
}

type frameWriter struct {
	sw           *svgWriter
	total        uint64
	scale, min   float64
	baseY        float64
	unit         string
	ff           func(float64) string
	color        func(*FlameNode, int) string
	describe     func(*FlameNode) string
	title, label strings.Builder
}

// write renders n at depth and x, then its children left to right in name
// order, so the layout does not depend on the order stacks were added.
func (f *frameWriter) write(n *FlameNode, depth int, x float64) {
	width := float64(n.Total) * f.scale
	y := f.baseY - float64(depth*flameFrameHeight)
	f.title.Reset()
	f.title.WriteString(n.Name)
	f.title.WriteString("\n")
	f.title.WriteString(strconv.FormatUint(n.Total, 10))
	f.title.WriteString(" ")
	f.title.WriteString(f.unit)
	f.title.WriteString(" (")
	f.title.WriteString(strconv.FormatFloat(100*float64(n.Total)/float64(f.total), 'f', 2, 64))
	f.title.WriteString("%)")
	if n.Self > 0 && len(n.Children) > 0 {
		f.title.WriteString(", self ")
		f.title.WriteString(strconv.FormatUint(n.Self, 10))
	}
	sw := f.sw
	class := "f"
	if strings.HasSuffix(n.Name, analyze.InlinedSuffix) && depth > 1 {
		// Inlined into the frame below: a dashed outline (flamegraph.css)
		// besides its own hue, and said in the details line.
		class = "f inl"
		f.title.WriteString(", inlined")
	}
	if f.describe != nil {
		f.title.WriteString("; ")
		f.title.WriteString(f.describe(n))
	}
	sw.start("g", false, "class", class, "data-n", strconv.FormatUint(n.Total, 10))
	sw.element("title", f.title.String())
	sw.start("rect", true, "x", f.ff(x), "y", f.ff(y), "width", f.ff(width),
		"height", strconv.Itoa(flameFrameHeight-1), "fill", f.color(n, depth))
	// A frame too narrow for a label gets no <text> (most frames of a big
	// profile); the script adds one when a zoom makes room.
	if label := fitLabel(n.Name, width); label != "" {
		sw.element("text", label, "x", f.ff(x+3), "y", f.ff(y+flameFrameHeight-4.5))
	}
	sw.end("g")
	kids := n.Children
	sort.Slice(kids, func(i, j int) bool { return kids[i].Name < kids[j].Name })
	for _, c := range kids {
		cw := float64(c.Total) * f.scale
		if cw >= f.min {
			f.write(c, depth+1, x)
		}
		x += cw
	}
}

// visibleDepth is the depth of the deepest frame wide enough to draw.
func visibleDepth(n *FlameNode, scale, min float64) int {
	d := 0
	for _, c := range n.Children {
		if float64(c.Total)*scale >= min {
			if cd := visibleDepth(c, scale, min) + 1; cd > d {
				d = cd
			}
		}
	}
	return d
}

// fitLabel truncates name to what fits in width, with "..", or "" when not
// even three characters fit.
func fitLabel(name string, width float64) string {
	fit := int((width - 6) / flameCharWidth)
	if fit < 3 {
		return ""
	}
	if utf8.RuneCountInString(name) <= fit {
		return name
	}
	i, n := 0, 0
	for i < len(name) && n < fit-2 {
		_, size := utf8.DecodeRuneInString(name[i:])
		i += size
		n++
	}
	return name[:i] + ".."
}

// frameColor is stable per name (FNV hash): warm hues for user code, blue
// for kernel frames (analyze.KernelSuffix), aqua for inlined functions
// (analyze.InlinedSuffix, as flamegraph.pl colours "_[i]"), grey-violet for
// the root and the process frames.
func frameColor(name string, depth int) string {
	h := fnv.New32a()
	h.Write([]byte(name))
	v := h.Sum32()
	a, b, c := float64(v&0xff)/255, float64((v>>8)&0xff)/255, float64((v>>16)&0xff)/255
	var r, g, bl int
	switch {
	case depth <= 1:
		r, g, bl = 160+int(30*a), 160+int(30*a), 190+int(40*b)
	case strings.HasSuffix(name, analyze.KernelSuffix):
		r, g, bl = 60+int(50*a), 140+int(60*b), 200+int(55*c)
	case strings.HasSuffix(name, analyze.InlinedSuffix):
		r, g, bl = 60+int(40*a), 190+int(50*b), 180+int(50*c)
	default:
		r, g, bl = 205+int(50*c), int(230*a), int(55*b)
	}
	return "rgb(" + strconv.Itoa(r) + "," + strconv.Itoa(g) + "," + strconv.Itoa(bl) + ")"
}
