package report

import (
	"bytes"
	"strings"
	"testing"

	"github.com/google/pprof/profile"

	"github.com/bpfsnap/bpfsnap/analyze"
	"github.com/bpfsnap/bpfsnap/formats"
)

// Inlined frames (analyze.InlinedSuffix) are drawn apart: their own hue, a
// dashed outline (class "inl") and "inlined" in the details; a process
// named like one is not.
func TestFlameGraphMarksInlined(t *testing.T) {
	root := NewFlameTree()
	root.Add([]string{"p_[i]", "main", "run", "step_[i]", "spin"}, 10)
	var buf bytes.Buffer
	if err := WriteFlameGraph(&buf, root, FlameOptions{OmitScript: true}); err != nil {
		t.Fatal(err)
	}
	parseSVG(t, buf.Bytes()) // well-formed
	svg := strings.ReplaceAll(buf.String(), "&#xA;", "\n")
	for _, frag := range []string{
		`<g class="f inl" data-n="10"><title>step_[i]` + "\n10 samples (100.00%), inlined</title>",
		`<g class="f" data-n="10"><title>run` + "\n",
		`<g class="f" data-n="10"><title>spin` + "\n",
		`<g class="f" data-n="10"><title>p_[i]` + "\n",
	} {
		if !strings.Contains(svg, frag) {
			t.Errorf("SVG lacks %q", frag)
		}
	}
	if frameColor("step_[i]", 4) == frameColor("step", 4) {
		t.Error("inlined frames share the colour of calls")
	}
}

// pprof gets inlined functions the way it models them: extra lines of the
// location they were inlined into, innermost first, without the suffix.
func TestPprofInlinedLines(t *testing.T) {
	run := &formats.Frame{FrameID: 2, Module: "/bin/x", FileOffset: 0x40, Function: "run", File: "x.c", Line: 40}
	mix := &formats.Frame{FrameID: 3, Module: "/bin/x", FileOffset: 0x40, Function: "mix", File: "x.c", Line: 28, Inlined: true, InlineOf: 2, InlineDepth: 1}
	step := &formats.Frame{FrameID: 4, Module: "/bin/x", FileOffset: 0x40, Function: "step", File: "x.c", Line: 22, Inlined: true, InlineOf: 2, InlineDepth: 2}
	mainF := &formats.Frame{FrameID: 1, Module: "/bin/x", FileOffset: 0x10, Function: "main", File: "x.c", Line: 50}
	p := &analyze.CPUProfile{Samples: 5, Names: map[uint32]string{9: "x"},
		Stacks: []analyze.CPUStack{{PID: 9, Count: 5, Frames: []*formats.Frame{step, mix, run, mainF}}}}
	var buf bytes.Buffer
	if err := WritePprof(&buf, p, PprofOptions{}); err != nil {
		t.Fatal(err)
	}
	prof, err := profile.Parse(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if len(prof.Sample) != 1 || len(prof.Sample[0].Location) != 2 {
		t.Fatalf("want one sample with 2 locations: %v", prof)
	}
	var got []string
	for _, l := range prof.Sample[0].Location[0].Line {
		got = append(got, l.Function.Name)
	}
	if strings.Join(got, ",") != "step,mix,run" || prof.Sample[0].Location[0].Line[0].Line != 22 {
		t.Errorf("leaf location lines: %v", got)
	}
}
