//go:build linux

package capture

import (
	"bufio"
	"bytes"
	"context"
	"debug/elf"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
	"golang.org/x/sys/unix"

	"github.com/bpfsnap/bpfsnap/analyze"
	"github.com/bpfsnap/bpfsnap/formats"
	"github.com/bpfsnap/bpfsnap/internal/goprobe"
	"github.com/bpfsnap/bpfsnap/internal/testenv"
)

// timedConn is a TCP connection whose reads keep the kernel's receive
// timestamps, for clients that speak through a library (TLS, HTTP/2
// framing): mark starts a measure, since gives the client's figures from
// its first write after the mark (the request leaving: what comes before,
// a TLS library encrypting, a goroutine waiting for a CPU, is the client's
// own time) to the receive times of the first and last reads (reads of
// bytes that arrived before the mark, such as a TLS session ticket, do not
// count).
type timedConn struct {
	*net.TCPConn
	raw  syscall.RawConn
	oob  []byte
	mu   sync.Mutex
	from time.Time
	sent time.Time
	// first and last receive times since from.
	first, last time.Time
}

func (c *timedConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	if c.sent.IsZero() && !c.from.IsZero() {
		c.sent = time.Now()
	}
	c.mu.Unlock()
	return c.TCPConn.Write(p)
}

func dialTimed(t *testing.T, addr string) *timedConn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	tc := c.(*net.TCPConn)
	raw, err := tc.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var serr error
	raw.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_TIMESTAMPNS, 1) })
	if serr != nil {
		t.Fatal(serr)
	}
	return &timedConn{TCPConn: tc, raw: raw, oob: make([]byte, 256)}
}

func (c *timedConn) Read(p []byte) (int, error) {
	n, rx, err := testenv.RecvTimed(c.raw, p, c.oob)
	if err != nil {
		return 0, err
	}
	c.mu.Lock()
	if !rx.Before(c.from) {
		if c.first.IsZero() {
			c.first = rx
		}
		c.last = rx
	}
	c.mu.Unlock()
	return n, nil
}

func (c *timedConn) mark() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.from, c.sent, c.first, c.last = time.Now(), time.Time{}, time.Time{}, time.Time{}
	return c.from
}

// since returns the client's figures, in ms from its first write since
// the mark (start, if it wrote nothing): to the first and the last byte
// received.
func (c *timedConn) since(start time.Time) (ttfb, total float64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.sent.IsZero() {
		start = c.sent
	}
	ms := func(t time.Time) float64 { return float64(t.Sub(start).Nanoseconds()) / 1e6 }
	return ms(c.first), ms(c.last)
}

func (ct *clientTimes) add(ttfb, total float64) {
	ct.ttfb = append(ct.ttfb, ttfb)
	ct.total = append(ct.total, total)
}

// h2Client is an HTTP/2 client of a few dozen lines (x/net's framer and
// HPACK encoder): one request at a time, so the receive times of its reads
// are those of the request's response.
type h2Client struct {
	tc      *timedConn
	fr      *http2.Framer
	enc     *hpack.Encoder
	hbuf    bytes.Buffer
	next    uint32
	scheme  string
	authory string
}

func newH2Client(t *testing.T, tc *timedConn, conn net.Conn, scheme string) *h2Client {
	t.Helper()
	if _, err := io.WriteString(conn, http2.ClientPreface); err != nil {
		t.Fatal(err)
	}
	c := &h2Client{tc: tc, fr: http2.NewFramer(conn, conn), next: 1, scheme: scheme, authory: "test"}
	c.fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	c.enc = hpack.NewEncoder(&c.hbuf)
	if err := c.fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	return c
}

