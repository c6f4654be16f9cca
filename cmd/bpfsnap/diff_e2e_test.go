//go:build linux

package main

import (
	"archive/zip"
	"bytes"
	"cmp"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bpfsnap/bpfsnap/analyze"
	"github.com/bpfsnap/bpfsnap/internal/testenv"
)

// diffRoutes are the routes of testdata/diffsvc, each requested at
// diffRate per second by the test's own load generator.
var diffRoutes = []string{"/api/orders", "/api/catalog", "/api/search", "/api/report", "/api/score"}

const diffRate = 50

// The same service captured twice, the second time with -regress (one
// route 300 ms slower, one function three times hotter), by two processes
// with different pids, the second archive relabelled as another host: diff
// matches the endpoints by name, ranks the slower route first with the p99
// change the load generator measured, and finds scoreItems grown and the
// other functions within noise; the differential flame graph and its
// folded form say the same; the report with the baseline opens in Chromium
// without errors or network requests, its hostile names inert.
func TestDiffOfTwoCaptures(t *testing.T) {
	testenv.RequireBPF(t)
	chromium := testenv.RequireTool(t, "chromium")
	bin := bpfsnapBin(t)
	dir := t.TempDir()
	svc := filepath.Join(dir, "diffsvc")
	if out, err := exec.Command("go", "build", "-o", svc, "../../testdata/diffsvc").CombinedOutput(); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	// The service runs under a hostile name: its comm and exe are markup.
	evil := filepath.Join(dir, strings.ReplaceAll(hostile, "/", "|"))
	if err := os.Symlink(svc, evil); err != nil {
		t.Fatal(err)
	}
	capture := func(name string, regress bool) (string, map[string][]timedRequest, int) {
		t.Helper()
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := l.Addr().String()
		l.Close()
		args := []string{"-listen", addr}
		if regress {
			args = append(args, "-regress")
		}
		srv := exec.Command(evil, args...)
		if err := srv.Start(); err != nil {
			t.Fatal(err)
		}
		defer func() { srv.Process.Kill(); srv.Wait() }()
		waitServing(t, addr)
		// The load runs before, during and after the window, so the
		// capture sees steady traffic from its first moment to its last.
		stop := make(chan struct{})
		lat := make(chan map[string][]timedRequest)
		go func() { lat <- pacedLoad(addr, stop) }()
		arc := filepath.Join(dir, name+".bpfsnap")
		// Go keeps frame pointers: --unwind fp gives every sample its whole
		// stack (the CFI walk of auto cuts some Go stacks short, a
		// different few in each capture, which would be changes of their
		// own).
		out, err := exec.Command(bin, "capture", "-p", "cpu,http", "--freq", "999", "--unwind", "fp",
			"--pid", strconv.Itoa(srv.Process.Pid), "-d", "10s", "-o", arc).CombinedOutput()
		close(stop)
		client := <-lat
		if err != nil {
			t.Fatalf("capture %s: %v\n%s", name, err, out)
		}
		return arc, client, srv.Process.Pid
	}
	run := func(args ...string) string {
		t.Helper()
		return runBin(t, args...)
	}
	// A p99 is a tail, and other tests on a shared machine can stall the
	// service for hundreds of ms, which no capture of 10 s hides. The pair
	// is captured again (at most three times) when the load generator
	// itself saw /api/orders more than 150 ms slower than the service makes
	// it (5 ms, then 305 ms) in either window.
	var (
		d                     analyze.Diff
		base, cur             string
		basePID, newPID       int
		clientBase, clientNew float64
		baseClient, newClient map[string][]timedRequest
	)
	for attempt := 1; ; attempt++ {
		var regressed string
		base, baseClient, basePID = capture("base", false)
		regressed, newClient, newPID = capture("new", true)
		// The second capture as if taken on another node.
		cur = filepath.Join(dir, "node-b.bpfsnap")
		os.Remove(cur)
		rewriteHost(t, regressed, cur, "node-b")
		d = analyze.Diff{}
		if err := json.Unmarshal([]byte(run("diff", base, cur, "--json")), &d); err != nil {
			t.Fatal(err)
		}
		// The client's requests sent and answered within each window.
		clientBase, clientNew = p99In(baseClient["/api/orders"], d.Base), p99In(newClient["/api/orders"], d.New)
		if clientBase < 5+150 && clientNew < 305+150 {
			break
		}
		if attempt == 3 {
			t.Fatalf("the machine stalled the service in every attempt: the load generator's p99 of /api/orders was %.1f and %.1f ms in the last", clientBase, clientNew)
		}
		t.Logf("attempt %d: the load generator's p99 of /api/orders was %.1f and %.1f ms (5 and 305 ms without stalls): again", attempt, clientBase, clientNew)
		os.Remove(base)
		os.Remove(regressed)
	}
	defer func() {
		if t.Failed() { // a capture starved by a busy machine says so here
			t.Logf("warnings: base %q, new %q", d.Base.Warnings, d.New.Warnings)
		}
	}()
	if d.Base.Host == d.New.Host || d.New.Host != "node-b" {
		t.Errorf("hosts %q and %q, want two hosts, the second node-b", d.Base.Host, d.New.Host)
	}

	// HTTP: the slower route first, matched across pids, with the change
	// the client saw.
	if d.HTTP == nil || len(d.HTTP.Endpoints) == 0 {
		t.Fatalf("no http section: %+v", d.HTTP)
	}
	for _, e := range d.HTTP.Endpoints {
		t.Logf("%s %s %s: impact %.0f %s", e.Role, e.Method, e.Route, e.Impact, sideP99(e.Base, e.New))
	}
	top := d.HTTP.Endpoints[0]
	if top.Route != "/api/orders" || top.Role != "server" || top.Method != "GET" {
		t.Fatalf("first endpoint %s %s %s, want server GET /api/orders", top.Role, top.Method, top.Route)
	}
	if top.Base == nil || top.New == nil || top.Change == nil {
		t.Fatalf("/api/orders not matched across the captures: base %+v new %+v", top.Base, top.New)
	}
	if len(top.Base.PIDs) != 1 || top.Base.PIDs[0] != uint32(basePID) || len(top.New.PIDs) != 1 || top.New.PIDs[0] != uint32(newPID) {
		t.Errorf("pids %v and %v, want [%d] and [%d]", top.Base.PIDs, top.New.PIDs, basePID, newPID)
	}
	if want := hostile[:15]; top.Process != want {
		t.Errorf("process %q, want the comm %q", top.Process, want)
	}
	clientChange := clientNew - clientBase
	t.Logf("/api/orders p99: bpfsnap %.2f → %.2f ms (%+.2f), client %.2f → %.2f ms (%+.2f)", top.Base.P99, top.New.P99, top.Change.P99,
		clientBase, clientNew, clientChange)
	// Both measure the same requests between kernel events: the client
	// from the request's transmission, bpfsnap from its arrival at the
	// server's socket (on a busy machine the loopback's backlog may hold
	// it in between).
	if math.Abs(top.Change.P99-clientChange) > math.Max(5, 0.1*clientChange) || top.Change.P99 < 150 || top.Change.P99 > 450 {
		t.Errorf("p99 change %+.2f ms, the client measured %+.2f ms (the service waits 300 ms longer)", top.Change.P99, clientChange)
	}
	matched := 0
	for _, e := range d.HTTP.Endpoints {
		if e.Base != nil && e.New != nil {
			matched++
			// At most what the load sent; a starved load generator on a
			// busy machine sends less, but not this much less.
			for _, r := range []float64{e.Base.RateRPS, e.New.RateRPS} {
				if r < 0.3*diffRate || r > 1.1*diffRate {
					t.Errorf("%s: %.1f and %.1f req/s, the load sent %d", e.Route, e.Base.RateRPS, e.New.RateRPS, diffRate)
				}
			}
		}
	}
	if matched != len(diffRoutes) || len(d.HTTP.Endpoints) != len(diffRoutes) {
		t.Errorf("%d endpoints, %d on both sides; want the %d routes, each matched", len(d.HTTP.Endpoints), matched, len(diffRoutes))
	}

	// CPU: scoreItems grew beyond noise, the other handlers did not move.
	if d.CPU == nil || d.CPU.BaseSamples < 800 || d.CPU.NewSamples < 800 {
		t.Fatalf("too few CPU samples to compare: %+v", d.CPU)
	}
	funcs := map[string]analyze.FunctionDiff{}
	for _, f := range d.CPU.Functions {
		funcs[f.Name] = f
	}
	score := funcs["main.scoreItems"]
	t.Logf("CPU: %d → %d samples, scoreItems self %.1f%% → %.1f%% (z %.1f)", d.CPU.BaseSamples, d.CPU.NewSamples, score.BaseShare, score.NewShare, score.Z)
	if !score.Significant || score.NewShare < 1.8*score.BaseShare || score.NewShare > 4.5*score.BaseShare {
		t.Errorf("scoreItems %+v: want a significant growth of about 2.8× its share (3× the work, shares of a larger whole; ~70 samples in BASE: ±12%%)", score)
	}
	if len(d.CPU.Functions) == 0 || d.CPU.Functions[0].Name != "main.scoreItems" {
		t.Errorf("largest change %+v, want main.scoreItems", d.CPU.Functions[0])
	}
	for _, name := range []string{"main.renderCatalog", "main.searchIndex", "main.buildReport"} {
		f, ok := funcs[name]
		t.Logf("%s self %.1f%% → %.1f%% (z %.1f)", name, f.BaseShare, f.NewShare, f.Z)
		if !ok || f.BaseShare < 10 || f.Significant {
			t.Errorf("%s: %+v, want a large share that did not move beyond noise", name, f)
			if !ok {
				// Once in CI (2026-12-06) main.searchIndex was absent from
				// both captures: say where its share went.
				t.Errorf("the functions: %s", largestShares(d.CPU.Functions, 10))
			}
		}
	}

	// The differential flame graph: scoreItems red, the rest within noise.
	svg := filepath.Join(dir, "diff.svg")
	run("flamegraph", "--diff", base, cur, "-o", svg)
	verdicts := diffVerdicts(t, svg)
	if v := verdicts["main.scoreItems"]; len(v) == 0 || v[0].verdict != "grown" {
		t.Errorf("scoreItems frames: %v, want the widest grown", v)
	}
	// Every other function of the service stayed within noise: the frame
	// holding most of its samples, and nearly all of the rest. Kernel
	// frames above them (interrupts, preemption) follow how busy the
	// machine was during each capture, not the service: they may move, but
	// hold little.
	var movedUser, movedKernel uint64
	for name, vs := range verdicts {
		kernel := strings.HasSuffix(name, analyze.KernelSuffix)
		for i, v := range vs {
			if name == "main.scoreItems" || v.verdict == "within noise" || v.verdict == "unchanged" {
				continue
			}
			t.Logf("frame %q (%d samples) is %s", name, v.samples, v.verdict)
			if kernel {
				movedKernel += v.samples
				continue
			}
			if i == 0 {
				t.Errorf("the widest frame of %q (%d samples) is %s, want within noise", name, v.samples, v.verdict)
			}
			movedUser += v.samples
		}
	}
	if movedUser > d.CPU.NewSamples/100 || movedKernel > d.CPU.NewSamples*5/100 {
		t.Errorf("frames beyond noise other than scoreItems' hold %d (user) and %d (kernel) of %d samples, want under 1%% and 5%%",
			movedUser, movedKernel, d.CPU.NewSamples)
	}
	// Folded: difffolded.pl's three columns, adding up to both sides.
	var sumBase, sumNew, scoreBase, scoreNew uint64
	for _, line := range strings.Split(strings.TrimSpace(run("flamegraph", "--diff", base, cur, "--folded")), "\n") {
		i := strings.LastIndexByte(line, ' ')
		j := strings.LastIndexByte(line[:max(i, 0)], ' ')
		if j < 0 {
			t.Fatalf("folded diff line %q is not STACK BASE NEW", line)
		}
		b, err1 := strconv.ParseUint(line[j+1:i], 10, 64)
		n, err2 := strconv.ParseUint(line[i+1:], 10, 64)
		if err1 != nil || err2 != nil {
			t.Fatalf("folded diff line %q is not STACK BASE NEW", line)
		}
		sumBase, sumNew = sumBase+b, sumNew+n
		if strings.Contains(line, ";main.scoreItems ") {
			scoreBase, scoreNew = scoreBase+b, scoreNew+n
		}
	}
	if sumBase != d.CPU.BaseSamples || sumNew != d.CPU.NewSamples || scoreNew < 2*scoreBase {
		t.Errorf("folded diff: %d/%d samples (want %d/%d), scoreItems %d → %d", sumBase, sumNew, d.CPU.BaseSamples, d.CPU.NewSamples, scoreBase, scoreNew)
	}

	// The text form names the same route first.
	text := run("diff", base, cur)
	if i, j := strings.Index(text, "What changed:"), strings.Index(text, "GET /api/orders"); i < 0 || j < i {
		t.Errorf("text diff:\n%s", text)
	}

	// The report with the baseline, in a browser.
	html := filepath.Join(dir, "report.html")
	run("report", "--baseline", base, cur, "-o", html)
	data, _ := os.ReadFile(html)
	for _, bad := range []string{"<script>alert", "<svg onload"} {
		if i := strings.Index(string(data), bad); i >= 0 {
			t.Errorf("raw hostile markup %q in the page: %q", bad, data[max(0, i-200):min(len(data), i+100)])
		}
	}
	p := openInChromium(t, chromium, html, "#cpu")
	card := p.evalString(`(document.querySelector(".card.changed li") || {}).textContent || ""`)
	diffFrames := p.evalInt(`document.querySelectorAll(".diffflame svg g.f").length`)
	found := p.evalInt(`window.bpfsnapFlame.search(document.querySelector(".diffflame svg"), "scoreItems").frames`)
	zoomed := p.evalInt(`(function(){
		var svg = document.querySelector(".diffflame svg");
		var g = [].filter.call(svg.querySelectorAll("g.f"), function(g){ return g.querySelector("title").textContent.indexOf("main.scoreItems\n") === 0; })[0];
		g.dispatchEvent(new MouseEvent("click", {bubbles: true}));
		return svg.querySelectorAll("g.f.hidden").length; })()`)
	delta := p.evalString(`(function(){ var r = [].filter.call(document.querySelectorAll("#http tr.ep"), function(r){ return r.textContent.indexOf("/api/orders") >= 0; })[0];
		var c = r && r.querySelector("td.vsbase");
		return c ? c.textContent : ""; })()`)
	t.Logf("report: card %q, %d differential frames, orders p99 vs baseline %q", card, diffFrames, delta)
	p.checkClean()
	if !strings.Contains(card, "/api/orders") {
		t.Errorf("what changed card starts with %q, want /api/orders", card)
	}
	if diffFrames < 10 || found == 0 || zoomed == 0 {
		t.Errorf("differential flame graph: %d frames, %d scoreItems matches, %d hidden after zoom", diffFrames, found, zoomed)
	}
	if !strings.HasPrefix(delta, "+") || !strings.Contains(delta, "×") {
		t.Errorf("/api/orders p99 vs baseline cell %q, want +N ms ×R", delta)
	}
}

