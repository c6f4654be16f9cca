//go:build linux

package capture

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bpfsnap/bpfsnap/analyze"
	"github.com/bpfsnap/bpfsnap/formats"
	"github.com/bpfsnap/bpfsnap/internal/testenv"
)

// framingServerSrc is a Go net/http server whose routes exercise HTTP/1.x
// message framing: a response whose body follows its headers 40 ms later,
// a 1 MiB chunked response, request bodies to read, and HEAD.
const framingServerSrc = `package main

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"
)

func main() {
	http.HandleFunc("/flush", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		w.WriteHeader(200)
		w.(http.Flusher).Flush() // the headers leave now, the body 40 ms later
		time.Sleep(40 * time.Millisecond)
		fmt.Fprint(w, "late body")
	})
	chunk := strings.Repeat("x", 16<<10)
	http.HandleFunc("/chunked1m", func(w http.ResponseWriter, r *http.Request) {
		for i := 0; i < 64; i++ { // 1 MiB, chunked: no Content-Length
			io.WriteString(w, chunk)
			w.(http.Flusher).Flush()
		}
	})
	readBody := func(w http.ResponseWriter, r *http.Request) {
		n, _ := io.Copy(io.Discard, r.Body) // sends 100 Continue when asked
		fmt.Fprintf(w, "read %d", n)
	}
	http.HandleFunc("/post", readBody)
	http.HandleFunc("/expect", readBody)
	http.HandleFunc("/head", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "11")
		io.WriteString(w, "hello world")
	})
	http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "ok")
	})
	http.ListenAndServe("127.0.0.1:"+os.Args[1], nil)
}
`

// Real traffic that a head-only view gets wrong, against a Go server:
// responses whose body comes long after the headers or in 1 MiB of
// chunks (latency must run to the last byte, with the first byte kept as
// TTFB), 1000 requests pipelined 10 per write (each counted), POST bodies
// whose writes start like request lines (no phantom requests), HEAD
// requests followed by a GET on the same connection (no body after a HEAD
// response), and Expect: 100-continue (the interim response is not the
// answer). Counts must be exact and the connection's framing never lost.
func TestHTTPFraming(t *testing.T) {
	testenv.RequireBPF(t)
	bin := buildGo(t, framingServerSrc)
	port := freePort(t)
	pid := startServer(t, exec.Command(bin, fmt.Sprint(port)), port)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	var client map[string]*clientTimes
	const (
		pipeConns, pipeDepth = 100, 10
		posts, postWrites    = 20, 10
		heads, expects       = 10, 10
	)
	path := captureHTTP(t, pid, func() {
		client = clientLoad(t, port, 40, 2, "/flush")
		for p, c := range clientLoad(t, port, 20, 2, "/chunked1m") {
			client[p] = c
		}
		pipelined(t, addr, pipeConns, pipeDepth)
		postsWithRequestLikeBodies(t, addr, posts, postWrites)
		headThenGet(t, addr, heads)
		expectContinue(t, addr, expects)
	})
	// Latency to the last byte and to the first, as the client saw them.
	compareWithClientWithin(t, path, client, 0.10)

	h := openHTTP(t, path)
	count := map[string]int64{}
	for _, e := range h.Endpoints {
		count[e.Method+" "+e.Route] += e.Count
	}
	for route, want := range map[string]int64{
		"GET /flush": 40, "GET /chunked1m": 20, "GET /pipe/{id}": pipeConns * pipeDepth,
		"POST /post": posts, "HEAD /head": heads, "GET /head": heads, "POST /expect": expects,
	} {
		if count[route] != want {
			t.Errorf("%s: counted %d, want %d", route, count[route], want)
		}
		delete(count, route)
	}
	for route, n := range count {
		t.Errorf("phantom endpoint %s: %d requests", route, n)
	}
	for _, e := range h.Endpoints {
		if e.Route == "/chunked1m" && e.P50 < e.TTFBP50 {
			t.Errorf("/chunked1m: end-to-end p50 %.3f ms below its TTFB p50 %.3f ms", e.P50, e.TTFBP50)
		}
		if e.Route == "/flush" && (e.P50 < 40 || e.TTFBP50 > 20) {
			t.Errorf("/flush: p50 %.3f ms (body 40 ms after the headers), ttfb p50 %.3f ms", e.P50, e.TTFBP50)
		}
	}
	a, err := formats.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	for name, n := range a.Manifest().Drops {
		if !strings.HasPrefix(name, "http.") {
			continue
		}
		if r, _ := formats.LookupDrop(name); r.Class != formats.DropNoted {
			t.Errorf("drop counter %s = %d: %s", name, n, r.Meaning)
		}
	}
	rows, err := formats.ReadAll[formats.HTTPRequest](a, formats.TableHTTPRequests)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rows {
		if r.Path == "/chunked1m" && r.ResponseBytes != 1<<20 {
			t.Errorf("/chunked1m: response_bytes %d, want %d (the chunks' sizes)", r.ResponseBytes, 1<<20)
		}
		if r.Path == "/post" && r.RequestBytes != 100<<10 {
			t.Errorf("/post: request_bytes %d, want %d", r.RequestBytes, 100<<10)
		}
		if r.ResponseTID == 0 {
			t.Errorf("%s %s: no response thread", r.Method, r.Path)
			break
		}
	}
}

