package analyze

import (
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bpfsnap/bpfsnap/formats"
	"github.com/bpfsnap/bpfsnap/internal/cpufixture"
	"github.com/bpfsnap/bpfsnap/internal/symbolize"
	"github.com/bpfsnap/bpfsnap/internal/testenv"
)

func frameNames(frames []*formats.Frame) string {
	var out []string
	for _, f := range frames {
		out = append(out, FrameName(f))
	}
	return strings.Join(out, " ")
}

// Frames rows with inline_of expand the frame a stack references into the
// inlined functions (innermost first, marked), in folded stacks and the
// summary; malformed inline rows of a hostile archive are ignored.
func TestInlinedFramesExpand(t *testing.T) {
	const (
		fMain = 1
		fRun  = 2 // code of run holding mix and step inlined
		fSpin = 3
		fLone = 4 // an ordinary frame with only malformed inline rows
	)
	inl := func(of uint64, depth uint32, fn string, line uint32) formats.Frame {
		return formats.Frame{FrameID: formats.InlineFrameID(of, depth), Module: "/bin/x", BuildID: "aa", FileOffset: 0x40,
			Function: fn, File: "x.c", Line: line, Inlined: true, InlineOf: of, InlineDepth: depth}
	}
	frames := []formats.Frame{
		inl(fRun, 2, "step", 21), // rows in any order
		{FrameID: fMain, Module: "/bin/x", Function: "main", File: "x.c", Line: 50},
		{FrameID: fRun, Module: "/bin/x", BuildID: "aa", FileOffset: 0x40, Function: "run", File: "x.c", Line: 40},
		inl(fRun, 1, "mix", 28),
		inl(fRun, 2, "impostor", 1), // a second depth 2: the first row wins
		{FrameID: fSpin, Module: "/bin/x", Function: "spin", File: "x.c", Line: 14},
		inl(fLone, 0, "depth0", 1),
		inl(fLone, 2, "gap", 1), // no depth 1: the chain is cut before it
		inl(fLone, formats.MaxInlineDepth+1, "deep", 1),
		inl(77, 1, "orphan", 1), // expands no frame of any stack
		{FrameID: fLone, Module: "/bin/x", Function: "lone", InlineOf: fLone, InlineDepth: 1}, // names itself
		{FrameID: fLone, Module: "/bin/x", Function: "lone"},
	}
	stacks := []formats.Stack{
		{StackID: 1, PID: 9, FrameIDs: []uint64{fSpin, fRun, fMain}},
		{StackID: 2, PID: 9, FrameIDs: []uint64{fRun, fMain}},
		{StackID: 3, PID: 9, FrameIDs: []uint64{fLone, fMain}},
	}
	var samples []formats.CPUSample
	for i, st := range []uint64{1, 1, 1, 2, 3} {
		samples = append(samples, formats.CPUSample{TimeNs: cpufixture.StartMono + uint64(i), PID: 9, Comm: "x", StackID: st})
	}
	path, err := cpufixture.WriteWith(t.TempDir(), samples, stacks, frames)
	if err != nil {
		t.Fatal(err)
	}
	p, err := LoadCPU(openFixture(t, path), Options{})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]uint64{}
	for _, s := range p.Stacks {
		got[frameNames(s.Frames)] += s.Count
	}
	want := map[string]uint64{
		"spin step_[i] mix_[i] run main": 3,
		"step_[i] mix_[i] run main":      1,
		"lone main":                      1,
	}
	for k, n := range want {
		if got[k] != n {
			t.Errorf("stack %q: %d samples, want %d (all: %v)", k, got[k], n, got)
		}
	}
	for _, s := range p.Stacks {
		for i, f := range s.Frames {
			if f.Inlined && (i == len(s.Frames)-1 || f.Function == "impostor") {
				t.Errorf("inlined frame %+v in the wrong place", f)
			}
		}
	}
	if p.Truncated != 0 {
		t.Errorf("%d stacks counted truncated", p.Truncated)
	}
	folded := p.Folded(FoldOptions{})
	var lines []string
	for _, l := range folded {
		lines = append(lines, strings.Join(l.Frames, ";"))
	}
	if !strings.Contains(strings.Join(lines, "\n"), "x;main;run;mix_[i];step_[i];spin") {
		t.Errorf("folded stacks: %q", lines)
	}
	// The summary counts inlined code as the function's own.
	sum := p.Summarize()
	if f := findFunction(sum, "step"); f == nil || f.TotalSamples != 4 || f.SelfSamples != 1 {
		t.Errorf("step in the summary: %+v", f)
	}
	if f := findFunction(sum, "step_[i]"); f != nil {
		t.Errorf("summary keeps the inline suffix: %+v", f)
	}
}

// --debug-dir resolves an unresolved frame into the inlined functions of
// its code, from the debug file's DWARF.
func TestDebugDirInlinedFrames(t *testing.T) {
	gcc := testenv.RequireTool(t, "gcc")
	dir := t.TempDir()
	bin := filepath.Join(dir, "inline")
	src, _ := filepath.Abs("../internal/symbolize/testdata/inline.c")
	if out, err := exec.Command(gcc, "-O2", "-g", "-Wl,--build-id", "-o", bin, src).CombinedOutput(); err != nil {
		t.Fatalf("gcc: %v\n%s", err, out)
	}
	b, err := symbolize.OpenFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	// A file offset in run whose code is step inlined into mix inlined
	// into run (the symbolizer's own test checks these against addr2line).
	ef, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	syms, _ := ef.Symbols()
	var off uint64
	for _, s := range syms {
		if s.Name != "run" {
			continue
		}
		for _, pr := range ef.Progs {
			if pr.Type != elf.PT_LOAD || s.Value < pr.Vaddr || s.Value >= pr.Vaddr+pr.Filesz {
				continue
			}
			for a := s.Value; a < s.Value+s.Size && off == 0; a++ {
				if fr := b.ResolveFramesVaddr(a); len(fr) == 3 && fr[0].Function == "step" {
					off = a - pr.Vaddr + pr.Off
				}
			}
		}
	}
	ef.Close()
	if off == 0 {
		t.Fatal("no code of step inlined into run")
	}
	debug := filepath.Join(dir, "debug")
	os.MkdirAll(filepath.Join(debug, ".build-id", b.BuildID[:2]), 0o755)
	data, _ := os.ReadFile(bin)
	os.WriteFile(filepath.Join(debug, ".build-id", b.BuildID[:2], b.BuildID[2:]+".debug"), data, 0o644)
	path, err := cpufixture.WriteWith(t.TempDir(),
		[]formats.CPUSample{{TimeNs: cpufixture.StartMono + 1, PID: 9, Comm: "x", StackID: 1}},
		[]formats.Stack{{StackID: 1, FrameIDs: []uint64{1}}},
		[]formats.Frame{{FrameID: 1, Module: "/gone/inline", BuildID: b.BuildID, FileOffset: off}})
	if err != nil {
		t.Fatal(err)
	}
	p, err := LoadCPU(openFixture(t, path), Options{DebugDir: debug})
	if err != nil {
		t.Fatal(err)
	}
	fr := p.Stacks[0].Frames
	if got := frameNames(fr); got != "step_[i] mix_[i] run" {
		t.Fatalf("with --debug-dir: %q", got)
	}
	if fr[0].Line == 0 || fr[1].Line == 0 || fr[2].Line == 0 || filepath.Base(fr[2].File) != "inline.c" {
		t.Errorf("lines: %+v %+v %+v", *fr[0], *fr[1], *fr[2])
	}
}
