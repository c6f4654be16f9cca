package report

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/google/pprof/profile"

	"github.com/bpfsnap/bpfsnap/internal/cpufixture"
)

func TestPprofProfile(t *testing.T) {
	p := fixtureProfile(t)
	var buf bytes.Buffer
	if err := WritePprof(&buf, p, PprofOptions{Start: time.Unix(1e9, 0), Duration: cpufixture.Span}); err != nil {
		t.Fatal(err)
	}
	prof, err := profile.Parse(&buf)
	if err != nil {
		t.Fatal(err)
	}
	period := int64(1e9) / cpufixture.FreqHz
	if prof.Period != period || len(prof.SampleType) != 2 || prof.SampleType[1].Unit != "nanoseconds" {
		t.Fatalf("period %d, sample types %v", prof.Period, prof.SampleType)
	}
	var samples, cpu int64
	for _, s := range prof.Sample {
		samples += s.Value[0]
		cpu += s.Value[1]
	}
	if samples != int64(p.Samples) || cpu != samples*period {
		t.Errorf("samples %d cpu %d ns, want %d and ×%d", samples, cpu, p.Samples, period)
	}
	var hot *profile.Function
	for _, f := range prof.Function {
		if f.Name == "hot" {
			hot = f
		}
	}
	if hot == nil || hot.Filename != "app.c" {
		t.Fatalf("function hot with its file missing: %+v", prof.Function)
	}
	lineOK, buildID := false, false
	for _, l := range prof.Location {
		if len(l.Line) > 0 && l.Line[0].Function == hot && l.Line[0].Line == 10 {
			lineOK = true
			buildID = l.Mapping != nil && l.Mapping.BuildID == "aabb" && l.Mapping.File == "/usr/bin/app"
		}
	}
	for _, m := range prof.Mapping {
		if strings.ContainsAny(m.File, "\n\x1b") {
			t.Errorf("mapping file %q keeps control characters", m.File)
		}
	}
	if !lineOK || !buildID {
		t.Errorf("hot's location: line %v, mapping with build id %v", lineOK, buildID)
	}
}

// The real `go tool pprof` reads the file and names the hot function first.
func TestPprofWithGoTool(t *testing.T) {
	goBin := filepath.Join(runtime.GOROOT(), "bin", "go")
	if _, err := os.Stat(goBin); err != nil {
		t.Skipf("no go tool at %s", goBin)
	}
	path := filepath.Join(t.TempDir(), "cpu.pb.gz")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := WritePprof(f, fixtureProfile(t), PprofOptions{}); err != nil {
		t.Fatal(err)
	}
	f.Close()
	cmd := exec.Command(goBin, "tool", "pprof", "-top", "-sample_index=samples", path)
	cmd.Env = append(os.Environ(), "PPROF_BINARY_PATH=/nonexistent", "PPROF_TMPDIR="+t.TempDir())
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("go tool pprof: %v\n%s", err, out)
	}
	lines := strings.Split(string(out), "\n")
	first := ""
	for i, l := range lines {
		if strings.Contains(l, "flat%") && i+1 < len(lines) {
			first = lines[i+1]
			break
		}
	}
	if !strings.HasSuffix(strings.TrimSpace(first), " hot") || !strings.Contains(first, "50.00%") {
		t.Fatalf("pprof -top does not list hot first with 50%%:\n%s", out)
	}
	if strings.ContainsAny(string(out), "\x1b\x00") {
		t.Errorf("control characters of hostile names reached pprof's output: %q", out)
	}
	if !strings.Contains(string(out), "hrtimer_interrupt_[k]") {
		t.Errorf("kernel frame missing from pprof -top:\n%s", out)
	}
}
