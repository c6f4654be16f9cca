package report

import (
	"bytes"
	"encoding/xml"
	"flag"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bpfsnap/bpfsnap/analyze"
	"github.com/bpfsnap/bpfsnap/formats"
	"github.com/bpfsnap/bpfsnap/internal/cpufixture"
	"github.com/bpfsnap/bpfsnap/internal/testenv"
)

var update = flag.Bool("update", false, "re-bless the golden files in testdata/")

func fixtureProfile(t testing.TB) *analyze.CPUProfile {
	t.Helper()
	path, err := cpufixture.Write(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	a, err := formats.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	p, err := analyze.LoadCPU(a, analyze.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func fixtureSVG(t *testing.T, opts FlameOptions) []byte {
	t.Helper()
	root := FlameTreeFromFolded(fixtureProfile(t).Folded(analyze.FoldOptions{}))
	var buf bytes.Buffer
	if err := WriteFlameGraph(&buf, root, opts); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// The rendered SVG (script left out) is compared with a blessed copy;
// run `go test ./report -run Golden -update` after an intended change and
// look at testdata/flamegraph.svg in a browser before committing it.
func TestFlameGraphGolden(t *testing.T) {
	got := fixtureSVG(t, FlameOptions{Title: "fixture", Subtitle: "golden", OmitScript: true})
	golden := filepath.Join("testdata", "flamegraph.golden.svg")
	if *update {
		if err := os.WriteFile(golden, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("flame graph differs from %s (run with -update if intended); got:\n%s", golden, got)
	}
}

// svgElement is what the strict XML decoder saw.
type svgElement struct {
	name  string
	attrs []xml.Attr
}

// parseSVG decodes the document strictly (an injected quote or tag makes it
// fail or adds elements/attributes) and returns every element, and the
// character data of each <title>.
func parseSVG(t *testing.T, data []byte) ([]svgElement, []string) {
	t.Helper()
	d := xml.NewDecoder(bytes.NewReader(data))
	d.Strict = true
	var els []svgElement
	var titles []string
	var inTitle bool
	var cur strings.Builder
	for {
		tok, err := d.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("SVG is not well-formed XML: %v", err)
		}
		switch v := tok.(type) {
		case xml.StartElement:
			els = append(els, svgElement{v.Name.Local, v.Attr})
			if v.Name.Local == "title" {
				inTitle = true
				cur.Reset()
			}
		case xml.CharData:
			if inTitle {
				cur.Write(v)
			}
		case xml.EndElement:
			if v.Name.Local == "title" {
				inTitle = false
				titles = append(titles, cur.String())
			}
		}
	}
	return els, titles
}

var allowedAttrs = map[string]map[string]bool{
	"svg": {"xmlns": true, "class": true, "version": true, "width": true, "height": true, "viewBox": true,
		"data-unit": true, "data-total": true, "data-pad": true, "data-char-width": true},
	"style":  {},
	"script": {},
	"rect":   {"class": true, "x": true, "y": true, "width": true, "height": true, "fill": true},
	"text":   {"class": true, "x": true, "y": true},
	"g":      {"class": true, "data-n": true},
	"title":  {},
}

func TestFlameGraphHostileNames(t *testing.T) {
	extra := []string{`"><script>alert(1)</script>`, `'onmouseover='alert(1)'`, `</script>`, `]]>`,
		"\xff\xfe\xfd", "ctl\x00\x01\x1b[2J\x7f", "line\nbreak\r", `<svg onload=alert(3)>`, "&amp;&lt;"}
	root := FlameTreeFromFolded(fixtureProfile(t).Folded(analyze.FoldOptions{}))
	for i, name := range extra {
		root.Add([]string{name, name + "child"}, uint64(10+i))
	}
	var buf bytes.Buffer
	if err := WriteFlameGraph(&buf, root, FlameOptions{Title: `<title>"'&`, Subtitle: "]]><script>x</script>"}); err != nil {
		t.Fatal(err)
	}
	els, titles := parseSVG(t, buf.Bytes())
	scripts := 0
	frames := 0
	for _, e := range els {
		allowed, ok := allowedAttrs[e.name]
		if !ok {
			t.Errorf("unexpected element <%s>: injected markup", e.name)
			continue
		}
		if e.name == "script" {
			scripts++
		}
		if e.name == "g" && len(e.attrs) > 0 && e.attrs[0].Value == "f" {
			frames++
		}
		for _, a := range e.attrs {
			if !allowed[a.Name.Local] || strings.HasPrefix(strings.ToLower(a.Name.Local), "on") {
				t.Errorf("unexpected attribute %s on <%s>", a.Name.Local, e.name)
			}
		}
	}
	if scripts != 1 {
		t.Errorf("%d <script> elements, want exactly our own one", scripts)
	}
	if frames != len(titles) || frames < 20 {
		t.Errorf("%d frames and %d titles", frames, len(titles))
	}
	// Every hostile name survives as text (made safe, not dropped).
	all := strings.Join(titles, "\n")
	for _, name := range []string{`"><script>alert(1)</script>`, `'onmouseover='alert(1)'`, `</script>`, `]]>`,
		`<svg onload=alert(3)>`, "&amp:&lt:", cpufixture.HostileFunc2, cpufixture.HostileComm} {
		if !strings.Contains(all, name) {
			t.Errorf("title text lacks %q", name)
		}
	}
	// Titles hold the name on the first line only: the script splits there.
	for _, ti := range titles {
		if strings.Count(ti, "\n") != 1 {
			t.Errorf("title %q has %d newlines, want 1", ti, strings.Count(ti, "\n"))
		}
	}
	// The raw bytes never carry an unescaped hostile fragment.
	raw := buf.String()
	body := raw[:strings.Index(raw, "<script>")]
	for _, frag := range []string{"<script>alert", "onmouseover='", "<svg onload", "\x1b", "\x00"} {
		if strings.Contains(body, frag) {
			t.Errorf("raw SVG contains %q", frag)
		}
	}
	if strings.Count(raw, "]]>") != 1 {
		t.Errorf("]]> appears %d times; only the script's CDATA end may", strings.Count(raw, "]]>"))
	}
}

// The flame graph must describe the profile: widths proportional to
// samples, kernel frames in the kernel hue, colours stable per name.
func TestFlameGraphLayout(t *testing.T) {
	root := NewFlameTree()
	root.Add([]string{"p", "main", "hot"}, 75)
	root.Add([]string{"p", "main", "cold"}, 25)
	root.Add([]string{"p", "main", "hot", "irq_[k]"}, 0)
	if root.Total != 100 || root.Children[0].Children[0].Total != 100 {
		t.Fatalf("tree totals wrong: %+v", root)
	}
	var buf bytes.Buffer
	if err := WriteFlameGraph(&buf, root, FlameOptions{Width: 1020, OmitScript: true}); err != nil {
		t.Fatal(err)
	}
	s := buf.String()
	for _, frag := range []string{
		"<title>hot\n75 samples (75.00%)</title>",
		`width="750.00"`, `width="250.00"`, `width="1000.00"`,
	} {
		if !strings.Contains(strings.ReplaceAll(s, "&#xA;", "\n"), frag) {
			t.Errorf("SVG lacks %q", frag)
		}
	}
	if frameColor("f", 3) != frameColor("f", 5) || frameColor("f", 3) == frameColor("g", 3) {
		t.Error("colours are not stable per name")
	}
	k := frameColor("irq_[k]", 4)
	if !strings.HasPrefix(k, "rgb(") || k == frameColor("irq", 4) {
		t.Errorf("kernel frame colour %s", k)
	}
	if fitLabel("abcdefghijkl", 40) != "ab.." || fitLabel("ab", 10) != "" || fitLabel("ab", 40) != "ab" {
		t.Errorf("fitLabel: %q %q %q", fitLabel("abcdefghijkl", 40), fitLabel("ab", 10), fitLabel("ab", 40))
	}
}

// The embedded script must parse: node checks its syntax.
func TestFlameGraphScriptSyntax(t *testing.T) {
	node := testenv.RequireTool(t, "node")
	f := filepath.Join(t.TempDir(), "fg.js")
	if err := os.WriteFile(f, []byte(FlameGraphScript()), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(node, "--check", f).CombinedOutput(); err != nil {
		t.Fatalf("script does not parse: %v\n%s", err, out)
	}
	if strings.Contains(FlameGraphScript(), "]]>") || strings.Contains(strings.ToLower(FlameGraphScript()), "</script") {
		t.Fatal("script would end its own CDATA/script element")
	}
}

// Frames narrower than MinWidth are left out, their samples still count in
// their parent, and the graph's depth shrinks with them.
func TestFlameGraphPruning(t *testing.T) {
	root := NewFlameTree()
	root.Add([]string{"p", "big"}, 1_000_000)
	root.Add([]string{"p", "tiny", "deeper", "deepest"}, 1)
	render := func(min float64) string {
		var buf bytes.Buffer
		if err := WriteFlameGraph(&buf, root, FlameOptions{MinWidth: min, OmitScript: true}); err != nil {
			t.Fatal(err)
		}
		return buf.String()
	}
	pruned, kept := render(0.1), render(0.0000001)
	if strings.Contains(pruned, "<title>tiny") || strings.Contains(pruned, "deepest") {
		t.Error("a 0.001 px frame was drawn")
	}
	if !strings.Contains(pruned, "<title>p&#xA;1000001 samples") {
		t.Error("the parent lost the pruned frame's samples")
	}
	if !strings.Contains(kept, "<title>deepest&#xA;1 samples") {
		t.Error("with a tiny MinWidth the frame is drawn")
	}
	els, _ := parseSVG(t, []byte(pruned))
	els2, _ := parseSVG(t, []byte(kept))
	if len(els) >= len(els2) {
		t.Errorf("pruning kept %d elements of %d", len(els), len(els2))
	}
}
