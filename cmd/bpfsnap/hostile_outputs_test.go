//go:build linux

package main

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/base64"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"html"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/spf13/pflag"

	"github.com/bpfsnap/bpfsnap/capture"
	"github.com/bpfsnap/bpfsnap/internal/cpufixture"
	"github.com/bpfsnap/bpfsnap/internal/testenv"
)

// hostileCorpus is what a workload can put in the names bpfsnap shows:
// markup, quotes, C0/C1 controls, ANSI escape and OSC sequences, bidi
// overrides, invalid UTF-8, and (separately) very long strings. Each entry
// is usable as a file name (no '/' or NUL).
var hostileCorpus = []string{
	`<script>alert(1)</script>`,
	`"><img src=x onerror=alert(2)>'`,
	"\x1b[31mRED\x1b[0m\x1b[2J",
	"\x1b]0;pwned-title\x07",
	"ctl\x01\x08\r\n\t\x7fend",
	"c1\u009b31m\u0085x",
	"bidi\u202egnp.exe",
	"bad\xff\xfe\xc0\x80utf8",
	"semi;colon frame;x 99",
	"`backtick` &amp; &lt;b&gt;",
}

// burnSrc keeps a process on the CPU for a moment, so a hostile name
// shows up in the CPU profile, the folded stacks and the flame graphs.
const burnSrc = `#include <time.h>
static double now(void) { struct timespec ts; clock_gettime(CLOCK_MONOTONIC, &ts); return ts.tv_sec + ts.tv_nsec / 1e9; }
__attribute__((noinline)) unsigned long spin(unsigned long x) { for (int i = 0; i < 100000; i++) x = x * 6364136223846793005UL + 1; return x; }
int main(void) { double end = now() + 0.4; unsigned long x = 1; while (now() < end) x = spin(x); return x == 42; }
`

// httpExchange sends one raw request (request line and headers exactly as
// given) and reads the response.
func httpExchange(t *testing.T, addr, raw string) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(3 * time.Second))
	io.WriteString(c, raw)
	buf := make([]byte, 4096)
	c.Read(buf)
}

// hostileCapture records a whole-host window with cpu and http while the
// test runs hostile-named programs with hostile argv and sends requests
// with hostile paths (and secrets, for the privacy test) to a server in
// this process. extra are capture flags (e.g. --keep-query).
func hostileCapture(t *testing.T, dir string, extra ...string) string {
	t.Helper()
	testenv.RequireBPF(t)
	gcc := testenv.RequireTool(t, "gcc")
	src := filepath.Join(dir, "burn.c")
	os.WriteFile(src, []byte(burnSrc), 0o644)
	burn := filepath.Join(dir, "burn")
	if out, err := exec.Command(gcc, "-O1", "-fno-omit-frame-pointer", "-o", burn, src).CombinedOutput(); err != nil {
		t.Fatalf("gcc: %v: %s", err, out)
	}
	var exes []string
	data, _ := os.ReadFile(burn)
	for i, name := range hostileCorpus {
		p := filepath.Join(dir, fmt.Sprintf("%d%s", i, strings.ReplaceAll(name, "/", "|")))
		if err := os.WriteFile(p, data, 0o755); err != nil {
			t.Fatal(err)
		}
		exes = append(exes, p)
	}
	// A very long name (the file system allows 255 bytes) and argv.
	long := filepath.Join(dir, strings.Repeat("L<", 120)+"\x1b[0m")
	os.WriteFile(long, data, 0o755)
	exes = append(exes, long)

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok")) })}
	go srv.Serve(ln)
	defer srv.Close()

	sets := capture.NewProbeSets()
	flags := pflag.NewFlagSet("capture", pflag.ContinueOnError)
	for _, ps := range sets {
		ps.BindFlags(flags)
	}
	if err := flags.Parse(extra); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "hostile.bpfsnap")
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		_, err := capture.Run(ctx, capture.Options{Output: out, Duration: 2 * time.Minute, Probes: []string{"cpu", "http"}, Sets: sets,
			Version: "test", Ready: func() { close(ready) }})
		done <- err
	}()
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("capture ended before it was ready: %v", err)
	}
	for i, exe := range exes {
		argv := append([]string{}, hostileCorpus...)
		if i == 0 {
			argv = append(argv, strings.Repeat("A<b>\x1b[1m", 12000)) // ~100 KB, under the kernel's 128 KiB per argument
		}
		cmd := exec.Command(exe, argv...)
		if err := cmd.Run(); err != nil {
			t.Errorf("hostile program %q: %v", exe, err)
		}
	}
	for _, name := range hostileCorpus {
		path := strings.NewReplacer(" ", "", "\r", "", "\n", "").Replace(name)
		httpExchange(t, ln.Addr().String(), "GET /"+path+"?q=hostile HTTP/1.1\r\nHost: x\r\n\r\n")
	}
	httpExchange(t, ln.Addr().String(), "GET /long/"+strings.Repeat("%3Cscript%3E<x>", 400)+" HTTP/1.1\r\nHost: x\r\n\r\n")
	// Secrets that must not reach the archive (see TestPrivacy).
	for _, raw := range privacyRequests {
		httpExchange(t, ln.Addr().String(), raw)
	}
	time.Sleep(300 * time.Millisecond) // the last responses reach the ring
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	return out
}