func sideP99(b, n *analyze.EndpointSide) string {
	f := func(s *analyze.EndpointSide) string {
		if s == nil {
			return "-"
		}
		return fmt.Sprintf("p99 %.2f ms at %.1f/s", s.P99, s.RateRPS)
	}
	return f(b) + " → " + f(n)
}

func waitServing(t *testing.T, addr string) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			return
		}
	}
	t.Fatalf("nothing listens on %s", addr)
}

// timedRequest is one request of the load: when it was sent and its
// latency.
type timedRequest struct {
	at time.Time
	ms float64
}

// pacedLoad requests every route diffRate times a second, each request on
// its own schedule and connection (open loop: a slow response delays no
// other request), until stop closes; it returns each route's requests with
// their latency as testenv.TimedGet measures it (from the kernel's
// transmit time of the request to its receive time of the response's last
// byte), the definition bpfsnap uses.
func pacedLoad(addr string, stop <-chan struct{}) map[string][]timedRequest {
	if release, err := testenv.HoldTimestamps(); err == nil {
		defer release()
	}
	var mu sync.Mutex
	out := map[string][]timedRequest{}
	var wg sync.WaitGroup
	for _, route := range diffRoutes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tick := time.NewTicker(time.Second / diffRate)
			defer tick.Stop()
			for {
				select {
				case <-stop:
					return
				case <-tick.C:
				}
				wg.Add(1)
				go func() {
					defer wg.Done()
					c, err := net.Dial("tcp", addr)
					if err != nil {
						return
					}
					defer c.Close()
					at := time.Now()
					if r, err := testenv.TimedGet(c, route); err == nil {
						mu.Lock()
						out[route] = append(out[route], timedRequest{at, r.Total})
						mu.Unlock()
					}
				}()
			}
		}()
	}
	wg.Wait()
	return out
}

