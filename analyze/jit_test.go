package analyze

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bpfsnap/bpfsnap/formats"
	"github.com/bpfsnap/bpfsnap/internal/cpufixture"
)

// writeJITArchive writes an archive of two node processes at the same JIT
// addresses (each names them differently) and a java process without a
// perf map.
func writeJITArchive(t *testing.T) string {
	t.Helper()
	frames := []formats.Frame{
		{FrameID: 1, Module: "/usr/bin/node", BuildID: "aa", FileOffset: 0x100, Function: "Builtins_JSEntry"},
		{FrameID: 2, Module: formats.JITModule("node"), Address: 0x1010}, // pid 10
		{FrameID: 3, Module: formats.JITModule("node"), Address: 0x1080}, // pid 10
		{FrameID: 4, Module: formats.JITModule("node"), Address: 0x1010}, // pid 11
		{FrameID: 5, Module: formats.JITModule("java"), Address: 0x7000}, // pid 12
		{FrameID: 6, Module: "/usr/lib/jvm/lib/server/libjvm.so", FileOffset: 0x10, Function: "JavaMain"},
	}
	stacks := []formats.Stack{
		{StackID: 1, PID: 10, FrameIDs: []uint64{2, 1}},
		{StackID: 2, PID: 10, FrameIDs: []uint64{3, 1}},
		{StackID: 3, PID: 11, FrameIDs: []uint64{4, 1}},
		{StackID: 4, PID: 12, FrameIDs: []uint64{5, 6}},
	}
	var samples []formats.CPUSample
	add := func(n int, pid uint32, comm string, stack uint64) {
		for i := 0; i < n; i++ {
			samples = append(samples, formats.CPUSample{TimeNs: cpufixture.StartMono + uint64(i)*1e6, PID: pid, Comm: comm, StackID: stack})
		}
	}
	add(30, 10, "node", 1)
	add(10, 10, "node", 2)
	add(20, 11, "node", 3)
	add(40, 12, "java", 4)
	path, err := cpufixture.WriteWith(t.TempDir(), samples, stacks, frames)
	if err != nil {
		t.Fatal(err)
	}
	// Append the jit_symbols table: reopen the directory form is not
	// possible, so write a second archive with it.
	out := filepath.Join(t.TempDir(), "jit.bpfsnap")
	a, err := formats.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	w, err := formats.Create(out, *a.Manifest(), formats.CreateOptions{SealInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	copyTable[formats.CPUSample](t, a, w, formats.TableCPUSamples)
	copyTable[formats.Stack](t, a, w, formats.TableStacks)
	copyTable[formats.Frame](t, a, w, formats.TableFrames)
	jit := []formats.JITSymbol{
		{PID: 10, Start: 0x1000, Size: 0x100, Name: "JS:~hot /app.js:1:1", Source: "/tmp/perf-1.map"},
		{PID: 10, Start: 0x1000, Size: 0x20, Name: "JS:*hot;evil\n /app.js:1:1", Source: "/tmp/perf-1.map"}, // newer, covers 0x1010
		{PID: 11, Start: 0x1000, Size: 0x100, Name: "JS:*other /b.js:2:2", Source: "/tmp/perf-7.map"},
		{PID: 12, Start: 0x1000, Size: 0x100, Name: "not java's: another pid", Source: "/tmp/perf-1.map"},
	}
	if err := formats.NewTable[formats.JITSymbol](w, formats.TableJITSymbols).Write(jit...); err != nil {
		t.Fatal(err)
	}
	if err := w.Finish(nil); err != nil {
		t.Fatal(err)
	}
	return out
}

func copyTable[T any](t *testing.T, a *formats.Archive, w *formats.Writer, name string) {
	t.Helper()
	tw := formats.NewTable[T](w, name)
	if err := formats.ReadTable(a, name, func(rows []T) error { return tw.Write(rows...) }); err != nil {
		t.Fatal(err)
	}
}

// JIT frames are named from their own process's perf map (the later line
// of overlapping ones), the rest keep a "[jit:RUNTIME]" label, and the
// jit section says how to have the runtime name its code.
func TestJITFramesNamedPerProcess(t *testing.T) {
	s, err := Load(writeJITArchive(t), Request{})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]uint64{}
	for _, l := range s.CPUProfile().Folded(FoldOptions{WithPID: true}) {
		got[strings.Join(l.Frames, ";")] += l.Count
	}
	want := map[string]uint64{
		"node-10;Builtins_JSEntry;JS:*hot:evil? /app.js:1:1": 30, // ';' and '\n' made safe
		"node-10;Builtins_JSEntry;JS:~hot /app.js:1:1":       10,
		"node-11;Builtins_JSEntry;JS:*other /b.js:2:2":       20,
		"java-12;JavaMain;[jit:java]":                        40,
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%q: %d samples, want %d (all: %v)", k, got[k], v, got)
		}
	}
	byPID := map[uint32]JITProcess{}
	for _, jp := range s.JIT {
		byPID[jp.PID] = jp
	}
	if jp := byPID[10]; jp.Samples != 40 || jp.NamedSamples != 40 || jp.Runtime != "node" || jp.Hint != "" {
		t.Errorf("node 10: %+v", jp)
	}
	if jp := byPID[12]; jp.Samples != 40 || jp.NamedSamples != 0 || jp.Runtime != "java" || !strings.Contains(jp.Hint, "jcmd PID Compiler.perfmap") {
		t.Errorf("java 12: %+v", jp)
	}
	if len(s.JIT) != 3 || s.JIT[0].Samples != 40 {
		t.Errorf("jit section: %+v", s.JIT)
	}
}
