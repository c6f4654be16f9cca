//go:build linux

package capture

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/spf13/pflag"

	"github.com/bpfsnap/bpfsnap/analyze"
	"github.com/bpfsnap/bpfsnap/formats"
	"github.com/bpfsnap/bpfsnap/internal/testenv"
)

// freePort asks the kernel for an unused loopback port.
func freePort(t *testing.T) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func waitListening(t *testing.T, port int) {
	waitFor(t, fmt.Sprintf("a server on port %d", port), 20*time.Second, func() bool {
		c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err == nil {
			c.Close()
		}
		return err == nil
	})
}

// clientTimes are a client's own figures for the requests of one path, in
// ms: time to the response's first byte and to its last.
type clientTimes struct {
	ttfb, total []float64
}

func (c *clientTimes) count() int {
	if c == nil {
		return 0
	}
	return len(c.total)
}

// clientLoad sends n requests to each path from workers goroutines, each
// over its own keep-alive connection (or a new connection per request when
// the server closes them), and records the client's latency of each: from
// writing the request to the response's first byte and to its last, the
// definitions bpfsnap uses, measured with as little client machinery as
// possible (raw sockets, no HTTP library timing).
func clientLoad(t *testing.T, port, n, workers int, paths ...string) map[string]*clientTimes {
	out, _ := loadPaths(t, n, workers, paths, func() (loadConn, error) {
		c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			return loadConn{}, err
		}
		return loadConn{get: func(p string) (getResult, error) { return rawGet(c, p) }, close: func() { c.Close() }}, nil
	})
	return out
}

// loadConn is one client connection of loadPaths.
type loadConn struct {
	get   func(path string) (getResult, error)
	close func()
}

