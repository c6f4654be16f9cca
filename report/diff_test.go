package report

import (
	"bytes"
	"encoding/xml"
	"io"
	"strconv"
	"strings"
	"testing"

	"github.com/bpfsnap/bpfsnap/analyze"
	"github.com/bpfsnap/bpfsnap/formats"
	"github.com/bpfsnap/bpfsnap/internal/cpufixture"
	"github.com/bpfsnap/bpfsnap/internal/offcpufixture"
)

// fixtureDiff compares a baseline with a fifth of the fixture's user-mode
// hot samples (100 of 500; 600 samples in all) with the fixture itself
// (1000): hot's self share grows from 1/6 to 1/2, cold's falls from 1/2 to
// 3/10. Both sides carry the fixture's hostile names.
func fixtureDiff(t testing.TB) *analyze.Diff {
	t.Helper()
	cur, err := cpufixture.Write(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	var samples []formats.CPUSample
	hot := 0
	for _, s := range cpufixture.Samples() {
		if s.StackID == 1 {
			if hot++; hot > 100 {
				continue
			}
		}
		samples = append(samples, s)
	}
	base, err := cpufixture.WriteWith(t.TempDir(), samples, cpufixture.Stacks(), cpufixture.Frames())
	if err != nil {
		t.Fatal(err)
	}
	d, err := analyze.LoadDiff(base, analyze.Request{}, cur, analyze.Request{})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// frameFills parses a flame graph strictly and returns each frame's title
// and fill.
func frameFills(t *testing.T, svg []byte) map[string]string {
	t.Helper()
	out := map[string]string{}
	dec := xml.NewDecoder(bytes.NewReader(svg))
	var title string
	inTitle := false
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatalf("SVG does not parse: %v", err)
		}
		switch e := tok.(type) {
		case xml.StartElement:
			inTitle = e.Name.Local == "title"
			if e.Name.Local == "rect" && title != "" {
				for _, a := range e.Attr {
					if a.Name.Local == "fill" {
						out[title] = a.Value
					}
				}
				title = ""
			}
		case xml.CharData:
			if inTitle {
				title = string(e)
			}
		case xml.EndElement:
			inTitle = false
		}
	}
}

// The differential graph colours by the change of the self share: hot
// red, cold blue, callers without self time grey; tooltips give both
// sides; hostile names stay text.
func TestDiffFlameGraph(t *testing.T) {
	d := fixtureDiff(t)
	var buf bytes.Buffer
	if err := WriteDiffFlameGraph(&buf, d, CPUFlameOptions{}); err != nil {
		t.Fatal(err)
	}
	fills := frameFills(t, buf.Bytes())
	find := func(name string) (string, string) {
		for title, fill := range fills {
			if strings.HasPrefix(title, name+"\n") {
				return title, fill
			}
		}
		t.Fatalf("no frame %q", name)
		return "", ""
	}
	title, fill := find("hot")
	if !strings.Contains(title, "self 16.67% → 50.00% (+33.33 points, grown); baseline 200 samples (33.33%)") || fill != "rgb(255,0,0)" {
		t.Errorf("hot: %q %s, want grown and the deepest red (the largest change)", title, fill)
	}
	title, fill = find("cold")
	if !strings.Contains(title, "(-20.00 points, shrunk)") || !strings.HasPrefix(fill, "rgb(") || !strings.HasSuffix(fill, ",255)") {
		t.Errorf("cold: %q %s, want shrunk and blue", title, fill)
	}
	for _, name := range []string{"all", "app", "main", "work"} {
		if title, fill := find(name); !strings.Contains(title, "unchanged") || fill != "rgb(221,221,214)" {
			t.Errorf("%s: %q %s, want unchanged and grey (no self samples)", name, title, fill)
		}
	}
	raw := buf.String()
	body := raw[:strings.Index(raw, "<script>")]
	for _, frag := range []string{"<script>alert", "onmouseover='", "<svg onload", "\x1b", "\x00"} {
		if strings.Contains(body, frag) {
			t.Errorf("raw SVG contains %q", frag)
		}
	}
	if !strings.Contains(raw, "widths: NEW, 1000 samples; colour: self share vs BASE, 600 samples") {
		t.Errorf("subtitle does not say what widths and colours are")
	}

	buf.Reset()
	if err := WriteDiffFlameGraph(&buf, d, CPUFlameOptions{Folded: true}); err != nil {
		t.Fatal(err)
	}
	var b, n uint64
	for _, line := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		f := strings.Fields(line)
		x, err1 := strconv.ParseUint(f[len(f)-2], 10, 64)
		y, err2 := strconv.ParseUint(f[len(f)-1], 10, 64)
		if err1 != nil || err2 != nil {
			t.Fatalf("folded diff line %q is not STACK BASE NEW", line)
		}
		b, n = b+x, n+y
	}
	if b != 600 || n != 1000 || !strings.Contains(buf.String(), "app;main;work;hot 100 500\n") {
		t.Errorf("folded diff sums %d/%d, want 600/1000:\n%s", b, n, buf.String())
	}
}