// compareWithClientWithin is compareWithClient with a relative tolerance.
func compareWithClientWithin(t *testing.T, path string, client map[string]*clientTimes, tol float64) {
	t.Helper()
	h := openHTTP(t, path)
	for p, ct := range client {
		e, ok := endpointOf(h, "GET", p)
		if !ok {
			t.Errorf("%s: not seen", p)
			continue
		}
		if e.Protocol != formats.ProtocolHTTP1 || e.TLS {
			t.Errorf("%s: protocol %q, tls %v", p, e.Protocol, e.TLS)
		}
		checkAgainstClient(t, p, e, ct, tol)
	}
}

func endpointOf(h *analyze.HTTPSummary, method, path string) (analyze.HTTPEndpoint, bool) {
	for _, e := range h.Endpoints {
		if e.Method == method && e.Route == analyze.NormalizeRoute(path) && e.Role == formats.RoleServer {
			return e, true
		}
	}
	return analyze.HTTPEndpoint{}, false
}

// pipelined opens conns connections and writes depth requests on each in
// one write, then reads the depth responses.
func pipelined(t *testing.T, addr string, conns, depth int) {
	var wg sync.WaitGroup
	for c := 0; c < conns; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			conn, err := net.Dial("tcp", addr)
			if err != nil {
				t.Errorf("dial: %v", err)
				return
			}
			defer conn.Close()
			conn.SetDeadline(time.Now().Add(20 * time.Second))
			var b strings.Builder
			for i := 0; i < depth; i++ {
				fmt.Fprintf(&b, "GET /pipe/%d HTTP/1.1\r\nHost: test\r\n\r\n", c*depth+i)
			}
			if _, err := io.WriteString(conn, b.String()); err != nil {
				t.Errorf("pipelined write: %v", err)
				return
			}
			br := bufio.NewReader(conn)
			for i := 0; i < depth; i++ {
				resp, err := http.ReadResponse(br, nil)
				if err != nil {
					t.Errorf("pipelined response %d: %v", i, err)
					return
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		}()
		if c%20 == 19 {
			wg.Wait() // at most 20 connections at a time
		}
	}
	wg.Wait()
}

