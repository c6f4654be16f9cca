package report

import (
	_ "embed"
	"fmt"
	"hash/fnv"
	"io"
	"sort"
	"strings"

	"github.com/bpfsnap/bpfsnap/analyze"
)

//go:embed flamegraph.js
var flameGraphJS string

// FlameGraphOptions configures WriteFlameGraph.
type FlameGraphOptions struct {
	Title string
	Unit  string // "samples", "bytes"
	Width int    // pixels; 1200 when 0
	// Inline omits the XML declaration so the <svg> can be embedded in an
	// HTML page.
	Inline bool
	// ID prefixes element ids so several graphs can share a page.
	ID string
}

const (
	frameHeight = 16
	fontSize    = 12
	charWidth   = 7.0 // average glyph width at fontSize, for trimming labels
	minWidthPx  = 0.3 // narrower frames are pruned (and counted)
	padTop      = 48
	padBottom   = 24
	padSide     = 10
)

// flameNode is a frame in the merged call tree.
type flameNode struct {
	name     string
	value    int64
	children map[string]*flameNode
	order    []string
}

func (n *flameNode) child(name string) *flameNode {
	c := n.children[name]
	if c == nil {
		c = &flameNode{name: name, children: map[string]*flameNode{}}
		n.children[name] = c
		n.order = append(n.order, name)
	}
	return c
}

// BuildFlameTree merges folded lines (root first) into a call tree.
func buildFlameTree(lines []analyze.FoldedLine) *flameNode {
	root := &flameNode{name: "all", children: map[string]*flameNode{}}
	for _, l := range lines {
		root.value += l.Value
		n := root
		for _, f := range l.Frames {
			n = n.child(f)
			n.value += l.Value
		}
	}
	return root
}

func (n *flameNode) depth() int {
	d := 0
	for _, c := range n.children {
		d = max(d, c.depth())
	}
	return d + 1
}

// WriteFlameGraph writes a self-contained interactive SVG flame graph:
// click a frame to zoom, "Reset zoom" to go back, "Search" (or Ctrl-F) to
// highlight frames matching a pattern with the share they cover, and a
// tooltip (the frame's <title>) with its count and percentage. Colours are
// stable per function name; kernel frames ("_[k]") are blue-green.
func WriteFlameGraph(w io.Writer, lines []analyze.FoldedLine, opt FlameGraphOptions) error {
	if opt.Width == 0 {
		opt.Width = 1200
	}
	if opt.Unit == "" {
		opt.Unit = "samples"
	}
	root := buildFlameTree(lines)
	depth := root.depth()
	height := padTop + depth*frameHeight + padBottom
	x := newXMLWriter(w)
	if !opt.Inline {
		x.raw(`<?xml version="1.0" encoding="UTF-8" standalone="no"?>` + "\n")
	}
	x.raw(`<svg xmlns="http://www.w3.org/2000/svg" class="flamegraph" id="%sfg" width="%d" height="%d" viewBox="0 0 %d %d" data-total="%d" data-unit="`,
		opt.ID, opt.Width, height, opt.Width, height, root.value)
	x.text(opt.Unit)
	x.raw(`" style="font-family:system-ui,-apple-system,'Segoe UI',sans-serif;font-size:%dpx">`+"\n", fontSize)
	x.raw(`<style>.flamegraph .f:hover rect{stroke:#000;stroke-width:.5;cursor:pointer}.flamegraph .f text{pointer-events:none;fill:#000}.flamegraph .btn{cursor:pointer;fill:#1a5fb4}.flamegraph .hide{display:none}</style>` + "\n")
	x.raw(`<rect x="0" y="0" width="100%%" height="100%%" fill="#f8f8f4"/>` + "\n")
	x.raw(`<text x="%d" y="20" text-anchor="middle" style="font-size:15px;font-weight:600">`, opt.Width/2)
	x.text(opt.Title)
	x.raw("</text>\n")
	x.raw(`<text class="btn reset hide" x="%d" y="20">Reset zoom</text>`, padSide)
	x.raw(`<text class="btn search" x="%d" y="20" text-anchor="end">Search</text>`, opt.Width-padSide)
	x.raw(`<text class="matched" x="%d" y="%d" text-anchor="end"></text>`, opt.Width-padSide, height-6)
	x.raw(`<text class="details" x="%d" y="%d"> </text>`+"\n", padSide, height-6)

	scale := float64(opt.Width-2*padSide) / float64(max(root.value, 1))
	pruned := int64(0)
	var draw func(n *flameNode, left float64, level int)
	draw = func(n *flameNode, left float64, level int) {
		width := float64(n.value) * scale
		if width < minWidthPx {
			pruned += n.value
			return
		}
		y := height - padBottom - (level+1)*frameHeight
		label := n.name
		if level == 0 {
			label = "all"
		}
		pct := 100 * float64(n.value) / float64(max(root.value, 1))
		x.raw(`<g class="f" data-v="%d"><title>`, n.value)
		x.text(fmt.Sprintf("%s (%d %s, %.2f%%)", label, n.value, opt.Unit, pct))
		x.raw(`</title><rect x="%.1f" y="%d" width="%.1f" height="%d" fill="%s" rx="2"/>`,
			left, y, width, frameHeight-1, frameColour(label, level))
		x.raw(`<text x="%.1f" y="%d">`, left+3, y+frameHeight-4)
		x.text(trimLabel(label, width))
		x.raw("</text></g>\n")
		// Children sorted by name, as flame graphs are: position is not time.
		names := append([]string(nil), n.order...)
		sort.Strings(names)
		childLeft := left
		for _, name := range names {
			c := n.children[name]
			draw(c, childLeft, level+1)
			childLeft += float64(c.value) * scale
		}
	}
	draw(root, padSide, 0)
	if pruned > 0 {
		x.raw(`<text x="%d" y="36" style="fill:#666">`, padSide)
		x.text(fmt.Sprintf("%d %s in frames too narrow to draw are left out", pruned, opt.Unit))
		x.raw("</text>\n")
	}
	// The script is ours (embedded at compile time); it reads names from
	// the DOM (each frame's <title>), never from strings pasted into code.
	x.raw("<script><![CDATA[\n%s\n]]></script>\n</svg>\n", flameGraphJS)
	return x.flush()
}

// trimLabel shortens a label to what fits in width pixels.
func trimLabel(s string, width float64) string {
	fit := int((width - 6) / charWidth)
	if fit < 3 {
		return ""
	}
	r := []rune(s)
	if len(r) <= fit {
		return s
	}
	return string(r[:fit-2]) + ".."
}

// frameColour is stable per name: the same function has the same colour in
// every graph and every report.
func frameColour(name string, level int) string {
	if level == 0 {
		return "rgb(200,200,200)"
	}
	h := fnv.New32a()
	h.Write([]byte(name))
	v := h.Sum32()
	a, b := int(v%55), int((v>>8)%80)
	if strings.HasSuffix(name, "_[k]") {
		return fmt.Sprintf("rgb(%d,%d,%d)", 80+a, 170+b/2, 190+a)
	}
	if level == 1 { // process frames
		return fmt.Sprintf("rgb(%d,%d,%d)", 150+a, 150+a, 170+b/2)
	}
	return fmt.Sprintf("rgb(%d,%d,%d)", 205+a, 90+b, 40+a/2)
}