// checkTerminal fails on anything a terminal would interpret: C0 controls
// other than newline and tab, DEL, C1 controls, bidi and other format
// characters, and invalid UTF-8.
func checkTerminal(t *testing.T, what, text string) {
	t.Helper()
	if !utf8.ValidString(text) {
		t.Errorf("%s: invalid UTF-8 reaches the terminal", what)
	}
	for i, r := range text {
		if (r < 0x20 && r != '\n' && r != '\t') || r == 0x7f || (r >= 0x80 && r < 0xa0) || unicode.Is(unicode.Cf, r) {
			t.Errorf("%s: control or format character %U at byte %d: %q", what, r, i, text[max(0, i-40):min(len(text), i+40)])
			return
		}
	}
}

// checkFolded checks folded stacks: one "frames COUNT" line per stack, no
// control characters inside a line, valid UTF-8.
func checkFolded(t *testing.T, what, text string) int {
	t.Helper()
	checkTerminal(t, what, text)
	lines := strings.Split(strings.TrimSuffix(text, "\n"), "\n")
	seen := map[string]bool{}
	for _, line := range lines {
		sp := strings.LastIndexByte(line, ' ')
		if sp <= 0 || strings.Trim(line[sp+1:], "0123456789") != "" || line[sp+1:] == "" {
			t.Errorf("%s: line without a count: %q", what, line)
			continue
		}
		if seen[line[:sp]] {
			t.Errorf("%s: stack listed twice: %q", what, line[:sp])
		}
		seen[line[:sp]] = true
	}
	return len(lines)
}

// checkSVG parses the SVG as XML and rejects elements and handlers the
// workload could have injected.
func checkSVG(t *testing.T, what string, data []byte) {
	t.Helper()
	d := xml.NewDecoder(bytes.NewReader(data))
	scripts := 0
	for {
		tok, err := d.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Errorf("%s: not well-formed XML: %v", what, err)
			return
		}
		if se, ok := tok.(xml.StartElement); ok {
			switch strings.ToLower(se.Name.Local) {
			case "script":
				scripts++
			case "foreignobject", "img", "iframe":
				t.Errorf("%s: injected element <%s>", what, se.Name.Local)
			}
			for _, a := range se.Attr {
				if strings.HasPrefix(strings.ToLower(a.Name.Local), "on") {
					t.Errorf("%s: event handler attribute %s=%q", what, a.Name.Local, a.Value)
				}
			}
		}
	}
	if scripts > 1 {
		t.Errorf("%s: %d script elements (the renderer writes one)", what, scripts)
	}
}

// checkHTML rejects raw workload markup and control bytes in the page.
func checkHTML(t *testing.T, what string, page []byte) {
	t.Helper()
	checkMarkup(t, what, page)
	// The page's own scripts are the template's three inline blocks (the
	// JSON summary, two scripts); a fourth would be injected.
	if n := bytes.Count(bytes.ToLower(page), []byte("<script")); n != 3 {
		t.Errorf("%s: %d <script tags", what, n)
	}
	// The flame graphs the page holds packed (the time slices') reach the
	// DOM when a reader asks for them: the same checks apply. (The packed
	// folded stacks are text for a download, never markup.)
	packed := packedRE.FindAllSubmatch(page, -1)
	if bytes.Contains(page, []byte(`class="flame hidden"`)) && len(packed) == 0 {
		t.Errorf("%s: slices' flame graphs not found packed", what)
	}
	for _, m := range packed {
		inner, err := unpack(m[1])
		if err != nil {
			t.Errorf("%s: a packed part: %v", what, err)
			continue
		}
		checkMarkup(t, what+" (packed part)", inner)
	}
}

// unpack reverses report/packed.go (as report.js does): the attribute's
// text, HTML-unescaped, is base64 of gzip.
func unpack(attr []byte) ([]byte, error) {
	raw, err := base64.StdEncoding.DecodeString(html.UnescapeString(string(attr)))
	if err != nil {
		return nil, fmt.Errorf("not base64: %w", err)
	}
	zr, err := gzip.NewReader(bytes.NewReader(raw))
	if err != nil {
		return nil, fmt.Errorf("not gzip: %w", err)
	}
	return io.ReadAll(zr)
}