// loadPaths sends n requests to each path from workers goroutines, each
// over its own connection from dial, a new one when the server closes it.
// It returns the client's figures and the count of 5xx per path.
func loadPaths(t *testing.T, n, workers int, paths []string, dial func() (loadConn, error)) (map[string]*clientTimes, map[string]int64) {
	var mu sync.Mutex
	out, errs := map[string]*clientTimes{}, map[string]int64{}
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var conn *loadConn
			defer func() {
				if conn != nil {
					conn.close()
				}
			}()
			for i := 0; i < n/workers; i++ {
				for _, p := range paths {
					if conn == nil {
						c, err := dial()
						if err != nil {
							t.Errorf("dial: %v", err)
							return
						}
						conn = &c
					}
					r, err := conn.get(p)
					if err != nil {
						t.Errorf("GET %s: %v", p, err)
						return
					}
					if !r.keep {
						conn.close()
						conn = nil
					}
					mu.Lock()
					if out[p] == nil {
						out[p] = &clientTimes{}
					}
					out[p].add(r.ttfb, r.total)
					if r.status >= 500 {
						errs[p]++
					}
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	return out, errs
}

type getResult struct {
	ttfb, total float64 // ms
	keep        bool    // the connection stays open
	status      int
}

// rawGet sends one GET and reads the whole response (testenv.TimedGet:
// times between the kernel's timestamps of the request and of the
// response's first and last bytes).
func rawGet(conn net.Conn, path string) (getResult, error) {
	r, err := testenv.TimedGet(conn, path)
	return getResult{ttfb: r.TTFB, total: r.Total, keep: r.Keep}, err
}

// captureHTTP records the http probe set on server pid while load runs.
func captureHTTP(t *testing.T, pid int, load func()) string {
	t.Helper()
	return captureHTTPPids(t, []int{pid}, load)
}

func captureHTTPPids(t *testing.T, pids []int, load func()) string {
	t.Helper()
	return captureHTTPArgs(t, pids, nil, load)
}

// captureHTTPArgs is captureHTTPPids with capture flags (e.g. --http-tls=false).
func captureHTTPArgs(t *testing.T, pids []int, args []string, load func()) string {
	t.Helper()
	sets := NewProbeSets()
	fs := pflag.NewFlagSet("capture", pflag.ContinueOnError)
	for _, ps := range sets {
		ps.BindFlags(fs)
	}
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	var targets []uint32
	for _, p := range pids {
		targets = append(targets, uint32(p))
	}
	out := filepath.Join(t.TempDir(), "http.bpfsnap")
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan struct{})
	var res *Result
	var err error
	done := make(chan struct{})
	go func() {
		defer close(done)
		res, err = Run(ctx, Options{Output: out, Duration: 2 * time.Minute, Probes: []string{"http"}, Sets: sets,
			PIDs: targets, Version: "test", Ready: func() { close(ready) }})
	}()
	select {
	case <-ready:
	case <-done:
		t.Fatalf("capture ended before it was ready: %v", err)
	}
	load()
	time.Sleep(300 * time.Millisecond) // let the last responses reach the ring
	cancel()
	<-done
	if err != nil {
		t.Fatal(err)
	}
	_ = res
	return out
}

// openHTTP returns an archive's HTTP analysis, rows attributed to its
// processes.
func openHTTP(t *testing.T, path string) *analyze.HTTPSummary {
	t.Helper()
	a, err := formats.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	procs, _ := analyze.Processes(a)
	h, err := analyze.HTTP(a, analyze.Options{}, procs)
	if err != nil || h == nil {
		t.Fatalf("http analysis: %v (drops %v, probes %+v, warnings %q)", err, a.Manifest().Drops, a.Manifest().Probes, a.Manifest().Warnings)
	}
	return h
}

// checkAgainstClient compares an endpoint with the client's figures for
// its path: the same count; p50 and p99 within tol (relative) or 0.5 ms,
// end to end and to the first byte; a process named.
func checkAgainstClient(t *testing.T, p string, e analyze.HTTPEndpoint, ct *clientTimes, tol float64) {
	t.Helper()
	sort.Float64s(ct.total)
	sort.Float64s(ct.ttfb)
	cp50, cp99 := analyze.Quantile(ct.total, 0.5), analyze.Quantile(ct.total, 0.99)
	tp50, tp99 := analyze.Quantile(ct.ttfb, 0.5), analyze.Quantile(ct.ttfb, 0.99)
	t.Logf("%s: client n=%d p50 %.3f p99 %.3f ms (ttfb %.3f %.3f) | bpfsnap n=%d p50 %.3f p99 %.3f ms (ttfb %.3f %.3f) (pid %d)",
		p, ct.count(), cp50, cp99, tp50, tp99, e.Count, e.P50, e.P99, e.TTFBP50, e.TTFBP99, e.PID)
	if e.Count != int64(ct.count()) {
		t.Errorf("%s: bpfsnap counted %d requests, the client sent %d", p, e.Count, ct.count())
	}
	// The client's own delays (its goroutine waiting for a CPU on a
	// loaded machine) land in a few requests, and with 100 requests the
	// p99 is the second slowest: a quantile agrees when it matches the
	// client's within tol or 0.5 ms at some rank within two requests of it.
	near := func(ours float64, them []float64, q float64) bool {
		n := float64(len(them))
		for _, r := range []float64{q, q - 2/n, q + 2/n, q - 1/n, q + 1/n} {
			r = math.Max(0, math.Min(1, r))
			v := analyze.Quantile(them, r)
			if d := math.Abs(ours - v); d <= 0.5 || d <= tol*v {
				return true
			}
		}
		return false
	}
	for _, q := range []struct {
		name       string
		ours, them float64
		client     []float64
		rank       float64
	}{{"p50", e.P50, cp50, ct.total, 0.5}, {"p99", e.P99, cp99, ct.total, 0.99}, {"ttfb p50", e.TTFBP50, tp50, ct.ttfb, 0.5}, {"ttfb p99", e.TTFBP99, tp99, ct.ttfb, 0.99}} {
		if !near(q.ours, q.client, q.rank) {
			report := t.Errorf
			if testenv.Emulated() {
				report = t.Logf // see testenv.Emulated
			}
			report("%s %s: bpfsnap %.3f ms, client %.3f ms", p, q.name, q.ours, q.them)
		}
	}
	if e.PID == 0 {
		t.Errorf("%s: requests not attributed to a process", p)
	}
}

// compareWithClient checks bpfsnap's server-side view of each path against
// the client's: every request counted; p50 and p99 within 5% or 0.5 ms,
// end to end (to the response's last byte) and to the first byte.
func compareWithClient(t *testing.T, path string, serverPID int, client map[string]*clientTimes) {
	t.Helper()
	h := openHTTP(t, path)
	got := map[string]analyze.HTTPEndpoint{}
	for _, e := range h.Endpoints {
		if e.Role != formats.RoleServer {
			t.Errorf("unexpected %s endpoint %s %s of pid %d in a capture of the server only", e.Role, e.Method, e.Route, e.PID)
			continue
		}
		got[e.Route] = e
	}
	for p, ct := range client {
		sort.Float64s(ct.total)
		sort.Float64s(ct.ttfb)
		e, ok := got[analyze.NormalizeRoute(p)]
		if !ok {
			t.Errorf("%s: not seen; endpoints: %+v", p, h.Endpoints)
			continue
		}
		if e.Protocol != formats.ProtocolHTTP1 || e.TLS {
			t.Errorf("%s: protocol %q, tls %v", p, e.Protocol, e.TLS)
		}
		checkAgainstClient(t, p, e, ct, 0.05)
	}
	if h.Unanswered != 0 {
		t.Errorf("%d requests without response", h.Unanswered)
	}
	if h.EndUnknown != 0 {
		t.Errorf("%d responses without their last byte", h.EndUnknown)
	}
}

func startServer(t *testing.T, cmd *exec.Cmd, port int) int {
	t.Helper()
	// Own process group, killed whole: nginx's worker must not outlive the
	// test holding its output open. Output is dropped for the same reason.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		cmd.Wait()
	})
	waitListening(t, port)
	return cmd.Process.Pid
}

