//go:build linux

package capture

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/bpfsnap/bpfsnap/analyze"
	"github.com/bpfsnap/bpfsnap/formats"
	"github.com/bpfsnap/bpfsnap/internal/testenv"
	"github.com/bpfsnap/bpfsnap/report"
)

// growthLeakGo is a Go HTTP service with a route that keeps every
// response buffer (256 KiB) in a global slice, a route that makes 16 KiB
// of garbage per request, and /stats telling how much was kept.
const growthLeakGo = `package main

import (
	"fmt"
	"net/http"
	"os"
	"sync"
)

var (
	mu   sync.Mutex
	kept [][]byte
)

//go:noinline
func leakHandler(w http.ResponseWriter, r *http.Request) {
	buf := make([]byte, 256<<10)
	for i := range buf {
		buf[i] = byte(i)
	}
	mu.Lock()
	kept = append(kept, buf)
	mu.Unlock()
	w.Write(buf[:64])
}

//go:noinline
func okHandler(w http.ResponseWriter, r *http.Request) {
	buf := make([]byte, 16<<10)
	for i := range buf {
		buf[i] = byte(i)
	}
	w.Write(buf[:64])
}

func main() {
	http.HandleFunc("/leak", leakHandler)
	http.HandleFunc("/ok", okHandler)
	http.HandleFunc("/stats", func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		n := 0
		for _, b := range kept {
			n += len(b)
		}
		fmt.Fprint(w, n)
	})
	if err := http.ListenAndServe("127.0.0.1:"+os.Args[1], nil); err != nil {
		panic(err)
	}
}
`

// growthLeakNode is the same service in Node.js: /leak keeps a filled
// 256 KiB Buffer per request.
const growthLeakNode = `const http = require('http');
const kept = [];
function leakRoute(res) {
  const buf = Buffer.alloc(256 * 1024, 7);
  kept.push(buf);
  res.end(buf.subarray(0, 64));
}
function okRoute(res) {
  const buf = Buffer.alloc(16 * 1024, 7);
  res.end(buf.subarray(0, 64));
}
http.createServer((req, res) => {
  if (req.url === '/leak') return leakRoute(res);
  if (req.url === '/ok') return okRoute(res);
  if (req.url === '/stats') return res.end(String(kept.reduce((n, b) => n + b.length, 0)));
  res.statusCode = 404; res.end();
}).listen(Number(process.argv[2]), '127.0.0.1');
`

// growthOf captures -p growth of pid while load runs, and analyzes it.
func growthOf(t *testing.T, pid int, load func()) *analyze.Summary {
	t.Helper()
	s := captureWhile(t, Options{Duration: 2 * time.Minute, Probes: []string{"growth"}, PIDs: []uint32{uint32(pid)},
		Warn: func(m string) { t.Log("warning:", m) }}, load)
	if s.Growth == nil {
		t.Fatal("no growth section")
	}
	return s
}