// p99In is the p99 latency of the requests sent and answered within a
// side's window, the ones bpfsnap pairs (the load ran before and after it,
// through the capture's start-up; a request still waiting at the end is
// unanswered there).
func p99In(reqs []timedRequest, side analyze.DiffSide) float64 {
	end := side.Start.Add(time.Duration(side.DurationS * float64(time.Second)))
	var in []float64
	for _, r := range reqs {
		if !r.at.Before(side.Start) && r.at.Add(time.Duration(r.ms*float64(time.Millisecond))).Before(end) {
			in = append(in, r.ms)
		}
	}
	sort.Float64s(in)
	return analyze.Quantile(in, 0.99)
}

// rewriteHost copies an archive with its manifest's host replaced, as if
// it had been captured on another node.
func rewriteHost(t *testing.T, src, dst, host string) {
	t.Helper()
	r, err := zip.OpenReader(src)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	f, err := os.Create(dst)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w := zip.NewWriter(f)
	for _, e := range r.File {
		if e.Name != "manifest.json" {
			if err := w.Copy(e); err != nil { // stored as it was
				t.Fatal(err)
			}
			continue
		}
		rc, err := e.Open()
		if err != nil {
			t.Fatal(err)
		}
		var m map[string]any
		err = json.NewDecoder(rc).Decode(&m)
		rc.Close()
		if err != nil {
			t.Fatal(err)
		}
		m["host"] = host
		ew, err := w.CreateHeader(&zip.FileHeader{Name: e.Name, Method: zip.Store})
		if err != nil {
			t.Fatal(err)
		}
		if err := json.NewEncoder(ew).Encode(m); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
}

// frameVerdict is what a differential flame graph says of one frame.
type frameVerdict struct {
	verdict string // grown, shrunk, within noise, unchanged
	samples uint64 // NEW's
}

// diffVerdicts reads a differential flame graph and returns, per frame
// name, the verdict of each of its frames from the tooltips, the widest
// frame first.
func diffVerdicts(t *testing.T, path string) map[string][]frameVerdict {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]frameVerdict{}
	dec := xml.NewDecoder(bytes.NewReader(data))
	inTitle := false
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("differential SVG does not parse: %v", err)
		}
		switch e := tok.(type) {
		case xml.StartElement:
			inTitle = e.Name.Local == "title"
		case xml.EndElement:
			inTitle = false
		case xml.CharData:
			if !inTitle {
				continue
			}
			// "NAME\nN samples (P%)…; self A% → B% (±C points, VERDICT); baseline …"
			title := string(e)
			nl := strings.IndexByte(title, '\n')
			open, end := strings.Index(title, " points, "), strings.LastIndex(title, "); baseline")
			if nl < 0 || open < 0 || end < open {
				t.Fatalf("frame title without a verdict: %q", title)
			}
			n, err := strconv.ParseUint(strings.Fields(title[nl+1:])[0], 10, 64)
			if err != nil {
				t.Fatalf("frame title without samples: %q", title)
			}
			name := title[:nl]
			out[name] = append(out[name], frameVerdict{title[open+len(" points, ") : end], n})
		}
	}
	if len(out) < 10 {
		t.Fatalf("differential SVG has %d frames", len(out))
	}
	for _, vs := range out {
		sort.Slice(vs, func(i, j int) bool { return vs[i].samples > vs[j].samples })
	}
	return out
}

// largestShares lists the n functions with the largest base share, for a
// failure message.
func largestShares(fs []analyze.FunctionDiff, n int) string {
	fs = slices.Clone(fs)
	slices.SortFunc(fs, func(a, b analyze.FunctionDiff) int { return cmp.Compare(b.BaseShare, a.BaseShare) })
	var b strings.Builder
	for _, f := range fs[:min(n, len(fs))] {
		fmt.Fprintf(&b, "%s %.1f%% → %.1f%%; ", f.Name, f.BaseShare, f.NewShare)
	}
	return b.String()
}