// postsWithRequestLikeBodies sends n POSTs of 100 KiB bodies, each written
// in writes separate pieces, every piece beginning like a request line.
func postsWithRequestLikeBodies(t *testing.T, addr string, n, writes int) {
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(30 * time.Second))
	br := bufio.NewReader(conn)
	piece := "GET /phantom HTTP/1.1\r\nHost: inside-a-body\r\n\r\n"
	piece += strings.Repeat("b", (100<<10)/writes-len(piece))
	for i := 0; i < n; i++ {
		fmt.Fprintf(conn, "POST /post HTTP/1.1\r\nHost: test\r\nContent-Length: %d\r\n\r\n", len(piece)*writes)
		for w := 0; w < writes; w++ {
			if _, err := io.WriteString(conn, piece); err != nil {
				t.Fatalf("body write: %v", err)
			}
			time.Sleep(200 * time.Microsecond) // separate segments
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("POST response: %v", err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
}

// headThenGet sends, n times on one connection, a HEAD (whose response
// declares a body it does not carry) and then a GET of the same path.
func headThenGet(t *testing.T, addr string, n int) {
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(20 * time.Second))
	br := bufio.NewReader(conn)
	for i := 0; i < n; i++ {
		for _, method := range []string{"HEAD", "GET"} {
			fmt.Fprintf(conn, "%s /head HTTP/1.1\r\nHost: test\r\n\r\n", method)
			req, _ := http.NewRequest(method, "/head", nil)
			resp, err := http.ReadResponse(br, req)
			if err != nil {
				t.Fatalf("%s response: %v", method, err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	}
}

// expectContinue sends n POSTs with Expect: 100-continue, waiting for the
// interim response before the body, as curl does for large uploads.
func expectContinue(t *testing.T, addr string, n int) {
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(20 * time.Second))
	br := bufio.NewReader(conn)
	body := strings.Repeat("e", 5000)
	for i := 0; i < n; i++ {
		fmt.Fprintf(conn, "POST /expect HTTP/1.1\r\nHost: test\r\nContent-Length: %d\r\nExpect: 100-continue\r\n\r\n", len(body))
		interim, err := http.ReadResponse(br, nil)
		if err != nil || interim.StatusCode != 100 {
			t.Fatalf("want 100 Continue, got %v %v", interim, err)
		}
		io.WriteString(conn, body)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("final response: %v", err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
}

// javaFlushSrc is a com.sun.net.httpserver service that sends its headers,
// then its body 40 ms later: the case where time to first byte and
// end-to-end latency differ by the whole handler.
const javaFlushSrc = `import com.sun.net.httpserver.*;
import java.io.*;
import java.net.*;
import java.util.concurrent.*;

public class Flush {
    public static void main(String[] args) throws Exception {
        HttpServer s = HttpServer.create(new InetSocketAddress("127.0.0.1", Integer.parseInt(args[0])), 64);
        s.createContext("/late", ex -> {
            byte[] body = "late body from java".getBytes();
            ex.sendResponseHeaders(200, body.length);
            try { Thread.sleep(40); } catch (InterruptedException e) {}
            OutputStream o = ex.getResponseBody();
            o.write(body);
            o.close();
        });
        s.setExecutor(Executors.newFixedThreadPool(4));
        s.start();
    }
}
`

// Java's HttpServer sends the headers as soon as sendResponseHeaders is
// called: bpfsnap must report the 40 ms to the last byte, not the time to
// the headers (issue #24: p50 1.25 ms against the client's 44 ms).
func TestHTTPJavaHeadersFirst(t *testing.T) {
	testenv.RequireBPF(t)
	java := testenv.RequireTool(t, "java")
	dir := t.TempDir()
	src := filepath.Join(dir, "Flush.java")
	if err := os.WriteFile(src, []byte(javaFlushSrc), 0o644); err != nil {
		t.Fatal(err)
	}
	port := freePort(t)
	pid := startServer(t, exec.Command(java, src, fmt.Sprint(port)), port)
	var client map[string]*clientTimes
	path := captureHTTP(t, pid, func() { client = clientLoad(t, port, 40, 2, "/late") })
	compareWithClientWithin(t, path, client, 0.10)
	e, ok := endpointOf(openHTTP(t, path), "GET", "/late")
	if !ok || e.P50 < 40 || e.TTFBP50 > 20 {
		t.Errorf("/late: p50 %.3f ms, ttfb p50 %.3f ms: want the 40 ms wait in the end-to-end figure only", e.P50, e.TTFBP50)
	}
}