const goServerSrc = `package main

import (
	"net/http"
	"os"
	"time"
)

func main() {
	http.HandleFunc("/fast", func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok")) })
	http.HandleFunc("/slow/", func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(8 * time.Millisecond)
		w.Write([]byte("slow"))
	})
	http.HandleFunc("/fail", func(w http.ResponseWriter, r *http.Request) { http.Error(w, "boom", 503) })
	http.ListenAndServe("127.0.0.1:"+os.Args[1], nil)
}
`

func buildGo(t *testing.T, src string) string {
	t.Helper()
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "main.go"), []byte(src), 0o644)
	os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module srv\n\ngo 1.22\n"), 0o644)
	cmd := exec.Command("go", "build", "-o", "srv", ".")
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v: %s", err, out)
	}
	return filepath.Join(dir, "srv")
}

func TestHTTPGoServer(t *testing.T) {
	testenv.RequireBPF(t)
	bin := buildGo(t, goServerSrc)
	port := freePort(t)
	pid := startServer(t, exec.Command(bin, fmt.Sprint(port)), port)
	var client map[string]*clientTimes
	path := captureHTTP(t, pid, func() { client = clientLoad(t, port, 400, 2, "/fast", "/slow/12345", "/fail") })
	compareWithClient(t, path, pid, client)
	a, _ := formats.Open(path)
	defer a.Close()
	h, _ := analyze.HTTP(a, analyze.Options{}, nil)
	for _, e := range h.Endpoints {
		if e.Route == "/fail" && (e.Errors != e.Count || e.Status["503"] != e.Count) {
			t.Errorf("/fail: %d errors, status %v of %d", e.Errors, e.Status, e.Count)
		}
		if e.Route == "/slow/{id}" && e.P50 < 8 {
			t.Errorf("/slow p50 %.2f ms, below the handler's 8 ms sleep", e.P50)
		}
	}
}

func TestHTTPNginx(t *testing.T) {
	testenv.RequireBPF(t)
	dir := t.TempDir()
	port := freePort(t)
	pid := startNginx(t, dir, port, "", "location /missing { return 404; }")
	var client map[string]*clientTimes
	path := captureHTTP(t, pid, func() { client = clientLoad(t, port, 400, 2, "/index.html", "/missing") })
	compareWithClient(t, path, pid, client)
}