// get sends one GET and reads its response; it returns the status and the
// client's figures.
func (c *h2Client) get(path string) (status string, ttfb, total float64, err error) {
	id := c.next
	c.next += 2
	c.hbuf.Reset()
	for _, f := range [][2]string{{":method", "GET"}, {":scheme", c.scheme}, {":path", path}, {":authority", c.authory}, {"user-agent", "bpfsnap-test"}} {
		c.enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
	}
	start := c.tc.mark()
	if err := c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: c.hbuf.Bytes(), EndStream: true, EndHeaders: true}); err != nil {
		return "", 0, 0, err
	}
	for {
		f, err := c.fr.ReadFrame()
		if err != nil {
			return "", 0, 0, err
		}
		end := false
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				c.fr.WriteSettingsAck()
			}
		case *http2.PingFrame:
			if !f.IsAck() {
				c.fr.WritePing(true, f.Data)
			}
		case *http2.MetaHeadersFrame:
			if f.StreamID == id {
				if s := f.PseudoValue("status"); s != "" && s[0] != '1' {
					status = s
				}
				end = f.StreamEnded()
			}
		case *http2.DataFrame:
			if n := len(f.Data()); n > 0 {
				c.fr.WriteWindowUpdate(0, uint32(n))
				c.fr.WriteWindowUpdate(f.StreamID, uint32(n))
			}
			end = f.StreamID == id && f.StreamEnded()
		case *http2.RSTStreamFrame:
			return "", 0, 0, fmt.Errorf("stream %d reset: %v", f.StreamID, f.ErrCode)
		case *http2.GoAwayFrame:
			return "", 0, 0, fmt.Errorf("goaway: %v", f.ErrCode)
		}
		if end {
			ttfb, total = c.tc.since(start)
			return status, ttfb, total, nil
		}
	}
}

// buildTestdata builds a command of the main module's testdata (with
// symbols and DWARF, or stripped).
func buildTestdata(t *testing.T, name string, stripped bool) string {
	t.Helper()
	return goBuild(t, filepath.Join("..", "testdata"), "./"+name, stripped, nil)
}

// goBuild builds package pkg of the module in dir into a temporary file.
func goBuild(t *testing.T, dir, pkg string, stripped bool, env []string) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), filepath.Base(pkg))
	args := []string{"build", "-o", out}
	if stripped {
		args = append(args, "-ldflags=-s -w")
	}
	c := exec.Command("go", append(args, pkg)...)
	c.Dir = dir
	c.Env = append(os.Environ(), env...)
	if b, err := c.CombinedOutput(); err != nil {
		t.Fatalf("go build %s: %v\n%s", pkg, err, b)
	}
	return out
}

