package formats_test

// The analysis fuzz target lives beside the reader's (fuzz_test.go) but in
// the external test package: it builds archives with formats' writer and
// runs analyze/ and report/ on them, which formats itself may not import.

import (
	"fmt"
	"io"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
	"testing"
	"time"

	"github.com/bpfsnap/bpfsnap/analyze"
	"github.com/bpfsnap/bpfsnap/formats"
	"github.com/bpfsnap/bpfsnap/report"
)

// Bounds of one fuzzed archive and of what its analysis may cost.
const (
	fuzzMaxRows = 24 // rows per table
	// The whole pipeline on a few dozen rows allocates a few MiB (the
	// HTML page embeds its scripts and styles); a value used as a count
	// or a length would show as hundreds of MiB.
	fuzzMaxAlloc = 256 << 20
	fuzzMaxTime  = 20 * time.Second
)

// feed turns the fuzzer's bytes into row values, favouring the values
// that break analyses: 0, all ones, the window's edges, times before the
// window, ids that point nowhere, and strings of every kind.
type feed struct {
	b    []byte
	base uint64 // the window's start (CLOCK_MONOTONIC ns)
}

func (f *feed) byte() byte {
	if len(f.b) == 0 {
		return 0
	}
	c := f.b[0]
	f.b = f.b[1:]
	return c
}

func (f *feed) raw64() uint64 {
	var v uint64
	for i := 0; i < 8; i++ {
		v = v<<8 | uint64(f.byte())
	}
	return v
}

// time is a CLOCK_MONOTONIC timestamp: mostly inside the window.
func (f *feed) time() uint64 {
	switch c := f.byte(); c % 8 {
	case 0, 1, 2:
		return f.base + uint64(c)*47_000_000 // inside a 10 s window
	case 3:
		return 0
	case 4:
		return ^uint64(0)
	case 5:
		return f.base - uint64(c)*1_000_000 // before the window
	case 6:
		return 1 << 63
	default:
		return f.raw64()
	}
}

// id is a pid, stack or frame id: mostly small, so rows refer to each
// other (or to nothing).
func (f *feed) id() uint64 {
	switch c := f.byte(); c % 8 {
	case 0, 1, 2, 3, 4:
		return uint64(c % 6)
	case 5:
		return ^uint64(0)
	case 6:
		return uint64(^uint32(0))
	default:
		return f.raw64()
	}
}

func (f *feed) size() uint64 {
	switch c := f.byte(); c % 6 {
	case 0, 1:
		return uint64(c) * 64
	case 2:
		return 0
	case 3:
		return ^uint64(0)
	case 4:
		return 1 << 63
	default:
		return f.raw64()
	}
}

var fuzzStrings = []string{
	"", "GET", "POST", "/", "/api/x", "main", "[kernel]", "/lib/libc.so.6", "server", "client",
	formats.ProcessScan, formats.ProcessFork, formats.ProcessExec, formats.ProcessExit, formats.ProcessInfo,
	formats.MemMalloc, formats.MemCalloc, formats.MemRealloc, formats.MemFree, formats.MemMemalign,
	formats.MemMmap, formats.MemMunmap, formats.MemMremap, formats.MemBrk,
	`"><script>alert(1)</script>`, "\x1b]0;title\x07", "bidi\u202e", "bad\xff\xfe", "a;b c\nd 99",
	strings.Repeat("L", 5000), "]]></svg>", "{{.}}", "%s%n", "default/web-0", "ns",
}

func (f *feed) str() string {
	c := f.byte()
	if c < 200 {
		return fuzzStrings[int(c)%len(fuzzStrings)]
	}
	n := int(f.byte()) % 48
	if n > len(f.b) {
		n = len(f.b)
	}
	s := string(f.b[:n])
	f.b = f.b[n:]
	return s
}

func (f *feed) rows() int { return int(f.byte()) % (fuzzMaxRows + 1) }

