package analyze

import (
	"bytes"
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bpfsnap/bpfsnap/formats"
	"github.com/bpfsnap/bpfsnap/internal/cpufixture"
	"github.com/bpfsnap/bpfsnap/internal/symbolize"
	"github.com/bpfsnap/bpfsnap/internal/testenv"
)

func openFixture(t *testing.T, path string) *formats.Archive {
	t.Helper()
	a, err := formats.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	return a
}

func fixtureArchive(t *testing.T) *formats.Archive {
	t.Helper()
	path, err := cpufixture.Write(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return openFixture(t, path)
}

func findFunction(s *CPUSummary, name string) *CPUFunction {
	for i := range s.Functions {
		if s.Functions[i].Name == name {
			return &s.Functions[i]
		}
	}
	return nil
}

func TestCPUSummaryOfFixture(t *testing.T) {
	a := fixtureArchive(t)
	s, err := Analyze(a, Options{})
	if err != nil {
		t.Fatal(err)
	}
	c := s.CPU
	if c == nil {
		t.Fatal("no cpu section for an archive with cpu samples")
	}
	total := uint64(cpufixture.HotSamples + cpufixture.ColdSamples + cpufixture.HostileSamples + cpufixture.NoStackSamples)
	if c.Samples != total || c.SamplesWithoutStack != cpufixture.NoStackSamples {
		t.Fatalf("samples %d (without stack %d), want %d (%d)", c.Samples, c.SamplesWithoutStack, total, cpufixture.NoStackSamples)
	}
	if c.PeriodNs != int64(1e9)/cpufixture.FreqHz {
		t.Errorf("period %d ns, want from freq %d Hz", c.PeriodNs, cpufixture.FreqHz)
	}
	if len(c.Processes) != 2 || c.Processes[0].PID != cpufixture.AppPID || c.Processes[0].Comm != "app" ||
		c.Processes[0].Samples != cpufixture.HotSamples+cpufixture.ColdSamples {
		t.Fatalf("processes: %+v", c.Processes)
	}
	if c.Processes[1].Comm != cpufixture.HostileComm {
		t.Errorf("hostile comm changed in the summary data: %q", c.Processes[1].Comm)
	}
	want := []struct {
		name        string
		self, total uint64
	}{
		{"hot", cpufixture.HotSamples - cpufixture.KernelSamples, cpufixture.HotSamples},
		{"cold", cpufixture.ColdSamples, cpufixture.ColdSamples},
		{"work", 0, cpufixture.HotSamples + cpufixture.ColdSamples},
		{"main", 0, cpufixture.HotSamples + cpufixture.ColdSamples},
		{"hrtimer_interrupt_[k]", cpufixture.KernelSamples, cpufixture.KernelSamples},
		{"asm_sysvec_apic_timer_interrupt_[k]", 0, cpufixture.KernelSamples},
		{"[kernel]+0xffffffff81abcdef_[k]", cpufixture.HostileSamples, cpufixture.HostileSamples},
		{"libx.so+0x1234", 0, cpufixture.HostileSamples},
		{"[unknown]", 0, cpufixture.HostileSamples},
	}
	for _, w := range want {
		f := findFunction(c, w.name)
		if f == nil {
			t.Errorf("function %q missing from %+v", w.name, c.Functions)
			continue
		}
		if f.SelfSamples != w.self || f.TotalSamples != w.total {
			t.Errorf("%s: self %d total %d, want %d %d", w.name, f.SelfSamples, f.TotalSamples, w.self, w.total)
		}
		if got := 100 * float64(w.total) / float64(total); f.TotalPct != got {
			t.Errorf("%s: total_pct %v, want %v", w.name, f.TotalPct, got)
		}
	}
	// The timeline: 100 steps of 100 ms; the app's 900 samples fill the
	// first half, pid 200's 100 the second.
	tl := c.Timeline
	if tl.StepNs != int64(100*time.Millisecond) || len(tl.Samples) != 100 {
		t.Fatalf("timeline step %d, %d buckets", tl.StepNs, len(tl.Samples))
	}
	var first, second uint64
	for i, n := range tl.Samples {
		if i < 50 {
			first += n
		} else {
			second += n
		}
	}
	if first != cpufixture.HotSamples+cpufixture.ColdSamples || second != cpufixture.HostileSamples+cpufixture.NoStackSamples {
		t.Errorf("timeline halves %d and %d", first, second)
	}
	if c.Functions[0].Name != "hot" {
		t.Errorf("top self function is %q, want hot", c.Functions[0].Name)
	}
	// hostile frames: 3 named user frames, 2 unresolved user, 1 unresolved kernel
	if c.UnresolvedFrames != 3 {
		t.Errorf("unresolved frames %d, want 3", c.UnresolvedFrames)
	}
}

func TestCPUFilter(t *testing.T) {
	a := fixtureArchive(t)
	app := uint64(cpufixture.HotSamples + cpufixture.ColdSamples)
	hostile := uint64(cpufixture.HostileSamples + cpufixture.NoStackSamples)
	for _, tc := range []struct {
		name string
		f    Filter
		want uint64
	}{
		{"pid", Filter{PIDs: []uint32{cpufixture.AppPID}}, app},
		{"second half", Filter{From: cpufixture.Span / 2}, hostile},
		{"first half", Filter{To: cpufixture.Span / 2}, app},
		{"pid and slice", Filter{PIDs: []uint32{cpufixture.AppPID}, From: cpufixture.Span / 2}, 0},
		{"quarter", Filter{From: 0, To: cpufixture.Span / 4}, app / 2},
	} {
		p, err := LoadCPU(a, Options{Filter: tc.f})
		if err != nil {
			t.Fatal(err)
		}
		if p.Samples != tc.want {
			t.Errorf("%s: %d samples, want %d", tc.name, p.Samples, tc.want)
		}
	}
	// A time slice keeps the hot:cold ratio (samples are interleaved).
	p, err := LoadCPU(a, Options{Filter: Filter{From: time.Second, To: 3 * time.Second}})
	if err != nil {
		t.Fatal(err)
	}
	s := p.Summarize()
	if s.Timeline.StartOffsetNs != int64(time.Second) || s.Timeline.StepNs != int64(20*time.Millisecond) || len(s.Timeline.Samples) != 100 {
		t.Errorf("timeline of the 1s..3s slice: start %d step %d, %d buckets", s.Timeline.StartOffsetNs, s.Timeline.StepNs, len(s.Timeline.Samples))
	}
	hot, cold := findFunction(s, "hot"), findFunction(s, "cold")
	if hot == nil || cold == nil {
		t.Fatalf("slice lost functions: %+v", s.Functions)
	}
	if r := float64(hot.TotalSamples) / float64(cold.TotalSamples); r < 1.9 || r > 2.1 {
		t.Errorf("hot/cold in slice = %.2f, want ~2", r)
	}
}

func TestFoldedStacks(t *testing.T) {
	a := fixtureArchive(t)
	p, err := LoadCPU(a, Options{})
	if err != nil {
		t.Fatal(err)
	}
	stacks := p.Folded(FoldOptions{})
	var buf bytes.Buffer
	if err := WriteFolded(&buf, stacks); err != nil {
		t.Fatal(err)
	}
	text := buf.String()
	for _, line := range []string{
		"app;main;work;hot 500\n",
		"app;main;work;cold 300\n",
		"app;main;work;hot;asm_sysvec_apic_timer_interrupt_[k];hrtimer_interrupt_[k] 100\n",
	} {
		if !strings.Contains(text, line) {
			t.Errorf("folded output lacks %q:\n%s", line, text)
		}
	}
	lines := strings.Split(strings.TrimSuffix(text, "\n"), "\n")
	if len(lines) != 5 {
		t.Fatalf("%d folded lines, want 5 (a newline leaked?):\n%q", len(lines), text)
	}
	parsed, err := ParseFolded(strings.NewReader(text))
	if err != nil {
		t.Fatal(err)
	}
	var sum uint64
	for i, s := range parsed {
		sum += s.Count
		if len(s.Frames) != len(stacks[i].Frames) {
			t.Errorf("line %d: %d frames after parsing, %d before: a name broke the format: %q",
				i, len(s.Frames), len(stacks[i].Frames), lines[i])
		}
	}
	if sum != p.Samples {
		t.Errorf("folded counts sum to %d, want %d", sum, p.Samples)
	}
	// The hostile stack: root + 6 frames, names sanitized, unresolved named.
	var hostile FoldedStack
	for _, s := range stacks {
		if s.Count == cpufixture.HostileSamples {
			hostile = s
		}
	}
	want := []string{SafeFrameName(cpufixture.HostileComm), cpufixture.HostileFunc1, cpufixture.HostileFunc2,
		"libx.so+0x1234", "[unknown]", "bad\ufffd\ufffdutf8?nul?new:line?[31m", "[kernel]+0xffffffff81abcdef_[k]"}
	if strings.Join(hostile.Frames, "|") != strings.Join(want, "|") {
		t.Errorf("hostile stack folded to\n%q\nwant\n%q", hostile.Frames, want)
	}
	// FoldFrames, for other stack profiles, names stacks the same way.
	for _, st := range p.Stacks {
		ff := FoldFrames(p.ProcessName(st.PID), st.Frames)
		found := false
		for _, fs := range stacks {
			found = found || strings.Join(fs.Frames, ";") == strings.Join(ff, ";")
		}
		if !found {
			t.Errorf("FoldFrames gave %q, not a line of Folded", ff)
		}
	}
	withPID := p.Folded(FoldOptions{WithPID: true})
	if !strings.HasPrefix(withPID[0].Frames[0], "app-100") && !strings.HasSuffix(withPID[0].Frames[0], "-200") {
		t.Errorf("WithPID root frame %q", withPID[0].Frames[0])
	}
}

func TestParseFoldedErrors(t *testing.T) {
	for _, in := range []string{"a;b\n", "a;b x\n", "a;b -1\n"} {
		if _, err := ParseFolded(strings.NewReader(in)); err == nil {
			t.Errorf("ParseFolded(%q) accepted", in)
		}
	}
	s, err := ParseFolded(strings.NewReader("std::vector<int> f();g 3\r\n\n"))
	if err != nil || len(s) != 1 || s[0].Count != 3 || s[0].Frames[0] != "std::vector<int> f()" {
		t.Fatalf("got %+v, %v", s, err)
	}
}

// A hostile archive: a stack of 100000 frames, a stack referencing frames
// that do not exist, a sample referencing a stack that does not exist.
func TestCPUHostileArchive(t *testing.T) {
	long := make([]uint64, 100000)
	for i := range long {
		long[i] = 1
	}
	path, err := cpufixture.WriteWith(t.TempDir(),
		[]formats.CPUSample{
			{TimeNs: cpufixture.StartMono + 1, PID: 1, Comm: "x", StackID: 1},
			{TimeNs: cpufixture.StartMono + 2, PID: 1, Comm: "x", StackID: 2},
			{TimeNs: cpufixture.StartMono + 3, PID: 1, Comm: "x", StackID: 3},
		},
		[]formats.Stack{{StackID: 1, FrameIDs: long}, {StackID: 2, FrameIDs: []uint64{1, 777}}},
		[]formats.Frame{{FrameID: 1, Function: "f"}})
	if err != nil {
		t.Fatal(err)
	}
	p, err := LoadCPU(openFixture(t, path), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if p.Samples != 3 || p.NoStack != 1 || p.Truncated != 2 {
		t.Fatalf("samples %d nostack %d truncated %d, want 3 1 2", p.Samples, p.NoStack, p.Truncated)
	}
	for _, s := range p.Stacks {
		if len(s.Frames) > maxStackDepth {
			t.Errorf("stack kept %d frames", len(s.Frames))
		}
	}
}

// --debug-dir resolves a frame the capture left unresolved: a C binary
// built here is put under DIR/.build-id/xx/rest.debug, and a frame holding
// only its build id and the file offset of a function gets that name.
func TestDebugDirResolvesByBuildID(t *testing.T) {
	gcc := testenv.RequireTool(t, "gcc")
	dir := t.TempDir()
	src := filepath.Join(dir, "x.c")
	os.WriteFile(src, []byte("int deep_thought(int x) { return x * 42; }\nint main(int c, char **v) { return deep_thought(c); }\n"), 0o644)
	bin := filepath.Join(dir, "x")
	if out, err := exec.Command(gcc, "-g", "-O0", "-Wl,--build-id", "-o", bin, src).CombinedOutput(); err != nil {
		t.Fatalf("gcc: %v\n%s", err, out)
	}
	ef, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	var off uint64
	syms, _ := ef.Symbols()
	for _, s := range syms {
		if s.Name == "deep_thought" {
			for _, p := range ef.Progs {
				if p.Type == elf.PT_LOAD && s.Value >= p.Vaddr && s.Value < p.Vaddr+p.Filesz {
					off = s.Value - p.Vaddr + p.Off + 4
				}
			}
		}
	}
	ef.Close()
	if off == 0 {
		t.Fatal("deep_thought not found in the test binary")
	}
	f, _ := os.Open(bin)
	id := symbolize.ReadBuildID(f)
	f.Close()
	if id == "" {
		t.Fatal("no build id")
	}
	debug := filepath.Join(dir, "debug")
	os.MkdirAll(filepath.Join(debug, ".build-id", id[:2]), 0o755)
	data, _ := os.ReadFile(bin)
	os.WriteFile(filepath.Join(debug, ".build-id", id[:2], id[2:]+".debug"), data, 0o644)

	path, err := cpufixture.WriteWith(t.TempDir(),
		[]formats.CPUSample{{TimeNs: cpufixture.StartMono + 1, PID: 9, Comm: "x", StackID: 1}},
		[]formats.Stack{{StackID: 1, FrameIDs: []uint64{1, 2}}},
		[]formats.Frame{{FrameID: 1, Module: "/gone/x", BuildID: id, FileOffset: off},
			{FrameID: 2, Module: "/gone/x", BuildID: "../../../etc", FileOffset: off}})
	if err != nil {
		t.Fatal(err)
	}
	a := openFixture(t, path)
	before, err := LoadCPU(a, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if before.Unresolved() != 2 {
		t.Fatalf("fixture frames resolved before --debug-dir: %d unresolved", before.Unresolved())
	}
	after, err := LoadCPU(a, Options{DebugDir: debug})
	if err != nil {
		t.Fatal(err)
	}
	leaf := after.Stacks[0].Frames[0]
	if leaf.Function != "deep_thought" || after.Unresolved() != 1 {
		t.Fatalf("after --debug-dir: leaf %+v, %d unresolved", leaf, after.Unresolved())
	}
	if _, err := LoadCPU(a, Options{DebugDir: filepath.Join(dir, "missing")}); err == nil {
		t.Fatal("a missing --debug-dir was accepted")
	}
}