// startNginx runs nginx (one worker) serving dir's index.html on port;
// listen is added to the listen directive ("ssl"), server to the server
// block. It returns the master's pid.
func startNginx(t *testing.T, dir string, port int, listen, server string) int {
	t.Helper()
	nginx := testenv.RequireTool(t, "nginx")
	os.WriteFile(filepath.Join(dir, "index.html"), []byte("hello"), 0o644)
	conf := fmt.Sprintf(`daemon off; master_process on; worker_processes 1; pid %[1]s/nginx.pid; error_log %[1]s/error.log;
events { worker_connections 256; }
http { access_log off; client_body_temp_path %[1]s; proxy_temp_path %[1]s; fastcgi_temp_path %[1]s; uwsgi_temp_path %[1]s; scgi_temp_path %[1]s;
  server { listen 127.0.0.1:%[2]d %[3]s; root %[1]s; %[4]s } }
`, dir, port, listen, server)
	os.WriteFile(filepath.Join(dir, "nginx.conf"), []byte(conf), 0o644)
	master := startServer(t, exec.Command(nginx, "-c", filepath.Join(dir, "nginx.conf"), "-p", dir), port)
	// A SIGTERM lets the master take its worker down; a bare SIGKILL would
	// orphan the worker, which holds the test's stderr open.
	t.Cleanup(func() {
		syscall.Kill(master, syscall.SIGTERM)
		for i := 0; i < 50 && syscall.Kill(master, 0) == nil; i++ {
			time.Sleep(20 * time.Millisecond)
		}
	})
	return master
}

func TestHTTPPython(t *testing.T) {
	testenv.RequireBPF(t)
	py := testenv.RequireTool(t, "python3")
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "a.txt"), []byte("a"), 0o644)
	port := freePort(t)
	cmd := exec.Command(py, "-m", "http.server", fmt.Sprint(port), "--bind", "127.0.0.1", "--directory", dir)
	pid := startServer(t, cmd, port)
	var client map[string]*clientTimes
	// http.server closes each connection (HTTP/1.0): new connection per request.
	path := captureHTTP(t, pid, func() { client = clientLoad(t, port, 100, 2, "/a.txt", "/nothing/7") })
	compareWithClient(t, path, pid, client)
}

func TestHTTPNode(t *testing.T) {
	testenv.RequireBPF(t)
	node := testenv.RequireTool(t, "node")
	dir := t.TempDir()
	port := freePort(t)
	js := `const http = require('http');
http.createServer((req, res) => {
  if (req.url.startsWith('/slow')) { setTimeout(() => res.end('slow'), 5); return; }
  res.end('fast');
}).listen(Number(process.argv[2]), '127.0.0.1');
`
	os.WriteFile(filepath.Join(dir, "srv.js"), []byte(js), 0o644)
	pid := startServer(t, exec.Command(node, filepath.Join(dir, "srv.js"), fmt.Sprint(port)), port)
	var client map[string]*clientTimes
	path := captureHTTP(t, pid, func() { client = clientLoad(t, port, 400, 2, "/fast", "/slow/99") })
	compareWithClient(t, path, pid, client)
}

// A Go client's outbound requests are seen with role client, attributed to
// the client process, with the client's latency.
func TestHTTPGoClientRole(t *testing.T) {
	testenv.RequireBPF(t)
	srv := buildGo(t, goServerSrc)
	port := freePort(t)
	startServer(t, exec.Command(srv, fmt.Sprint(port)), port)
	clientSrc := `package main

import (
	"io"
	"net/http"
	"os"
)

func main() {
	for i := 0; i < 50; i++ {
		resp, err := http.Get("http://127.0.0.1:" + os.Args[1] + "/slow/1")
		if err != nil {
			os.Exit(1)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
}
`
	cli := buildGo(t, clientSrc)
	out := filepath.Join(t.TempDir(), "client.bpfsnap")
	if _, err := Run(context.Background(), Options{Output: out, Duration: time.Minute, Probes: []string{"http"}, Sets: NewProbeSets(),
		Command: []string{cli, fmt.Sprint(port)}, Version: "test"}); err != nil {
		t.Fatal(err)
	}
	h := openHTTP(t, out)
	if len(h.Endpoints) != 1 {
		t.Fatalf("endpoints: %+v", h)
	}
	e := h.Endpoints[0]
	if e.Role != formats.RoleClient || e.Count != 50 || e.Route != "/slow/{id}" || !strings.HasPrefix(e.Process, "srv") || e.P50 < 8 {
		t.Errorf("client endpoint: %+v", e)
	}
}

