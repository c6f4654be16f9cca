package report

import (
	"encoding/xml"
	"io"
	"strings"
	"testing"

	"github.com/bpfsnap/bpfsnap/analyze"
)

var hostileNames = []string{
	`"><script>alert(1)</script>`,
	`'onmouseover='alert(1)'`,
	`</script><svg onload=alert(1)>`,
	`]]><script>alert(2)</script>`,
	"bad\xffutf8\x01\x1b[31m",
	`a&b<c>d`,
}

// Every hostile name stays text: the SVG parses as XML and holds exactly
// our own elements, with no attribute that could run code.
func TestFlameGraphHostileNames(t *testing.T) {
	var lines []analyze.FoldedLine
	for i, n := range hostileNames {
		lines = append(lines, analyze.FoldedLine{Frames: []string{"proc " + n, "main", n}, Value: int64(10 + i)})
	}
	var b strings.Builder
	if err := WriteFlameGraph(&b, lines, FlameGraphOptions{Title: hostileNames[0], Unit: "samples"}); err != nil {
		t.Fatal(err)
	}
	dec := xml.NewDecoder(strings.NewReader(b.String()))
	allowed := map[string]bool{"svg": true, "style": true, "rect": true, "text": true, "g": true, "title": true, "script": true}
	scripts, titles := 0, 0
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("SVG is not well-formed XML: %v", err)
		}
		se, ok := tok.(xml.StartElement)
		if !ok {
			continue
		}
		if !allowed[se.Name.Local] {
			t.Errorf("unexpected element <%s>", se.Name.Local)
		}
		if se.Name.Local == "script" {
			scripts++
		}
		if se.Name.Local == "title" {
			titles++
		}
		for _, a := range se.Attr {
			if strings.HasPrefix(strings.ToLower(a.Name.Local), "on") {
				t.Errorf("event handler attribute %s=%q on <%s>", a.Name.Local, a.Value, se.Name.Local)
			}
		}
	}
	if scripts != 1 {
		t.Errorf("%d script elements, want only ours", scripts)
	}
	// all + one process frame + main + leaf per line.
	if want := 1 + 3*len(hostileNames); titles != want {
		t.Errorf("%d frames drawn, want %d", titles, want)
	}
}

func TestFlameGraphCountsAndPruning(t *testing.T) {
	lines := []analyze.FoldedLine{
		{Frames: []string{"p [1]", "main", "hot"}, Value: 900000},
		{Frames: []string{"p [1]", "main", "tiny"}, Value: 1},
	}
	var b strings.Builder
	if err := WriteFlameGraph(&b, lines, FlameGraphOptions{Unit: "samples"}); err != nil {
		t.Fatal(err)
	}
	svg := b.String()
	if !strings.Contains(svg, "hot (900000 samples, 100.00%)") {
		t.Errorf("hot frame title missing")
	}
	if strings.Contains(svg, "<title>tiny") || !strings.Contains(svg, "1 samples in frames too narrow") {
		t.Errorf("tiny frame should be pruned and counted")
	}
}

func BenchmarkFlameGraph(b *testing.B) {
	// 1 million samples over a few thousand distinct stacks.
	var lines []analyze.FoldedLine
	for i := 0; i < 4000; i++ {
		lines = append(lines, analyze.FoldedLine{Frames: []string{"svc [1]", "main", "handler" + string(rune('a'+i%26)), "fn" + strings.Repeat("x", i%7), "leaf" + string(rune('a'+i%13))}, Value: 250})
	}
	for i := 0; i < b.N; i++ {
		if err := WriteFlameGraph(io.Discard, lines, FlameGraphOptions{}); err != nil {
			b.Fatal(err)
		}
	}
}
