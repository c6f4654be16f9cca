package report

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/bpfsnap/bpfsnap/analyze"
	fx "github.com/bpfsnap/bpfsnap/internal/offcpufixture"
)

func offcpuSummary(t *testing.T) *analyze.Summary {
	t.Helper()
	path, err := fx.Write(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	s, err := analyze.Load(path, analyze.Request{Slices: DefaultSlices})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// The off-CPU flame graph is well-formed with a hostile frame name in it,
// counts microseconds, and has the wait class under the process.
func TestOffCPUFlameGraph(t *testing.T) {
	s := offcpuSummary(t)
	var buf bytes.Buffer
	if err := WriteOffCPUFlameGraph(&buf, s, OffCPUFlameOptions{}); err != nil {
		t.Fatal(err)
	}
	els, titles := parseSVG(t, buf.Bytes())
	for _, e := range els {
		if _, ok := allowedAttrs[e.name]; !ok {
			t.Errorf("unexpected element <%s>", e.name)
		}
	}
	all := strings.Join(titles, "\n")
	for _, want := range []string{"[lock]\n", "[sleep]\n", "[run queue]\n", "wait_for_lock\n", OffCPUUnit, "</script><svg onload=alert(1)>"} {
		if !strings.Contains(all, want) {
			t.Errorf("no frame title with %q", want)
		}
	}
	raw := buf.String()
	if body := raw[:strings.Index(raw, "<script>")]; strings.Contains(body, "<svg onload") || strings.Contains(body, "\x1b") {
		t.Error("the hostile name reached the SVG unescaped")
	}
	var folded bytes.Buffer
	if err := WriteOffCPUFlameGraph(&folded, s, OffCPUFlameOptions{Folded: true}); err != nil {
		t.Fatal(err)
	}
	lines, err := analyze.ParseFolded(&folded)
	if err != nil || len(lines) < 5 {
		t.Fatalf("folded: %v, %d lines", err, len(lines))
	}
}

// analyze's text says where each endpoint's time went, with the stack, and
// the throttling; the workload's strings stay inert.
func TestOffCPUText(t *testing.T) {
	var b strings.Builder
	WriteSummaryText(&b, offcpuSummary(t))
	out := b.String()
	for _, want := range []string{"GET /lock: on CPU 15%, lock 80%, run queue 5%", "blocked 80.0 ms (lock) in __lll_lock_wait < pthread_mutex_lock < wait_for_lock",
		"its cgroup was throttled: v2 /kubepods/pod1: limit 0.50 CPUs, throttled 20 of 100 periods", "Off-CPU:", "pod shop/web-1"} {
		if !strings.Contains(out, want) {
			t.Errorf("text lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "\x1b") {
		t.Error("an escape sequence reached the terminal")
	}
}

// The report's HTTP rows expand into the time split, the slow requests
// have theirs, the card says where their time went, and the off-CPU
// section has the flame graph and its slices.
func TestOffCPUHTML(t *testing.T) {
	h, err := BuildHTMLArchive(offcpuSummary(t))
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	if err := WriteHTML(&b, []*HTMLArchive{h}, HTMLOptions{Now: time.Unix(0, 0)}); err != nil {
		t.Fatal(err)
	}
	page := b.String()
	for _, want := range []string{`<section id="offcpu">`, "Where did the slow requests' time go", `class="timesplit"`,
		`data-archive="off0"`, "Off-CPU: whole window", `id="folded-offcpu-data"`, "wait_for_lock", "/kubepods/pod1"} {
		if !strings.Contains(page, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	if n := strings.Count(page, `class="flame hidden" data-slice=`); n != 2*DefaultSlices {
		t.Errorf("%d sliced flame graphs, want %d CPU and %d off-CPU", n, DefaultSlices, DefaultSlices)
	}
	if strings.Contains(page, "<svg onload") || strings.Contains(page, "\x1b") {
		t.Error("the hostile frame name reached the page unescaped")
	}
}