// A Go server whose handlers grow their goroutine stacks deeply and
// panic/recover under load keeps running while cpu and http probes watch
// it (no uprobe ever touches Go code; the stacks are read by the kernel).
func TestHTTPGoServerStackGrowthAndPanics(t *testing.T) {
	testenv.RequireBPF(t)
	src := `package main

import (
	"net/http"
	"os"
)

//go:noinline
func deep(n int) int {
	var pad [256]byte
	if n == 0 {
		return int(pad[0])
	}
	return deep(n-1) + int(pad[n%256])
}

func main() {
	http.HandleFunc("/deep", func(w http.ResponseWriter, r *http.Request) { w.Write([]byte{byte(deep(2000))}) })
	http.HandleFunc("/panic", func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if recover() != nil {
				http.Error(w, "recovered", 500)
			}
		}()
		deep(500)
		panic("boom")
	})
	http.ListenAndServe("127.0.0.1:"+os.Args[1], nil)
}
`
	bin := buildGo(t, src)
	port := freePort(t)
	cmd := exec.Command(bin, fmt.Sprint(port))
	pid := startServer(t, cmd, port)
	out := filepath.Join(t.TempDir(), "panic.bpfsnap")
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		_, err := Run(ctx, Options{Output: out, Duration: 2 * time.Minute, Probes: []string{"cpu", "http"}, Sets: NewProbeSets(),
			PIDs: []uint32{uint32(pid)}, Version: "test", Ready: func() { close(ready) }})
		done <- err
	}()
	select {
	case <-ready:
	case err := <-done: // Run failed before attaching: say why instead of hanging
		t.Fatalf("capture ended before it was ready: %v", err)
	}
	deadline := time.Now().Add(10 * time.Second)
	var sent int
	for time.Now().Before(deadline) {
		load := clientLoad(t, port, 40, 2, "/deep", "/panic")
		sent += load["/deep"].count() + load["/panic"].count()
	}
	time.Sleep(300 * time.Millisecond)
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if cmd.ProcessState != nil || syscall.Kill(pid, 0) != nil {
		t.Fatalf("the server died under capture")
	}
	a, err := formats.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	h, _ := analyze.HTTP(a, analyze.Options{}, nil)
	var seen int64
	for _, e := range h.Endpoints {
		seen += e.Count
		if e.Route == "/panic" && e.Errors != e.Count {
			t.Errorf("/panic: %d errors of %d", e.Errors, e.Count)
		}
	}
	if seen != int64(sent) {
		t.Errorf("bpfsnap counted %d requests, the client sent %d", seen, sent)
	}
}

