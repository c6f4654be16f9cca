package report

import (
	"bytes"
	"strings"
	"testing"

	"github.com/bpfsnap/bpfsnap/analyze"
	"github.com/bpfsnap/bpfsnap/internal/cpufixture"
)

func growthSummary(t *testing.T) *analyze.Summary {
	t.Helper()
	path, err := cpufixture.WriteGrowth(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	s, err := analyze.Load(path, analyze.Request{})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// The growth flame graph is weighted by bytes, well-formed with hostile
// names, and its folded form counts bytes; the text, the page (RSS curve,
// stacks, flame graph) show the section, and hostile names stay inert.
func TestGrowthOutputs(t *testing.T) {
	s := growthSummary(t)
	var svg bytes.Buffer
	if err := WriteGrowthFlameGraph(&svg, s, CPUFlameOptions{MinWidth: 0.1}); err != nil {
		t.Fatal(err)
	}
	_, titles := parseSVG(t, svg.Bytes())
	found := false
	for _, ti := range titles {
		if strings.HasPrefix(ti, "leak\n") && strings.Contains(ti, "2621440 bytes") {
			found = true
		}
	}
	if !found || !strings.Contains(svg.String(), `data-unit="bytes"`) {
		t.Errorf("growth flame graph: no leak frame of 2621440 bytes: %q", titles)
	}
	var folded bytes.Buffer
	if err := WriteGrowthFlameGraph(&folded, s, CPUFlameOptions{Folded: true}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(folded.String(), "grower;main;leak;do_anonymous_page_[k] 2621440\n") {
		t.Errorf("folded growth:\n%s", folded.String())
	}

	var text bytes.Buffer
	WriteSummaryText(&text, s)
	if !strings.Contains(text.String(), "Memory growth: 2.5 MiB made resident") || !strings.Contains(text.String(), "leak < main") {
		t.Errorf("text:\n%s", text.String())
	}
	if strings.ContainsRune(text.String(), 0x1b) || strings.ContainsRune(text.String(), 0) {
		t.Errorf("a hostile name reached the terminal raw:\n%s", text.String())
	}

	h, err := BuildHTMLArchive(s)
	if err != nil {
		t.Fatal(err)
	}
	var page bytes.Buffer
	if err := WriteHTML(&page, []*HTMLArchive{h}, HTMLOptions{}); err != nil {
		t.Fatal(err)
	}
	html := page.String()
	for _, want := range []string{`<section id="growth">`, `class="chart rss"`, "Memory made resident by stack", "grower [300]: RSS 10.0 MiB → 20.0 MiB"} {
		if !strings.Contains(html, want) {
			t.Errorf("the report lacks %q", want)
		}
	}
	if strings.Contains(html, "<script>alert") || strings.Contains(html, "<svg onload") {
		t.Errorf("a hostile name reached the page raw")
	}

	// An archive without growth data: the CLI's error, not an empty graph.
	cpu, err := cpufixture.Write(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	cs, err := analyze.Load(cpu, analyze.Request{})
	if err != nil {
		t.Fatal(err)
	}
	if err := WriteGrowthFlameGraph(&svg, cs, CPUFlameOptions{}); err == nil || !strings.Contains(err.Error(), "-p growth") {
		t.Errorf("no growth data: %v", err)
	}
}