var packedRE = regexp.MustCompile(`<div class="flame[^"]*"[^>]*data-packed="([^"]*)"`)

// checkMarkup fails on workload markup, control bytes or bad UTF-8.
func checkMarkup(t *testing.T, what string, page []byte) {
	t.Helper()
	for _, bad := range []string{"<script>alert", "<img src=x", "<b>\x1b", "<x>"} {
		if i := bytes.Index(page, []byte(bad)); i >= 0 {
			t.Errorf("%s: raw workload markup %q: %q", what, bad, page[max(0, i-120):min(len(page), i+60)])
		}
	}
	for i, c := range page {
		if (c < 0x20 && c != '\n' && c != '\t' && c != '\r') || c == 0x7f {
			t.Errorf("%s: control byte %#x at %d: %q", what, c, i, page[max(0, i-80):min(len(page), i+40)])
			break
		}
	}
	if !utf8.Valid(page) {
		t.Errorf("%s: the page is not valid UTF-8", what)
	}
}

// Hostile names from a real workload (process names, argv, URL paths) and
// from the symbol fixture (function and module names) stay inert in every
// output: terminal text, JSON, folded stacks, SVG and HTML.
func TestHostileStringsInAllOutputs(t *testing.T) {
	bin := bpfsnapBin(t)
	dir := t.TempDir()
	real := hostileCapture(t, dir)
	fixture, err := cpufixture.Write(dir) // hostile symbol names
	if err != nil {
		t.Fatal(err)
	}
	for _, arc := range []string{real, fixture} {
		name := filepath.Base(arc)
		run := func(args ...string) []byte {
			t.Helper()
			var stdout, stderr bytes.Buffer
			cmd := exec.Command(bin, args...)
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			if err := cmd.Run(); err != nil {
				t.Fatalf("%s: bpfsnap %s: %v\n%s", name, strings.Join(args, " "), err, stderr.String())
			}
			checkTerminal(t, name+": stderr of "+args[0], stderr.String())
			return stdout.Bytes()
		}
		checkTerminal(t, name+": analyze", string(run("analyze", arc)))
		checkTerminal(t, name+": inspect", string(run("inspect", arc)))
		for _, args := range [][]string{{"analyze", "--json", arc}, {"inspect", "--json", arc}, {"export", "--format", "json", arc}} {
			js := run(args...)
			var doc any
			if err := json.Unmarshal(js, &doc); err != nil {
				t.Errorf("%s: %s output is not valid JSON: %v", name, strings.Join(args[:len(args)-1], " "), err)
			}
		}
		n1 := checkFolded(t, name+": flamegraph --folded", string(run("flamegraph", "--folded", arc)))
		n2 := checkFolded(t, name+": export --format folded", string(run("export", "--format", "folded", arc)))
		if n1 != n2 || n1 < 2 {
			t.Errorf("%s: %d folded lines from flamegraph, %d from export", name, n1, n2)
		}
		svg := filepath.Join(dir, name+".svg")
		run("flamegraph", "-o", svg, arc)
		data, _ := os.ReadFile(svg)
		checkSVG(t, name+": flamegraph SVG", data)
		html := filepath.Join(dir, name+".html")
		run("report", "-o", html, arc)
		page, _ := os.ReadFile(html)
		checkHTML(t, name+": report", page)
	}

	// The hostile names are really in the real archive (escaped), so the
	// checks above looked at them: a process name, an argv and a path.
	js := run0(t, bin, "analyze", "--json", real)
	for _, want := range []string{`\u001b]0;pwned-title\u0007`, `\u003cscript\u003ealert(1)\u003c/script\u003e`} {
		if !strings.Contains(js, want) {
			t.Errorf("analyze --json of the real capture lacks %s", want)
		}
	}
	// The terminal summary lists the top endpoints and processes of the
	// whole host, so which hostile names make the cut varies; some must,
	// in their escaped form.
	text := run0(t, bin, "analyze", real)
	if !strings.Contains(text, `<script>alert(1)</script>`) || !(strings.Contains(text, `\u202e`) || strings.Contains(text, `\x1b`)) {
		t.Errorf("analyze of the real capture shows no hostile name (escaped):\n%s", text)
	}
	folded := run0(t, bin, "flamegraph", "--folded", real)
	if !strings.Contains(folded, "semi:colon frame:x 99;") && !strings.Contains(folded, "8semi:colon fr") {
		t.Errorf("the hostile process is not a folded root frame")
	}
}

func run0(t *testing.T, bin string, args ...string) string {
	t.Helper()
	out, err := exec.Command(bin, args...).Output()
	if err != nil {
		t.Fatalf("bpfsnap %s: %v", strings.Join(args, " "), err)
	}
	return string(out)
}