// Widths are NEW's: the differential graph of the fixture against any
// baseline behaves in a browser exactly as the fixture's plain graph.
func TestDiffFlameGraphInBrowser(t *testing.T) {
	d := fixtureDiff(t)
	checkFlameProbe(t, probeFlameInBrowser(t, func(w io.Writer) error {
		return WriteDiffFlameGraph(w, d, CPUFlameOptions{Title: "browser test"})
	}))
}

func TestWriteDiffText(t *testing.T) {
	d := fixtureDiff(t)
	var buf bytes.Buffer
	WriteDiffText(&buf, d)
	out := buf.String()
	for _, want := range []string{"What changed:", "CPU: hot self 16.7% → 50.0% of samples (+33.3 points)", "CPU: 600 → 1000 samples", "*"} {
		if !strings.Contains(out, want) {
			t.Errorf("text lacks %q:\n%s", want, out)
		}
	}
	if strings.ContainsAny(out, "\x1b\x00") {
		t.Errorf("raw control characters from hostile names:\n%q", out)
	}
}

// The report with a baseline: the "what changed" card, the differential
// graph beside the plain one, the function changes; none without one.
func TestReportWithBaseline(t *testing.T) {
	d := fixtureDiff(t)
	s, err := analyze.Load(d.New.Archive, analyze.Request{Slices: DefaultSlices})
	if err != nil {
		t.Fatal(err)
	}
	render := func(withBaseline bool) string {
		h, err := BuildHTMLArchive(s)
		if err != nil {
			t.Fatal(err)
		}
		if withBaseline {
			if err := h.AddBaseline(d); err != nil {
				t.Fatal(err)
			}
		}
		var page bytes.Buffer
		if err := WriteHTML(&page, []*HTMLArchive{h}, HTMLOptions{}); err != nil {
			t.Fatal(err)
		}
		return page.String()
	}
	page := render(true)
	for _, want := range []string{`<div class="card changed">`, "What changed", "CPU: hot self 16.7% → 50.0%", `<div class="flame diffflame"><svg`,
		"CPU: differential vs baseline cpu-fixture.bpfsnap", "<th>Baseline</th>", "(within noise)"} {
		if !strings.Contains(page, want) {
			t.Errorf("report lacks %q", want)
		}
	}
	for _, bad := range []string{"<script>alert", "<svg onload", "\x1b"} {
		if strings.Contains(page, bad) {
			t.Errorf("raw %q in the page", bad)
		}
	}
	if plain := render(false); strings.Contains(plain, "card changed") || strings.Contains(plain, "diffflame") || strings.Contains(plain, "<th>Baseline</th>") {
		t.Error("the report without a baseline shows comparison parts")
	}
}

// With the offcpu probe on both sides, the comparison shows the wait
// classes per second and each endpoint's split, in text and in the page.
func TestDiffOffCPU(t *testing.T) {
	path, err := offcpufixture.Write(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	d, err := analyze.LoadDiff(path, analyze.Request{}, path, analyze.Request{})
	if err != nil {
		t.Fatal(err)
	}
	var text bytes.Buffer
	WriteDiffText(&text, d)
	if !strings.Contains(text.String(), "Off-CPU, ms per second of the window") || !strings.Contains(text.String(), "lock ") {
		t.Errorf("text:\n%s", text.String())
	}
	s, err := analyze.Load(path, analyze.Request{})
	if err != nil {
		t.Fatal(err)
	}
	h, err := BuildHTMLArchive(s)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.AddBaseline(d); err != nil {
		t.Fatal(err)
	}
	var page bytes.Buffer
	if err := WriteHTML(&page, []*HTMLArchive{h}, HTMLOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Milliseconds per second of each window", "<td>lock</td>", "p99 vs baseline"} {
		if !strings.Contains(page.String(), want) {
			t.Errorf("page lacks %q", want)
		}
	}
	if strings.Contains(page.String(), "<svg onload") {
		t.Error("raw hostile markup in the page")
	}
}