// fuzzArchive writes an archive whose structure is valid and whose
// contents come from data: the writer's own API, as a capture uses it.
func fuzzArchive(t *testing.T, data []byte) string {
	f := &feed{b: data, base: 5_000_000_000}
	out := filepath.Join(t.TempDir(), "fuzz.bpfsnap")
	start := f.time()
	end := f.time()
	m := formats.Manifest{
		BpfsnapVersion: f.str(), Host: f.str(), Kernel: "6.18", Arch: "amd64",
		Window: formats.Window{StartWall: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), StartMonoNs: start, EndMonoNs: end,
			EndWall: time.Date(2026, 1, 2, 3, 4, 15, 0, time.UTC), EndReason: f.str()},
		Probes: []formats.Probe{{Name: "cpu", Attached: true, Details: map[string]string{"frequency_hz": f.str()}},
			{Name: "mem", Attached: f.byte()%2 == 0, Error: f.str()}, {Name: "http", Attached: true}},
		Targets: formats.Targets{PIDs: []uint32{uint32(f.id())}, Command: []string{f.str(), f.str()}},
		Options: map[string]string{"probes": "cpu,http,mem", f.str(): f.str()},
		Drops: map[string]uint64{"cpu.ringbuf_full": f.size(), f.str(): f.size(), "http.no_response": f.size(),
			"process.cmdline_redacted": f.size()},
		Warnings: []string{f.str()},
	}
	w, err := formats.Create(out, m, formats.CreateOptions{SealInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	procs := formats.NewTable[formats.ProcessEvent](w, formats.TableProcesses)
	for i, n := 0, f.rows(); i < n; i++ {
		procs.Write(formats.ProcessEvent{TimeNs: f.time(), Kind: f.str(), PID: uint32(f.id()), PPID: uint32(f.id()),
			Comm: f.str(), Exe: f.str(), Cmdline: f.str(), CgroupID: f.id(), CgroupPath: f.str(),
			ExitCode: int32(f.raw64()), StartNs: f.time(), Namespace: f.str(), Pod: f.str(), Container: f.str()})
	}
	samples := formats.NewTable[formats.CPUSample](w, formats.TableCPUSamples)
	for i, n := 0, f.rows(); i < n; i++ {
		samples.Write(formats.CPUSample{TimeNs: f.time(), CPU: uint32(f.id()), PID: uint32(f.id()), TID: uint32(f.id()),
			Comm: f.str(), StackID: f.id()})
	}
	stacks := formats.NewTable[formats.Stack](w, formats.TableStacks)
	for i, n := 0, f.rows(); i < n; i++ {
		depth := int(f.byte()) % 8
		if f.byte() == 0xff {
			depth = 5000 // far deeper than any real stack
		}
		ids := make([]uint64, depth)
		for j := range ids {
			ids[j] = f.id()
		}
		stacks.Write(formats.Stack{StackID: f.id(), PID: uint32(f.id()), FrameIDs: ids})
	}
	frames := formats.NewTable[formats.Frame](w, formats.TableFrames)
	for i, n := 0, f.rows(); i < n; i++ {
		frames.Write(formats.Frame{FrameID: f.id(), Kernel: f.byte()%2 == 0, Address: f.raw64(), Module: f.str(),
			BuildID: f.str(), FileOffset: f.size(), Function: f.str(), File: f.str(), Line: uint32(f.size()),
			Inlined: f.byte()%2 == 0, InlineOf: f.id(), InlineDepth: uint32(f.size())})
	}
	reqs := formats.NewTable[formats.HTTPRequest](w, formats.TableHTTPRequests)
	for i, n := 0, f.rows(); i < n; i++ {
		reqs.Write(formats.HTTPRequest{RequestNs: f.time(), ResponseNs: f.time(), PID: uint32(f.id()), TID: uint32(f.id()),
			CgroupID: f.id(), Role: f.str(), Method: f.str(), Path: f.str(), PathTruncated: f.byte()%2 == 0,
			Status: uint32(f.size()), LocalAddr: f.str(), RemoteAddr: f.str(), Connection: f.id(),
			RequestBytes: int64(f.size()), ResponseBytes: int64(f.size())})
	}
	mem := formats.NewTable[formats.MemEvent](w, formats.TableMemEvents)
	for i, n := 0, f.rows(); i < n; i++ {
		mem.Write(formats.MemEvent{TimeNs: f.time(), PID: uint32(f.id()), TID: uint32(f.id()), Kind: f.str(),
			Addr: f.id() << 12, OldAddr: f.id() << 12, Size: f.size(), OldSize: f.size(), StackID: f.id(),
			Weight: float64(int64(f.raw64())) / float64(1+f.byte()), InAllocator: f.byte()%2 == 0})
	}
	if err := w.Finish(nil); err != nil {
		t.Fatal(err)
	}
	return out
}

// runEveryReader runs every analysis and renderer a reading verb can reach
// on one archive. Errors are fine (an archive may have no CPU samples);
// panics, hangs and runaway allocation are not.
func runEveryReader(t *testing.T, path string, filter byte) {
	req := analyze.Request{Slices: report.DefaultSlices}
	switch filter % 4 {
	case 1:
		req.PIDs = []uint32{1, 2}
	case 2:
		req.From, req.To = "1s", "3s"
	case 3:
		req.Namespace, req.Pod = "ns", "web-0"
	}
	if in, err := analyze.Inspect(path); err == nil {
		report.WriteInspectionText(io.Discard, in)
		report.WriteJSON(io.Discard, in)
	}
	s, err := analyze.Load(path, req)
	if err != nil {
		return
	}
	report.WriteSummaryText(io.Discard, s)
	if err := report.WriteJSON(io.Discard, s); err != nil {
		t.Errorf("analyze --json: %v", err)
	}
	if part, err := report.BuildHTMLArchive(s); err == nil {
		if err := report.WriteHTML(io.Discard, []*report.HTMLArchive{part}, report.HTMLOptions{Version: "fuzz"}); err != nil {
			t.Errorf("report: %v", err)
		}
	}
	for _, o := range []report.CPUFlameOptions{{}, {Folded: true, PerPID: true}} {
		report.WriteCPUFlameGraph(io.Discard, s, o)
	}
	for _, format := range report.ExportFormats {
		report.WriteCPUExport(io.Discard, s, format)
	}
}

// FuzzAnalyzeArchive builds small, structurally valid archives from fuzzed
// rows (absurd timestamps, ids that point nowhere, negative and huge sizes,
// deep stacks, duplicate rows, reused pids, hostile strings) and runs every
// analysis and renderer on them: no panic, each run under fuzzMaxTime and
// fuzzMaxAlloc.
func FuzzAnalyzeArchive(f *testing.F) {
	debug.SetMemoryLimit(1 << 30)
	f.Add([]byte{})
	seq := make([]byte, 1024)
	for i := range seq {
		seq[i] = byte(i * 7)
	}
	f.Add(seq)
	f.Add([]byte(strings.Repeat("\x10\x02\x01\x03", 200)))
	f.Add([]byte(strings.Repeat("\xff", 600)))
	f.Fuzz(func(t *testing.T, data []byte) {
		path := fuzzArchive(t, data)
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		timer := time.AfterFunc(fuzzMaxTime, func() {
			panic(fmt.Sprintf("analysis of a fuzzed archive ran over %s (input %q)", fuzzMaxTime, data))
		})
		runEveryReader(t, path, byte(len(data)))
		timer.Stop()
		runtime.ReadMemStats(&after)
		if alloc := after.TotalAlloc - before.TotalAlloc; alloc > fuzzMaxAlloc {
			t.Fatalf("the analysis of %d input bytes allocated %d MiB (bound %d MiB)", len(data), alloc>>20, fuzzMaxAlloc>>20)
		}
	})
}