// The kernel holds each request until its response (bpf/http.bpf.c,
// `pending`); these are the cases where it cannot pair them itself:
// a client pipelining a second request before the first is answered, a
// request still waiting when the window ends, and a connection the server
// drops without answering. None may be lost or mispaired.
func TestHTTPKernelPairingEdges(t *testing.T) {
	testenv.RequireBPF(t)
	testenv.RequireTool(t, "python3")
	src := `package main

import (
	"net/http"
	"os"
	"time"
)

func main() {
	http.HandleFunc("/fast", func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok")) })
	http.HandleFunc("/hang", func(w http.ResponseWriter, r *http.Request) { time.Sleep(time.Minute) })
	http.HandleFunc("/abort", func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(5 * time.Millisecond)
		panic(http.ErrAbortHandler) // closes the connection, no response
	})
	http.ListenAndServe("127.0.0.1:"+os.Args[1], nil)
}
`
	// Python's server answers pipelined requests one write each (Go's and
	// nginx's batch the responses of pipelined requests into one segment,
	// which the kernel sees as one: that case is counted as coalesced).
	pySrc := `import http.server, sys, time
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        if self.path == "/slow":
            time.sleep(0.02)
        code = 202 if self.path == "/slow" else 200
        self.send_response(code)
        self.send_header("Content-Length", "0")
        self.end_headers()
    def log_message(self, *a):
        pass
http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
`
	bin := buildGo(t, src)
	port, pyPort := freePort(t), freePort(t)
	pid := startServer(t, exec.Command(bin, fmt.Sprint(port)), port)
	pyFile := filepath.Join(t.TempDir(), "srv.py")
	os.WriteFile(pyFile, []byte(pySrc), 0o644)
	pyPid := startServer(t, exec.Command("python3", pyFile, fmt.Sprint(pyPort)), pyPort)
	dial := func(port int) net.Conn {
		c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			t.Fatal(err)
		}
		c.(*net.TCPConn).SetNoDelay(true)
		t.Cleanup(func() { c.Close() })
		return c
	}
	send := func(c net.Conn, path string) {
		if _, err := io.WriteString(c, "GET "+path+" HTTP/1.1\r\nHost: t\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
	}
	read := func(br *bufio.Reader, want int) {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Fatalf("response %d, want %d", resp.StatusCode, want)
		}
	}
	const pipelined = 20
	path := captureHTTPPids(t, []int{pid, pyPid}, func() {
		// Pipelining: /slow then /fast written before /slow is answered,
		// as separate segments (the kernel sees the head of each segment).
		c := dial(pyPort)
		br := bufio.NewReader(c)
		for i := 0; i < pipelined; i++ {
			send(c, "/slow")
			time.Sleep(2 * time.Millisecond)
			send(c, "/fast")
			read(br, 202)
			read(br, 200)
		}
		// After pipelining the socket stays with user-space pairing; a
		// fresh connection is paired in the kernel again.
		clientLoad(t, port, 50, 1, "/fast")
		// A request unanswered at the end, on a connection whose owner is
		// known from an earlier response.
		h := dial(port)
		send(h, "/fast")
		read(bufio.NewReader(h), 200)
		send(h, "/hang")
		// A fresh connection the server closes without answering: the
		// kernel learns the owner when its socket is released.
		ab := dial(port)
		send(ab, "/abort")
		ab.SetReadDeadline(time.Now().Add(5 * time.Second))
		if n, _ := ab.Read(make([]byte, 1)); n != 0 {
			t.Fatalf("/abort answered")
		}
		time.Sleep(100 * time.Millisecond)
	})
	a, err := formats.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	rows, err := formats.ReadAll[formats.HTTPRequest](a, formats.TableHTTPRequests)
	if err != nil {
		t.Fatal(err)
	}
	count := map[string]int{}
	for _, r := range rows {
		key := fmt.Sprintf("%s %d", r.Path, r.Status)
		count[key]++
		owner := uint32(pid)
		if r.Path == "/slow" || r.Connection == rows[0].Connection {
			owner = uint32(pyPid)
		}
		if r.PID != owner || r.Role != formats.RoleServer {
			t.Errorf("row %s attributed to pid %d role %s, want %d server", key, r.PID, r.Role, owner)
		}
		if r.Status != 0 && r.ResponseNs < r.RequestNs {
			t.Errorf("row %s: response before request", key)
		}
		if r.Path == "/slow" && r.Status != 0 && r.ResponseNs-r.RequestNs < uint64(20*time.Millisecond) {
			t.Errorf("/slow paired with a response %v after its request: mispaired", time.Duration(r.ResponseNs-r.RequestNs))
		}
	}
	want := map[string]int{"/slow 202": pipelined, "/fast 200": pipelined + 51, "/hang 0": 1, "/abort 0": 1}
	for k, n := range want {
		if count[k] != n {
			t.Errorf("%s: %d rows, want %d (all rows: %v)", k, count[k], n, count)
		}
	}
	if len(count) != len(want) {
		t.Errorf("unexpected rows: %v", count)
	}
	d := a.Manifest().Drops
	if d["http.response_without_request"] != 0 || d["http.no_response"] != 2 || d["http.unattributed"] != 0 || d["http.coalesced"] != 0 {
		t.Errorf("drops: %v", d)
	}
}
