package report

import (
	"fmt"
	"io"
	"math"
	"path/filepath"
	"strconv"

	"github.com/bpfsnap/bpfsnap/analyze"
)

// AddBase adds count samples of one stack of the baseline profile (frames
// root first) to the Base and BaseSelf counts. A frame only the baseline
// has gets Total 0: it is not drawn (widths are the new profile's, as in
// FlameGraph's differentials) but its share still counts in the colours.
func (n *FlameNode) AddBase(frames []string, count uint64) {
	if count == 0 {
		return
	}
	n.walk(frames, func(f *FlameNode) { f.Base += count }).BaseSelf += count
}

// DiffFlameTree builds the tree of a differential graph: NEW's counts as
// Total/Self, BASE's as Base/BaseSelf.
func DiffFlameTree(stacks []analyze.FoldedDiff) *FlameNode {
	root := NewFlameTree()
	for _, s := range stacks {
		root.Add(s.Frames, s.New)
		root.AddBase(s.Frames, s.Base)
	}
	return root
}

// diffScale colours the frames of a differential graph by the change of
// their self share (as flamegraph.pl colours the self delta): red grown,
// blue shrunk, deeper for a larger change relative to the largest one in
// the graph; grey when the change is within sampling noise
// (analyze.NoiseZ) or there is none. Callers' frames, with no self
// samples, stay grey: the colour marks where the time went, the widths of
// the frames below say through which callers.
type diffScale struct {
	baseTotal, newTotal uint64
	max                 float64 // the largest significant |change|, in points
}

func newDiffScale(root *FlameNode) *diffScale {
	s := &diffScale{baseTotal: root.Base, newTotal: root.Total}
	var walk func(n *FlameNode)
	walk = func(n *FlameNode) {
		if c, sig := s.change(n); sig {
			s.max = math.Max(s.max, math.Abs(c))
		}
		for _, k := range n.Children {
			walk(k)
		}
	}
	walk(root)
	return s
}

// change is the frame's self share change in percentage points and
// whether it is beyond noise.
func (s *diffScale) change(n *FlameNode) (float64, bool) {
	c, z := analyze.ShareChange(n.BaseSelf, s.baseTotal, n.Self, s.newTotal)
	return c, c != 0 && math.Abs(z) >= analyze.NoiseZ
}

func (s *diffScale) color(n *FlameNode, _ int) string {
	c, sig := s.change(n)
	if !sig || s.max == 0 {
		return "rgb(221,221,214)"
	}
	// At least 25% saturation, so every significant change shows.
	t := 0.25 + 0.75*math.Min(1, math.Abs(c)/s.max)
	pale := strconv.Itoa(int(math.Round(225 * (1 - t))))
	if c > 0 {
		return "rgb(255," + pale + "," + pale + ")"
	}
	return "rgb(" + pale + "," + pale + ",255)"
}

func (s *diffScale) describe(n *FlameNode) string {
	c, sig := s.change(n)
	verdict := "within noise"
	switch {
	case c == 0:
		verdict = "unchanged"
	case sig && c > 0:
		verdict = "grown"
	case sig:
		verdict = "shrunk"
	}
	return fmt.Sprintf("self %.2f%% → %.2f%% (%+.2f points, %s); baseline %d samples (%.2f%%)",
		pctOf(n.BaseSelf, s.baseTotal), pctOf(n.Self, s.newTotal), c, verdict, n.Base, pctOf(n.Base, s.baseTotal))
}

func pctOf(n, total uint64) float64 {
	if total == 0 {
		return 0
	}
	return 100 * float64(n) / float64(total)
}

// DiffFlameOptions returns the options that draw root (a DiffFlameTree) as
// a differential graph: colours and tooltips by change.
func DiffFlameOptions(root *FlameNode, o FlameOptions) FlameOptions {
	s := newDiffScale(root)
	o.Color, o.Describe = s.color, s.describe
	return o
}

// diffSubtitle says what the widths and colours of a differential graph
// are, and how much of the baseline it cannot show.
func diffSubtitle(root *FlameNode) string {
	var gone uint64
	for _, k := range root.Children {
		gone += baseOnly(k)
	}
	sub := fmt.Sprintf("widths: NEW, %d samples; colour: self share vs BASE, %d samples (red grown, blue shrunk, grey within noise)", root.Total, root.Base)
	if gone > 0 {
		sub += fmt.Sprintf("; %.1f%% of BASE is in stacks NEW lacks", pctOf(gone, root.Base))
	}
	return sub
}

// baseOnly sums the baseline samples under frames NEW never reached.
func baseOnly(n *FlameNode) uint64 {
	if n.Total == 0 {
		return n.Base
	}
	var sum uint64
	for _, k := range n.Children {
		sum += baseOnly(k)
	}
	return sum
}

// WriteDiffFlameGraph draws the comparison's CPU stacks as a differential
// flame graph (SVG, with the usual zoom and search), or with o.Folded the
// "stack BASE_COUNT NEW_COUNT" lines of difffolded.pl. A side without
// samples is an error.
func WriteDiffFlameGraph(w io.Writer, d *analyze.Diff, o CPUFlameOptions) error {
	stacks, err := d.RequireCPU()
	if err != nil {
		return err
	}
	if o.Folded {
		return analyze.WriteFoldedDiff(w, stacks)
	}
	if o.Title == "" {
		o.Title = "CPU differential flame graph: " + filepath.Base(d.Base.Archive) + " → " + filepath.Base(d.New.Archive)
	}
	root := DiffFlameTree(stacks)
	return WriteFlameGraph(w, root, DiffFlameOptions(root, FlameOptions{
		Title:    o.Title,
		Subtitle: diffSubtitle(root),
		MinWidth: o.MinWidth,
	}))
}
