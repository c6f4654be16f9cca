package main

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bpfsnap/bpfsnap/internal/testenv"
)

// hostile is fed through every field the workload controls: an HTTP path,
// a process name and executable path.
const hostile = `"><script>alert(1)</script><svg onload=alert(2)>'onmouseover='alert(3)'`

// The report of a real capture (CPU + HTTP, with hostile names) opens in
// headless Chromium without console errors or network requests; the flame
// graph zooms on click and highlights on search; nothing injected runs.
func TestReportInChromium(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("captures need Linux")
	}
	testenv.RequireBPF(t)
	chromium := testenv.RequireTool(t, "chromium")
	testenv.RequireTool(t, "gcc")
	bin := bpfsnapBin(t)
	dir := t.TempDir()

	shop := filepath.Join(dir, "shop")
	if out, err := exec.Command("go", "build", "-o", shop, "../../testdata/demo/shop").CombinedOutput(); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	// A CPU-bound process whose executable name is hostile markup.
	burn := filepath.Join(dir, "cpuburn")
	if out, err := exec.Command("gcc", "-O1", "-fno-omit-frame-pointer", "-o", burn, "../../testdata/demo/cpuburn.c").CombinedOutput(); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	evil := filepath.Join(dir, strings.ReplaceAll(hostile, "/", "|"))
	if err := os.Symlink(burn, evil); err != nil {
		t.Fatal(err)
	}
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	srv := exec.Command(shop, "-listen", fmt.Sprintf("127.0.0.1:%d", port))
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { srv.Process.Kill(); srv.Wait() }()
	time.Sleep(500 * time.Millisecond)

	archive := filepath.Join(dir, "real.bpfsnap")
	capture := exec.Command(bin, "capture", "-p", "cpu,http", "-d", "6s", "-o", archive)
	if err := capture.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1500 * time.Millisecond)
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		exec.Command(shop, "-load", fmt.Sprintf("http://127.0.0.1:%d", port), "-d", "3s", "-c", "2").Run()
	}()
	go func() {
		defer wg.Done()
		exec.Command(evil, "800").Run()
		// A request whose path is markup, sent raw (no client would encode it).
		if c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port)); err == nil {
			fmt.Fprintf(c, "GET /%s HTTP/1.1\r\nHost: x\r\n\r\n", strings.ReplaceAll(hostile, " ", ""))
			buf := make([]byte, 4096)
			c.SetReadDeadline(time.Now().Add(2 * time.Second))
			c.Read(buf)
			c.Close()
		}
	}()
	wg.Wait()
	if err := capture.Wait(); err != nil {
		t.Fatal(err)
	}
	// A second archive: allocations of a leaking program (-p mem).
	leaky := filepath.Join(dir, "leaky")
	if out, err := exec.Command("gcc", "-O2", "-fno-omit-frame-pointer", "-o", leaky, "../../testdata/demo/leaky.c").CombinedOutput(); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	// Attached by --pid to a program that waits for a file before it
	// allocates (capture's own tests cover `-- COMMAND`).
	memArchive := filepath.Join(dir, "mem.bpfsnap")
	gate := filepath.Join(dir, "go")
	lk := exec.Command(leaky, "50000")
	lk.Env = append(os.Environ(), "LEAKY_WAIT_FILE="+gate)
	if err := lk.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		time.Sleep(2 * time.Second)
		os.WriteFile(gate, nil, 0o644)
	}()
	if out, err := exec.Command(bin, "capture", "-p", "mem", "--pid", fmt.Sprint(lk.Process.Pid), "-d", "6s", "-o", memArchive).CombinedOutput(); err != nil {
		t.Fatalf("mem capture: %v: %s", err, out)
	}
	lk.Wait()
	html := filepath.Join(dir, "report.html")
	if out, err := exec.Command(bin, "report", archive, memArchive, "-o", html).CombinedOutput(); err != nil {
		t.Fatalf("report: %v: %s", err, out)
	}
	data, _ := os.ReadFile(html)
	for _, want := range []string{"hot_a", "leak_malloc", "Biggest leak"} {
		if !strings.Contains(string(data), want) {
			t.Fatalf("the report does not show %q", want)
		}
	}
	// Quotes may stay raw inside the JSON data block (inert); a raw '<' may not.
	for _, bad := range []string{"<script>alert", "<svg onload"} {
		if i := strings.Index(string(data), bad); i >= 0 {
			t.Errorf("raw hostile markup %q in the page: %q", bad, data[max(0, i-200):min(len(data), i+100)])
		}
	}

	// A demo-sized report opens fast (report_open_test.go).
	checkOpenTime(t, chromium, html, demoOpenGoal, 3*demoOpenGoal)

	start := time.Now()
	p := openInChromium(t, chromium, html, "#cpu")
	worst := p.evalString(`document.querySelector(".card .what code") ? document.querySelector(".card .what code").textContent : ""`)
	frames := p.evalInt(`document.querySelectorAll(".flame:not(.hidden) svg g.f").length`)
	// Click the hot function's frame: the graph zooms (others hide).
	zoomed := p.evalInt(`(function(){
		var svg = document.querySelector(".flame:not(.hidden) svg");
		var g = [].filter.call(svg.querySelectorAll("g.f"), function(g){ return g.querySelector("title").textContent.indexOf("hot_a\n") === 0; })[0];
		g.dispatchEvent(new MouseEvent("click", {bubbles: true}));
		return svg.querySelectorAll("g.f.hidden").length; })()`)
	matched := p.evalInt(`(function(){
		var svg = document.querySelector(".flame:not(.hidden) svg");
		window.bpfsnapFlame.reset(svg);
		return window.bpfsnapFlame.search(svg, "^hot_").frames; })()`)
	// A time slice redraws the graph for that part of the window.
	sliced := p.evalInt(`(function(){ window.bpfsnapReport.showSlice("0", "0");
		return document.querySelectorAll('.flames[data-archive="0"] .flame:not(.hidden)[data-slice="0"]').length; })()`)
	leakRows := p.evalInt(`document.querySelectorAll("#memory table tbody tr").length`)
	if leakRows < 3 {
		t.Errorf("memory section lists %d leak candidates, want the 3 leaking sites at least", leakRows)
	}
	if sliced != 1 {
		t.Errorf("selecting a time slice did not show its flame graph")
	}
	t.Logf("opened and exercised in %s; %d frames, worst endpoint %q", time.Since(start).Round(time.Millisecond), frames, worst)
	p.checkClean()
	if zoomed == 0 || matched == 0 || frames < 10 {
		t.Errorf("flame graph: %d frames, %d hidden after zoom, %d search matches", frames, zoomed, matched)
	}
	if worst == "" {
		t.Errorf("no worst endpoint at a glance")
	}
}
