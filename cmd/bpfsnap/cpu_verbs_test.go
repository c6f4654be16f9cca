package main

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/pprof/profile"

	"github.com/bpfsnap/bpfsnap/formats"
	"github.com/bpfsnap/bpfsnap/internal/cpufixture"
)

func runBpfsnap(t *testing.T, args ...string) (string, error) {
	t.Helper()
	root := newRootCmd()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(io.Discard)
	root.SetArgs(args)
	err := root.Execute()
	return out.String(), err
}

func cpuFixture(t *testing.T) string {
	t.Helper()
	p, err := cpufixture.Write(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestFlamegraphVerbFolded(t *testing.T) {
	arc := cpuFixture(t)
	out, err := runBpfsnap(t, "flamegraph", arc, "--folded")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "app;main;work;hot 500\n") || !strings.Contains(out, "app;main;work;cold 300\n") {
		t.Fatalf("folded output:\n%s", out)
	}
	// The slice and pid filters apply.
	out, err = runBpfsnap(t, "flamegraph", arc, "--folded", "--pid", "100", "--from", "0s", "--to", "2500ms")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "app;main;work;hot 250\n") || strings.Contains(out, "script") {
		t.Fatalf("filtered folded output:\n%s", out)
	}
}

func TestFlamegraphVerbSVG(t *testing.T) {
	arc := cpuFixture(t)
	svg := filepath.Join(t.TempDir(), "cpu.svg")
	if _, err := runBpfsnap(t, "flamegraph", arc, "-o", svg); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(svg)
	if err != nil {
		t.Fatal(err)
	}
	d := xml.NewDecoder(bytes.NewReader(data))
	for {
		if _, err := d.Token(); err == io.EOF {
			break
		} else if err != nil {
			t.Fatalf("SVG does not parse: %v", err)
		}
	}
	if !bytes.Contains(data, []byte("<title>hot&#xA;600 samples (60.00%)")) {
		t.Errorf("SVG lacks the hot frame")
	}
	if st, _ := os.Stat(svg); st.Mode().Perm() != 0o644 {
		t.Errorf("SVG mode %v", st.Mode().Perm())
	}
}

func TestCPUVerbsWithoutSamples(t *testing.T) {
	dir := t.TempDir()
	empty, err := cpufixture.WriteWith(dir, nil, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"flamegraph", empty},
		{"export", empty, "--format", "folded"},
	} {
		_, err := runBpfsnap(t, args...)
		if err == nil || !strings.Contains(err.Error(), empty) || !strings.Contains(err.Error(), "no CPU samples") {
			t.Errorf("%v: err = %v", args, err)
		}
	}
	_, err = runBpfsnap(t, "flamegraph", cpuFixture(t), "--pid", "4242")
	if err == nil || !strings.Contains(err.Error(), "no CPU samples match pid 4242") {
		t.Errorf("filter leaving nothing: err = %v", err)
	}
	if _, err := runBpfsnap(t, "export", cpuFixture(t), "--format", "svgz"); err == nil || !strings.Contains(err.Error(), "pprof, folded, json or parquet-dataset") {
		t.Errorf("bad format: err = %v", err)
	}
}

func TestExportVerb(t *testing.T) {
	arc := cpuFixture(t)
	dir := t.TempDir()
	pb := filepath.Join(dir, "cpu.pb.gz")
	if _, err := runBpfsnap(t, "export", arc, "--format", "pprof", "-o", pb); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(pb)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	prof, err := profile.Parse(f)
	if err != nil {
		t.Fatal(err)
	}
	if prof.DurationNanos != int64(cpufixture.Span) || len(prof.Sample) == 0 {
		t.Errorf("pprof duration %d, %d samples", prof.DurationNanos, len(prof.Sample))
	}
	out, err := runBpfsnap(t, "export", arc, "--format", "json", "--from", "5s")
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		CPU struct {
			Samples uint64 `json:"samples"`
		} `json:"cpu"`
		Folded []struct {
			Frames []string `json:"frames"`
			Count  uint64   `json:"count"`
		} `json:"folded"`
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatal(err)
	}
	if doc.CPU.Samples != cpufixture.HostileSamples+cpufixture.NoStackSamples || len(doc.Folded) != 2 {
		t.Errorf("json export of the second half: %+v", doc)
	}
}

func TestAnalyzeCPUSection(t *testing.T) {
	arc := cpuFixture(t)
	out, err := runBpfsnap(t, "analyze", arc, "--json")
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		CPU struct {
			Samples   uint64 `json:"samples"`
			Processes []struct {
				PID  uint32  `json:"pid"`
				Comm string  `json:"comm"`
				Pct  float64 `json:"pct"`
			} `json:"processes"`
			Functions []map[string]any `json:"functions"`
		} `json:"cpu"`
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatal(err)
	}
	if doc.CPU.Samples != 1000 || len(doc.CPU.Processes) != 2 || doc.CPU.Processes[0].Pct != 90 {
		t.Fatalf("cpu section: %+v", doc.CPU)
	}
	top := doc.CPU.Functions[0]
	for _, k := range []string{"name", "self_samples", "self_pct", "total_samples", "total_pct"} {
		if _, ok := top[k]; !ok {
			t.Errorf("function lacks %q: %v", k, top)
		}
	}
	if top["name"] != "hot" || top["self_pct"] != 50.0 || top["total_pct"] != 60.0 {
		t.Errorf("top function %v", top)
	}
	text, err := runBpfsnap(t, "analyze", arc)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(text, "CPU: 1000 samples at 99 Hz") || !strings.Contains(text, "50.0%   60.0%  hot") {
		t.Errorf("analyze text:\n%s", text)
	}
	if strings.ContainsAny(text, "\x1b\x00") || strings.Contains(text, "\xff") {
		t.Errorf("control bytes reached the terminal: %q", text)
	}
}

// A frame left unresolved reaches the terminal text in its module+offset form.
func TestAnalyzeUnresolvedFrames(t *testing.T) {
	arc, err := cpufixture.WriteWith(t.TempDir(),
		[]formats.CPUSample{{TimeNs: cpufixture.StartMono + 1, PID: 7, Comm: "x", StackID: 1}},
		[]formats.Stack{{StackID: 1, FrameIDs: []uint64{1}}},
		[]formats.Frame{{FrameID: 1, Module: "/opt/bin/svc", FileOffset: 0xbeef}})
	if err != nil {
		t.Fatal(err)
	}
	out, err := runBpfsnap(t, "analyze", arc)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "svc+0xbeef") || !strings.Contains(out, "1 unresolved frames") {
		t.Errorf("analyze text:\n%s", out)
	}
}

// The CPU verbs fail with one line on stderr, naming the archive.
func TestCPUVerbErrorsAreOneLine(t *testing.T) {
	bin := bpfsnapBin(t)
	empty, err := cpufixture.WriteWith(t.TempDir(), nil, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"flamegraph", "/nonexistent/x.bpfsnap"},
		{"flamegraph", empty},
		{"export", empty, "--format", "pprof", "-o", filepath.Join(t.TempDir(), "x.pb.gz")},
		{"export", empty, "--format", "nope"},
		{"flamegraph", empty, "--from", "later"},
	} {
		var stderr bytes.Buffer
		cmd := exec.Command(bin, args...)
		cmd.Stderr = &stderr
		if err := cmd.Run(); err == nil {
			t.Errorf("%v succeeded", args)
			continue
		}
		msg := stderr.String()
		if strings.Count(msg, "\n") != 1 || !strings.HasPrefix(msg, "bpfsnap: ") {
			t.Errorf("%v: stderr is not one line: %q", args, msg)
		}
	}
}