// leakLoad sends n requests to each of /leak and /ok, interleaved, and
// returns the bytes the service says it keeps.
func leakLoad(t *testing.T, port, n int) uint64 {
	t.Helper()
	get := func(path string) string {
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d%s", port, path))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	for i := 0; i < n; i++ {
		get("/leak")
		get("/ok")
		time.Sleep(5 * time.Millisecond)
	}
	kept, err := strconv.ParseUint(strings.TrimSpace(get("/stats")), 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	return kept
}

// routeShare returns the bytes of pid's growth stacks holding a frame that
// contains fn, and the process's total.
func routeShare(s *analyze.Summary, pid int, fn string) (route, total uint64) {
	for _, p := range s.Growth.Processes {
		if p.PID == uint32(pid) {
			total = p.Bytes
		}
	}
	// Every stack, not only the listed top ones: the folded lines.
	name := ""
	for _, p := range s.Processes {
		if p.PID == uint32(pid) {
			name = p.Comm
		}
	}
	for _, l := range analyze.GrowthFolded(s.Growth) {
		if len(l.Frames) == 0 || l.Frames[0] != analyze.SafeFrameName(name) {
			continue
		}
		for _, f := range l.Frames {
			if strings.Contains(f, fn) {
				route += l.Count
				break
			}
		}
	}
	return route, total
}

func checkRouteGrowth(t *testing.T, s *analyze.Summary, pid int, fn string, leaked uint64) {
	t.Helper()
	route, total := routeShare(s, pid, fn)
	var text bytes.Buffer
	report.WriteSummaryText(&text, s)
	t.Logf("leaked %s; %s carries %s of the %s made resident\n%s", report.HumanBytes(int64(leaked)), fn,
		report.HumanBytes(int64(route)), report.HumanBytes(int64(total)), text.String())
	if leaked < 20<<20 {
		t.Fatalf("the service kept only %d bytes", leaked)
	}
	if route*2 < total {
		t.Errorf("%s carries %d of %d bytes made resident: not most of them", fn, route, total)
	}
	if route < leaked/2 || route > 2*leaked {
		t.Errorf("%s carries %d bytes, not within a factor of 2 of the %d it leaked", fn, route, leaked)
	}
	var p *analyze.GrowthProcess
	for i := range s.Growth.Processes {
		if s.Growth.Processes[i].PID == uint32(pid) {
			p = &s.Growth.Processes[i]
		}
	}
	if p == nil || len(p.RSS) < 4 || p.RSSEndBytes < p.RSSStartBytes+leaked/2 || p.ExactBytes < leaked/2 {
		t.Errorf("the process's RSS series does not show the growth: %+v", p)
	}
	// The flame graph and the report draw it.
	var svg bytes.Buffer
	if err := report.WriteGrowthFlameGraph(&svg, s, report.CPUFlameOptions{MinWidth: 0.1}); err != nil || !strings.Contains(svg.String(), fn) {
		t.Errorf("growth flame graph: %v, holds %s: %v", err, fn, strings.Contains(svg.String(), fn))
	}
	h, err := report.BuildHTMLArchive(s)
	if err != nil {
		t.Fatal(err)
	}
	var page bytes.Buffer
	if err := report.WriteHTML(&page, []*report.HTMLArchive{h}, report.HTMLOptions{}); err != nil {
		t.Fatal(err)
	}
	if html := page.String(); !strings.Contains(html, `class="chart rss"`) || !strings.Contains(html, "Memory made resident by stack") {
		t.Errorf("the report has no RSS curve or growth flame graph")
	}
}

// A Go service keeping every response buffer of one route: under -p
// growth that route's handler carries most of the bytes made resident,
// within a factor of 2 of what it kept (the Go runtime allocates; libc's
// malloc never sees it).
func TestGrowthGoServiceLeak(t *testing.T) {
	testenv.RequireBPF(t)
	testenv.RequireTool(t, "go")
	srv := buildGo(t, growthLeakGo)
	port := freePort(t)
	pid := startServer(t, exec.Command(srv, strconv.Itoa(port)), port)
	var leaked uint64
	s := growthOf(t, pid, func() { leaked = leakLoad(t, port, 160) })
	checkRouteGrowth(t, s, pid, "main.leakHandler", leaked)
}

// The same service in Node.js: the route is JavaScript, named through
// node's perf map (--perf-basic-prof, and --interpreted-frames-native-stack
// for functions still interpreted).
func TestGrowthNodeServiceLeak(t *testing.T) {
	testenv.RequireBPF(t)
	node := testenv.RequireTool(t, "node")
	script := filepath.Join(t.TempDir(), "srv.js")
	os.WriteFile(script, []byte(growthLeakNode), 0o644)
	port := freePort(t)
	cmd := exec.Command(node, "--perf-basic-prof", "--interpreted-frames-native-stack", script, strconv.Itoa(port))
	cmd.Dir = filepath.Dir(script) // V8 may write a log beside it
	pid := startServer(t, cmd, port)
	forgetRuntimeMaps(t, uint32(pid))
	var leaked uint64
	s := growthOf(t, pid, func() { leaked = leakLoad(t, port, 160) })
	checkRouteGrowth(t, s, pid, "leakRoute", leaked)
}

// touchProc is testdata/growth/touch running under the test's control.
// touchBinary builds testdata/growth/touch.c.
func touchBinary(t *testing.T) string {
	testenv.RequireTool(t, "gcc")
	bin := filepath.Join(t.TempDir(), "touch")
	if out, err := exec.Command("gcc", "-O1", "-pthread", "-o", bin, "../testdata/growth/touch.c").CombinedOutput(); err != nil {
		t.Fatalf("gcc: %v: %s", err, out)
	}
	return bin
}

// startTouch starts touch with args; it ends when the test does.
func startTouch(t *testing.T, bin string, args ...string) *touchProc {
	p := &touchProc{cmd: exec.Command(bin, args...)}
	var err error
	if p.in, err = p.cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	out, _ := p.cmd.StdoutPipe()
	p.lines = bufio.NewScanner(out)
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.in.Close(); p.cmd.Wait() })
	return p
}

type touchProc struct {
	cmd   *exec.Cmd
	in    io.WriteCloser
	lines *bufio.Scanner
}

