package report

import (
	"bytes"
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/bpfsnap/bpfsnap/analyze"
	"github.com/bpfsnap/bpfsnap/internal/testenv"
)

// flameProbeScript drives the inline flame graph the way a reader does
// (search, click to zoom, reset) and writes what it saw into the page,
// which headless Chromium then dumps. It also records any alert() and any
// element or attribute the hostile names could have injected.
const flameProbeScript = `<pre id="out"></pre><script>
var out = [], svg = document.querySelector("svg.bpfsnap-flame");
try {
  var r = bpfsnapFlame.search(svg, "^hot$");
  out.push("search " + r.frames + " " + r.samples + " " + svg.querySelector(".matched").textContent);
  var cold = [].filter.call(svg.querySelectorAll("g.f"), function (g) {
    return g.querySelector("title").textContent.indexOf("cold\n") === 0; })[0];
  cold.dispatchEvent(new MouseEvent("click", {bubbles: true}));
  out.push("zoom " + cold.querySelector("rect").getAttribute("width") + " hidden " +
    svg.querySelectorAll("g.f.hidden").length + " reset " + !svg.querySelector(".reset").classList.contains("hidden"));
  var narrow = [].filter.call(svg.querySelectorAll("g.f"), function (g) {
    return g.querySelector("title").textContent.indexOf("[no stack]\n") === 0; })[0];
  out.push("narrow label before " + (narrow.querySelector("text") ? "yes" : "none"));
  bpfsnapFlame.zoom(svg, narrow);
  out.push("narrow label after " + narrow.querySelector("text").textContent);
  bpfsnapFlame.reset(svg);
  out.push("reset hidden " + svg.querySelectorAll("g.f.hidden").length);
  out.push("injected " + document.querySelectorAll("svg svg, svg foreignObject, [onload], [onmouseover]").length +
    " scripts " + document.querySelectorAll("script").length);
} catch (e) { out.push("error " + e); }
out.push("alerts " + (window.__alerts || 0));
document.getElementById("out").textContent = out.join("\n");
</script>`

// The SVG's script works inline in an HTML page in a real browser: search
// reports the match share, a click zooms, reset restores, and the hostile
// names of the fixture neither run nor add elements.
func TestFlameGraphInBrowser(t *testing.T) {
	root := FlameTreeFromFolded(fixtureProfile(t).Folded(analyze.FoldOptions{}))
	checkFlameProbe(t, probeFlameInBrowser(t, func(w io.Writer) error {
		return WriteFlameGraph(w, root, FlameOptions{Title: "browser test"})
	}))
}

// probeFlameInBrowser opens a page holding the graph write draws (a graph
// of the fixture's profile, with its script) in headless Chromium, runs
// flameProbeScript on it and returns what the script saw.
func probeFlameInBrowser(t *testing.T, write func(io.Writer) error) string {
	t.Helper()
	chromium := testenv.RequireTool(t, "chromium")
	var page bytes.Buffer
	page.WriteString("<!doctype html><html><head><meta charset=utf-8><script>window.alert=function(){window.__alerts=(window.__alerts||0)+1};</script></head><body>")
	if err := write(&page); err != nil {
		t.Fatal(err)
	}
	page.WriteString(flameProbeScript + "</body></html>")
	html := filepath.Join(t.TempDir(), "fg.html")
	if err := os.WriteFile(html, page.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, chromium, "--headless", "--no-sandbox", "--disable-gpu",
		"--user-data-dir="+t.TempDir(), "--dump-dom", "file://"+html)
	dom, err := cmd.Output()
	if err != nil {
		t.Fatalf("chromium: %v", err)
	}
	m := regexp.MustCompile(`(?s)<pre id="out">(.*?)</pre>`).FindSubmatch(dom)
	if m == nil {
		t.Fatalf("no result in the dumped page:\n%s", dom)
	}
	got := string(m[1])
	t.Logf("browser: %q", got)
	return got
}

// checkFlameProbe checks what flameProbeScript saw on the fixture's graph.
func checkFlameProbe(t *testing.T, got string) {
	t.Helper()
	for _, want := range []string{
		"search 1 600 Matched: 60.0%",
		"zoom 1180.00 hidden ",
		" reset true",
		"narrow label before none",
		"narrow label after [no stack]",
		"reset hidden 0",
		"injected 0 scripts 3", // ours: the alert trap, the graph's, this probe
		"alerts 0",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("browser result lacks %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, "hidden 0 reset") {
		t.Error("zooming hid no frame")
	}
}

// Several graphs in one page, written with OmitScript and the script
// included once (how the HTML report embeds them), each work on their own.
func TestFlameGraphsShareOneScript(t *testing.T) {
	chromium := testenv.RequireTool(t, "chromium")
	var page bytes.Buffer
	page.WriteString("<!doctype html><html><head><meta charset=utf-8></head><body>")
	for _, fn := range []string{"alpha", "beta"} {
		root := NewFlameTree()
		root.Add([]string{"proc", "main", fn}, 3)
		root.Add([]string{"proc", "main", "other"}, 1)
		if err := WriteFlameGraph(&page, root, FlameOptions{OmitScript: true, Title: fn}); err != nil {
			t.Fatal(err)
		}
	}
	page.WriteString("<script>" + FlameGraphScript() + "</script>")
	page.WriteString(`<pre id="out"></pre><script>
var svgs = document.querySelectorAll("svg.bpfsnap-flame"), out = [];
out.push(bpfsnapFlame.search(svgs[0], "alpha").pct + " " + bpfsnapFlame.search(svgs[1], "alpha").pct +
  " " + bpfsnapFlame.search(svgs[1], "beta").pct);
document.getElementById("out").textContent = out.join(";");
</script></body></html>`)
	html := filepath.Join(t.TempDir(), "two.html")
	if err := os.WriteFile(html, page.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	dom, err := exec.CommandContext(ctx, chromium, "--headless", "--no-sandbox", "--disable-gpu",
		"--user-data-dir="+t.TempDir(), "--dump-dom", "file://"+html).Output()
	if err != nil {
		t.Fatalf("chromium: %v", err)
	}
	if !bytes.Contains(dom, []byte(`<pre id="out">75 0 75</pre>`)) {
		t.Fatalf("two graphs with one script: %s", regexp.MustCompile(`(?s)<pre id="out">.*?</pre>`).Find(dom))
	}
}
