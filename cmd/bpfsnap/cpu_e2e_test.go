package main

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"io"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/bpfsnap/bpfsnap/internal/testenv"
)

// A real capture of the cpuburn demo (hot_a:hot_b = 3:1 under work), read
// back through every CPU verb of the built binary: folded stacks, the SVG,
// analyze --json and a pprof file that the real `go tool pprof` reads.
func TestCPUVerbsOnRealCapture(t *testing.T) {
	testenv.RequireBPF(t)
	if runtime.GOOS != "linux" {
		t.Skip("capture is linux only")
	}
	gcc := testenv.RequireTool(t, "gcc")
	bpfsnapBin(t)
	dir := t.TempDir()
	burn := filepath.Join(dir, "cpuburn")
	if out, err := exec.Command(gcc, "-O1", "-fno-omit-frame-pointer", "-o", burn, "../../testdata/demo/cpuburn.c").CombinedOutput(); err != nil {
		t.Fatalf("gcc: %v: %s", err, out)
	}
	arc := filepath.Join(dir, "cpu.bpfsnap")
	run := func(args ...string) string {
		t.Helper()
		return runBin(t, args...)
	}
	run("capture", "-p", "cpu", "--freq", "499", "-d", "30s", "-o", arc, "--", burn, "1000")

	folded := run("flamegraph", arc, "--folded")
	var a, b uint64
	for _, line := range strings.Split(strings.TrimSpace(folded), "\n") {
		sp := strings.LastIndexByte(line, ' ')
		if sp < 0 {
			t.Fatalf("folded line without a count: %q", line)
		}
		var n uint64
		for _, c := range line[sp+1:] {
			n = n*10 + uint64(c-'0')
		}
		switch {
		case strings.HasPrefix(line, "cpuburn;") && strings.Contains(line, ";work;hot_a"):
			a += n
		case strings.HasPrefix(line, "cpuburn;") && strings.Contains(line, ";work;hot_b"):
			b += n
		}
	}
	if a+b < 300 {
		t.Fatalf("only %d+%d samples of hot_a/hot_b under cpuburn;…;work:\n%s", a, b, folded)
	}
	share := 100 * float64(a) / float64(a+b)
	// Samples are a binomial draw: with ~900 of them the share's standard
	// deviation is ~1.4 points, and ±3 (about 2σ) failed one CI run in
	// twenty-odd at 71.1%. Four σ, and never under 3 points: a wrong
	// attribution (hot_b's samples named hot_a, or half of them lost) is
	// still far outside.
	tol := max(3, 4*100*math.Sqrt(0.75*0.25/float64(a+b)))
	t.Logf("hot_a %d, hot_b %d: %.1f%% (want 75 ± %.1f)", a, b, share, tol)
	if math.Abs(share-75) > tol {
		t.Errorf("hot_a share %.1f%%, want 75 ± %.1f", share, tol)
	}

	svg := filepath.Join(dir, "cpu.svg")
	run("flamegraph", arc, "-o", svg)
	data, err := os.ReadFile(svg)
	if err != nil {
		t.Fatal(err)
	}
	d := xml.NewDecoder(bytes.NewReader(data))
	for {
		if _, err := d.Token(); err == io.EOF {
			break
		} else if err != nil {
			t.Fatalf("SVG of a real capture does not parse: %v", err)
		}
	}
	if !bytes.Contains(data, []byte("<title>hot_a&#xA;")) {
		t.Error("SVG has no hot_a frame")
	}

	var sum struct {
		CPU struct {
			Samples   uint64 `json:"samples"`
			Functions []struct {
				Name    string  `json:"name"`
				SelfPct float64 `json:"self_pct"`
			} `json:"functions"`
		} `json:"cpu"`
	}
	if err := json.Unmarshal([]byte(run("analyze", arc, "--json")), &sum); err != nil {
		t.Fatal(err)
	}
	if len(sum.CPU.Functions) == 0 || sum.CPU.Functions[0].Name != "hot_a" {
		t.Errorf("analyze top function: %+v", sum.CPU.Functions[:min(3, len(sum.CPU.Functions))])
	}

	pb := filepath.Join(dir, "cpu.pb.gz")
	run("export", arc, "--format", "pprof", "-o", pb)
	out, err := exec.Command(filepath.Join(runtime.GOROOT(), "bin", "go"), "tool", "pprof", "-top", pb).CombinedOutput()
	if err != nil {
		t.Fatalf("go tool pprof: %v\n%s", err, out)
	}
	var first string
	lines := strings.Split(string(out), "\n")
	for i, l := range lines {
		if strings.Contains(l, "flat%") && i+1 < len(lines) {
			first = strings.TrimSpace(lines[i+1])
		}
	}
	if !strings.HasSuffix(first, " hot_a") || !strings.Contains(string(out), "Type: cpu") {
		t.Errorf("go tool pprof -top does not list hot_a first:\n%s", out)
	}
}