// reading parses "WHAT ANON_KB HUGE_KB".
func (p *touchProc) reading(t *testing.T, what string) (anon, huge uint64) {
	t.Helper()
	if !p.lines.Scan() {
		t.Fatalf("touch: no %q line", what)
	}
	f := strings.Fields(p.lines.Text())
	if len(f) != 3 || f[0] != what {
		t.Fatalf("touch said %q, want %s ANON HUGE", p.lines.Text(), what)
	}
	a, _ := strconv.ParseUint(f[1], 10, 64)
	h, _ := strconv.ParseUint(f[2], 10, 64)
	return a << 10, h << 10
}

// What a process made resident, measured from its counters in the kernel,
// equals what its own smaps says it gained: a page at a time, transparent
// huge pages (512 pages in one change), and four threads faulting at once
// (their CPUs fold the counters concurrently). The sampled estimate and
// the stacks agree with it.
func TestGrowthExactCounts(t *testing.T) {
	testenv.RequireBPF(t)
	bin := touchBinary(t)
	for _, args := range [][]string{{"huge", "64"}, {"threads", "32", "4"}} {
		t.Run(args[0], func(t *testing.T) {
			p := startTouch(t, bin, args...)
			before, _ := p.reading(t, "ready")
			var after, huge uint64
			s := growthOf(t, p.cmd.Process.Pid, func() {
				io.WriteString(p.in, "go\n")
				after, huge = p.reading(t, "done")
			})
			gained := after - before
			var gp *analyze.GrowthProcess
			for i := range s.Growth.Processes {
				if s.Growth.Processes[i].PID == uint32(p.cmd.Process.Pid) {
					gp = &s.Growth.Processes[i]
				}
			}
			if gp == nil {
				t.Fatalf("no growth of pid %d: %+v", p.cmd.Process.Pid, s.Growth.Processes)
			}
			t.Logf("%v: smaps gained %d bytes (%d in huge pages); growth counted %d exactly, estimated %d; warnings %v",
				args, gained, huge, gp.ExactBytes, gp.Bytes, s.Warnings)
			if diff := int64(gp.ExactBytes) - int64(gained); diff < -(256<<10) || diff > 256<<10 {
				t.Errorf("counted %d bytes exactly, the process gained %d", gp.ExactBytes, gained)
			}
			if e := float64(gp.Bytes); e < 0.85*float64(gained) || e > 1.15*float64(gained) {
				t.Errorf("estimated %d bytes, the process gained %d", gp.Bytes, gained)
			}
			route, _ := routeShare(s, p.cmd.Process.Pid, "touch_pages")
			if route < gained*8/10 {
				t.Errorf("touch_pages carries %d of the %d bytes", route, gained)
			}
			if huge >= 2<<20 {
				var huges int
				for _, st := range s.Growth.Stacks {
					if st.Events > 0 && st.Bytes/st.Events == 2<<20 {
						huges++
					}
				}
				if huges == 0 {
					t.Errorf("%d bytes in huge pages, but no stack made 2 MiB resident per event: %+v", huge, s.Growth.Stacks)
				}
			}
		})
	}
}

// A flight recorder's archive holds its last window: the kernel's exact
// totals, which span the whole run, are left out (the sampled rows of the
// window estimate it), while the growth inside the window is still there.
func TestGrowthRingHasNoWholeRunTotals(t *testing.T) {
	testenv.RequireBPF(t)
	p := startTouch(t, touchBinary(t), "threads", "32", "1")
	before, _ := p.reading(t, "ready")
	var after uint64
	s := captureWhile(t, Options{Ring: 4 * time.Second, Probes: []string{"growth"}, PIDs: []uint32{uint32(p.cmd.Process.Pid)}}, func() {
		io.WriteString(p.in, "go\n")
		after, _ = p.reading(t, "done")
	})
	a, err := formats.Open(s.Archive)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	if a.HasTable(formats.TableGrowthTotals) {
		t.Errorf("the ring's archive has growth_totals")
	}
	var got uint64
	if s.Growth != nil {
		for _, gp := range s.Growth.Processes {
			if gp.PID == uint32(p.cmd.Process.Pid) {
				got = gp.Bytes
				if gp.ExactBytes != 0 {
					t.Errorf("exact bytes %d in a ring's archive", gp.ExactBytes)
				}
			}
		}
	}
	t.Logf("touch gained %d bytes; the ring's window estimates %d", after-before, got)
	if gained := after - before; got < gained/2 || got > gained*2 {
		tables, _ := a.Tables()
		t.Errorf("the window's growth is %d bytes, the process gained %d; window %+v; tables %+v; growth %+v; warnings %q",
			got, gained, a.Manifest().Window, tables, s.Growth, s.Warnings)
	}
}