// h2Load sends n rounds of requests to each path over conns connections
// (made by dial), one request at a time per connection, and returns the
// client's figures per path and the statuses it got.
func h2Load(t *testing.T, conns, n int, dial func() *h2Client, paths ...string) (map[string]*clientTimes, map[string]int) {
	t.Helper()
	var mu sync.Mutex
	out, statuses := map[string]*clientTimes{}, map[string]int{}
	var wg sync.WaitGroup
	for w := 0; w < conns; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := dial()
			for i := 0; i < n/conns; i++ {
				for _, p := range paths {
					st, ttfb, total, err := c.get(p)
					if err != nil {
						t.Errorf("GET %s: %v", p, err)
						return
					}
					mu.Lock()
					if out[p] == nil {
						out[p] = &clientTimes{}
					}
					out[p].add(ttfb, total)
					statuses[p+" "+st]++
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	return out, statuses
}

// checkEndpoints compares bpfsnap's endpoints of one role with the
// client's figures per route: every call counted under its route, with
// the protocol and TLS expected, the errors the client saw, and p50/p99
// within 5% (or 0.5 ms) of the client's.
func checkEndpoints(t *testing.T, h *analyze.HTTPSummary, role, protocol string, tlsOn bool, client map[string]*clientTimes, errors map[string]int64) {
	t.Helper()
	for route, ct := range client {
		var e *analyze.HTTPEndpoint
		for i := range h.Endpoints {
			x := &h.Endpoints[i]
			if x.Role == role && x.Protocol == protocol && x.TLS == tlsOn && (x.Route == route || x.Route == analyze.NormalizeRoute(route)) {
				if e != nil {
					t.Errorf("%s: two endpoints: %+v and %+v", route, *e, *x)
				}
				e = x
			}
		}
		if e == nil {
			var have []string
			for _, x := range h.Endpoints {
				have = append(have, fmt.Sprintf("%s %s %s %s tls=%v n=%d", x.Role, x.Protocol, x.Method, x.Route, x.TLS, x.Count))
			}
			t.Errorf("%s %s: not seen; endpoints: %s", role, route, strings.Join(have, "; "))
			continue
		}
		if e.Errors != errors[route] {
			t.Errorf("%s: %d errors, the client saw %d (status %v, grpc %v)", route, e.Errors, errors[route], e.Status, e.GRPCStatus)
		}
		checkAgainstClient(t, route, *e, ct, 0.05)
	}
}

func TestHTTPH2C(t *testing.T) {
	testenv.RequireBPF(t)
	bin := buildTestdata(t, "h2tls", false)
	port := freePort(t)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	pid := startServer(t, exec.Command(bin, "-listen", addr), port)
	dial := func() *h2Client {
		tc := dialTimed(t, addr)
		t.Cleanup(func() { tc.Close() })
		return newH2Client(t, tc, tc, "http")
	}
	var client map[string]*clientTimes
	var statuses map[string]int
	path := captureHTTP(t, pid, func() {
		client, statuses = h2Load(t, 2, 300, dial, "/fast", "/slow/12345", "/fail")
	})
	h := openHTTP(t, path)
	checkEndpoints(t, h, formats.RoleServer, formats.ProtocolHTTP2, false, client, map[string]int64{"/fail": int64(statuses["/fail 503"])})
	if statuses["/fail 503"] != 300 {
		t.Errorf("statuses: %v", statuses)
	}
	if h.Unanswered != 0 || h.EndUnknown != 0 {
		t.Errorf("%d unanswered, %d without end", h.Unanswered, h.EndUnknown)
	}
	checkNoLosses(t, path)
}

// checkNoLosses fails on any http drop counter that is not a note.
func checkNoLosses(t *testing.T, path string) {
	t.Helper()
	a, err := formats.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	for name, n := range a.Manifest().Drops {
		if !strings.HasPrefix(name, "http.") || n == 0 {
			continue
		}
		if r, _ := formats.LookupDrop(name); r.Class != formats.DropNoted {
			t.Errorf("drop counter %s = %d: %s", name, n, r.Meaning)
		}
	}
}

// ---- gRPC ------------------------------------------------------------------------

// buildGRPC builds a command of testdata/grpc, a module of its own whose
// grpc-go comes from the module proxy at the version its go.mod pins.
func buildGRPC(t *testing.T, cmd string, stripped bool) string {
	t.Helper()
	return goBuild(t, filepath.Join("..", "testdata", "grpc"), "./"+cmd, stripped, []string{"GOFLAGS=-mod=mod"})
}

type grpcCall struct {
	Method  string  `json:"method"`
	Code    int     `json:"code"`
	TotalMs float64 `json:"total_ms"`
	TTFBMs  float64 `json:"ttfb_ms"`
}

// grpcFigures sorts the client's calls by method.
func grpcFigures(t *testing.T, out []byte) (map[string]*clientTimes, map[string]int64) {
	t.Helper()
	client, errors := map[string]*clientTimes{}, map[string]int64{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		var c grpcCall
		if err := json.Unmarshal(sc.Bytes(), &c); err != nil {
			continue
		}
		if client[c.Method] == nil {
			client[c.Method] = &clientTimes{}
		}
		client[c.Method].add(c.TTFBMs, c.TotalMs)
		if c.Code != 0 {
			errors[c.Method]++
		}
	}
	return client, errors
}

// A grpc-go server and client: every call counted under its method, with
// the client's latency and exactly its failures (grpc-status), seen from
// the server and, in a second capture, from the client.
func TestHTTPGRPC(t *testing.T) {
	testenv.RequireBPF(t)
	srv, cli := buildGRPC(t, "server", false), buildGRPC(t, "client", true)
	port := freePort(t)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	pid := startServer(t, exec.Command(srv, "-listen", addr), port)
	var out []byte
	path := captureHTTP(t, pid, func() {
		var err error
		if out, err = exec.Command(cli, "-addr", addr, "-calls", "150").Output(); err != nil {
			t.Fatalf("client: %v", err)
		}
	})
	client, errors := grpcFigures(t, out)
	if errors["/bpfsnap.test.Echo/Flaky"] == 0 {
		t.Fatalf("the client saw no failures: %s", out[:min(len(out), 500)])
	}
	// The struct offsets the Go HTTP/2 uprobes read, against this grpc-go's
	// golang.org/x/net/http2 (the server is built with DWARF).
	if ef, err := elf.Open(srv); err != nil {
		t.Error(err)
	} else {
		d, err := ef.DWARF()
		if err == nil {
			err = goprobe.CheckHTTP2Layouts(d, goprobe.XNetHTTP2)
		}
		if err != nil {
			t.Errorf("x/net/http2 layouts: %v", err)
		}
		ef.Close()
	}
	h := openHTTP(t, path)
	checkEndpoints(t, h, formats.RoleServer, formats.ProtocolGRPC, false, client, errors)
	checkNoLosses(t, path)

	// The client's side (a stripped binary): a capture of the command.
	dir := t.TempDir()
	cout, figures := filepath.Join(dir, "client.bpfsnap"), filepath.Join(dir, "calls.json")
	if _, err := Run(context.Background(), Options{Output: cout, Duration: time.Minute, Probes: []string{"http"}, Sets: NewProbeSets(),
		Command: []string{cli, "-addr", addr, "-calls", "100", "-out", figures}, Version: "test"}); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(figures)
	if err != nil {
		t.Fatal(err)
	}
	client, errors = grpcFigures(t, b)
	checkEndpoints(t, openHTTP(t, cout), formats.RoleClient, formats.ProtocolGRPC, false, client, errors)
}

// A gRPC connection opened (and used) before the capture starts: its
// HPACK tables are unknown to the decoder, so the methods' names come from
// the uprobes on grpc-go's header handling; every call of the window is
// counted, with its method and status.
func TestHTTPGRPCConnectionFromBeforeTheWindow(t *testing.T) {
	testenv.RequireBPF(t)
	srv, cli := buildGRPC(t, "server", true), buildGRPC(t, "client", false)
	port := freePort(t)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	pid := startServer(t, exec.Command(srv, "-listen", addr), port)
	c := exec.Command(cli, "-addr", addr, "-calls", "120", "-warm", "20", "-wait")
	stdin, _ := c.StdinPipe()
	stdout, _ := c.StdoutPipe()
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Process.Kill(); c.Wait() })
	br := bufio.NewReader(stdout)
	if line, err := br.ReadString('\n'); err != nil || line != "ready\n" {
		t.Fatalf("client: %q %v", line, err)
	}
	var out []byte
	path := captureHTTP(t, pid, func() {
		io.WriteString(stdin, "go\n")
		out, _ = io.ReadAll(br)
		c.Wait()
	})
	client, errors := grpcFigures(t, out)
	if len(client) != 3 {
		t.Fatalf("client output: %s", out)
	}
	h := openHTTP(t, path)
	checkEndpoints(t, h, formats.RoleServer, formats.ProtocolGRPC, false, client, errors)
	for _, e := range h.Endpoints {
		if e.Route == formats.PathNameUnknown {
			t.Errorf("%d calls without a name", e.Count)
		}
	}
	a, _ := formats.Open(path)
	defer a.Close()
	d := a.Manifest().Drops
	t.Logf("drops: %v", d)
	for _, p := range a.Manifest().Probes {
		t.Logf("probe %s: %v", p.Name, p.Details)
	}
	if d["http.h2_joined"] == 0 {
		t.Errorf("the connection was not recognised mid-way (drops %v)", d)
	}
}
