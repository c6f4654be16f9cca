//go:build linux

package capture

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bpfsnap/bpfsnap/formats"
	"github.com/bpfsnap/bpfsnap/internal/testenv"
)

// selfSigned writes a self-signed certificate for 127.0.0.1 and its key
// (PEM) into dir.
func selfSigned(t *testing.T, dir string) (cert, key string) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "bpfsnap test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, DNSNames: []string{"localhost"}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	cert, key = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	os.WriteFile(cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
	os.WriteFile(key, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o600)
	return cert, key
}

// waitTLS waits until a TLS server answers a handshake.
func waitTLS(t *testing.T, port int) {
	t.Helper()
	waitFor(t, fmt.Sprintf("a TLS server on port %d", port), 20*time.Second, func() bool {
		c, err := tls.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port), &tls.Config{InsecureSkipVerify: true})
		if err == nil {
			c.Close()
		}
		return err == nil
	})
}

// tlsGet sends one HTTP/1.1 GET over a TLS connection and reads the whole
// response; the figures are those of the TCP connection under it (the
// request's write to the receive times of the response's first and last
// records).
func tlsGet(tc *timedConn, conn *tls.Conn, path string) (getResult, error) {
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	start := tc.mark()
	if _, err := io.WriteString(conn, "GET "+path+" HTTP/1.1\r\nHost: test\r\nUser-Agent: bpfsnap-test\r\n\r\n"); err != nil {
		return getResult{}, err
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		return getResult{}, err
	}
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		return getResult{}, err
	}
	resp.Body.Close()
	ttfb, total := tc.since(start)
	return getResult{ttfb: ttfb, total: total, keep: !resp.Close, status: resp.StatusCode}, nil
}

// tlsLoad is clientLoad over TLS (HTTP/1.1, ALPN http/1.1): n requests
// to each path from workers connections, a new one when the server closes
// it. It returns the client's figures and the count of 5xx per path.
// maxVersion caps the TLS version (0: TLS 1.3): a TLS 1.3 server sends
// its session tickets after the handshake, and a client that opens a
// connection per request would take them for its response's first bytes.
func tlsLoad(t *testing.T, port, n, workers int, maxVersion uint16, paths ...string) (map[string]*clientTimes, map[string]int64) {
	t.Helper()
	return loadPaths(t, n, workers, paths, func() (loadConn, error) {
		tc := dialTimed(t, fmt.Sprintf("127.0.0.1:%d", port))
		conn := tls.Client(tc, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"http/1.1"}, MaxVersion: maxVersion})
		if err := conn.Handshake(); err != nil {
			conn.Close()
			return loadConn{}, fmt.Errorf("handshake: %v", err)
		}
		return loadConn{get: func(p string) (getResult, error) { return tlsGet(tc, conn, p) }, close: func() { conn.Close() }}, nil
	})
}

// Go net/http over TLS: HTTP/1.1 and HTTP/2 (ALPN) clients of one server,
// read from crypto/tls's plaintext by uprobes on a stripped binary.
func TestHTTPTLSGo(t *testing.T) {
	testenv.RequireBPF(t)
	pid, port := startH2TLS(t)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	dialH2 := func() *h2Client {
		tc := dialTimed(t, addr)
		conn := tls.Client(tc, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"h2"}})
		if err := conn.Handshake(); err != nil || conn.ConnectionState().NegotiatedProtocol != "h2" {
			t.Fatalf("h2 handshake: %v %q", err, conn.ConnectionState().NegotiatedProtocol)
		}
		t.Cleanup(func() { conn.Close() })
		return newH2Client(t, tc, conn, "https")
	}
	// An HTTP/2 connection opened and used before the capture: its HPACK
	// table is unknown to the decoder, its frames are read one Go framer
	// read at a time (header, then payload); the names come from the
	// uprobe on net/http's processHeaders.
	early := dialH2()
	for i := 0; i < 10; i++ {
		if _, _, _, err := early.get("/early"); err != nil {
			t.Fatal(err)
		}
	}
	var h1, h2 map[string]*clientTimes
	var h1Errs map[string]int64
	var statuses map[string]int
	const earlyN = 50
	path := captureHTTP(t, pid, func() {
		for i := 0; i < earlyN; i++ {
			if _, _, _, err := early.get("/early"); err != nil {
				t.Fatal(err)
			}
		}
		h1, h1Errs = tlsLoad(t, port, 200, 2, 0, "/fast", "/slow/1", "/fail")
		h2, statuses = h2Load(t, 2, 200, dialH2, "/fast", "/slow/2", "/fail")
	})
	h := openHTTP(t, path)
	checkEndpoints(t, h, formats.RoleServer, formats.ProtocolHTTP1, true, h1, h1Errs)
	checkEndpoints(t, h, formats.RoleServer, formats.ProtocolHTTP2, true, h2, map[string]int64{"/fail": int64(statuses["/fail 503"])})
	var early404 int64
	for _, e := range h.Endpoints {
		if e.Route == "/early" && e.Protocol == formats.ProtocolHTTP2 && e.TLS {
			early404 += e.Status["404"]
		}
		if e.Route == formats.PathNameUnknown {
			t.Errorf("%d calls without a name", e.Count)
		}
	}
	if early404 != earlyN {
		t.Errorf("the connection from before the window: %d requests counted, want %d", early404, earlyN)
	}
	if h.Unanswered != 0 || h.EndUnknown != 0 {
		t.Errorf("%d unanswered, %d without end", h.Unanswered, h.EndUnknown)
	}
	checkNoLosses(t, path)
	checkTLSRows(t, path, port)
}

// checkTLSRows checks that TLS rows carry their socket's addresses.
func checkTLSRows(t *testing.T, path string, port int) {
	t.Helper()
	a, err := formats.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	rows, err := formats.ReadAll[formats.HTTPRequest](a, formats.TableHTTPRequests)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rows {
		if r.TLS && (r.LocalAddr != fmt.Sprintf("127.0.0.1:%d", port) || r.Connection == 0 || r.CgroupID == 0) {
			t.Errorf("TLS row without its socket: %+v", r)
			break
		}
	}
}

// startH2TLS runs testdata/h2tls, stripped, with TLS on a free port (and
// plaintext on another) and returns its pid and the TLS port once it
// answers handshakes.
func startH2TLS(t *testing.T) (pid, port int) {
	t.Helper()
	cert, key := selfSigned(t, t.TempDir())
	bin := buildTestdata(t, "h2tls", true)
	port = freePort(t)
	cmd := exec.Command(bin, "-listen", fmt.Sprintf("127.0.0.1:%d", freePort(t)), "-tls-listen", fmt.Sprintf("127.0.0.1:%d", port), "-cert", cert, "-key", key)
	pid = startServer(t, cmd, port)
	waitTLS(t, port)
	return pid, port
}

// checkTLSServer loads the HTTP/1.1 TLS server pid on port with tlsLoad
// (n requests per path, 2 workers) while capturing it, then checks every
// path's endpoint (protocol http1, tls), the losses and the rows' sockets.
func checkTLSServer(t *testing.T, pid, port, n int, maxVersion uint16, paths ...string) {
	t.Helper()
	waitTLS(t, port)
	var client map[string]*clientTimes
	var errs map[string]int64
	path := captureHTTP(t, pid, func() { client, errs = tlsLoad(t, port, n, 2, maxVersion, paths...) })
	h := openHTTP(t, path)
	checkEndpoints(t, h, formats.RoleServer, formats.ProtocolHTTP1, true, client, errs)
	checkNoLosses(t, path)
	checkTLSRows(t, path, port)
}

// nginx with OpenSSL (libssl.so.3): SSL_read/SSL_write uprobes.
func TestHTTPTLSNginx(t *testing.T) {
	testenv.RequireBPF(t)
	dir := t.TempDir()
	cert, key := selfSigned(t, dir)
	port := freePort(t)
	pid := startNginx(t, dir, port, "ssl", fmt.Sprintf("ssl_certificate %s; ssl_certificate_key %s; location /missing { return 404; } location /broken { return 502; }", cert, key))
	checkTLSServer(t, pid, port, 300, 0, "/index.html", "/missing", "/broken")
}

// Python's http.server wrapped in ssl (libssl through the _ssl module,
// loaded after the interpreter starts; SSL_read_ex/SSL_write_ex): one
// connection per request (HTTP/1.0).
func TestHTTPTLSPython(t *testing.T) {
	testenv.RequireBPF(t)
	py := "/root/.pyenv/versions/3.12.1/bin/python3"
	if _, err := os.Stat(py); err != nil {
		py = testenv.RequireTool(t, "python3")
	}
	dir := t.TempDir()
	cert, key := selfSigned(t, dir)
	os.WriteFile(filepath.Join(dir, "a.txt"), []byte("a"), 0o644)
	src := `import http.server, ssl, sys, functools
h = functools.partial(http.server.SimpleHTTPRequestHandler, directory=sys.argv[4])
h.log_message = lambda *a: None
s = http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), h)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(sys.argv[2], sys.argv[3])
s.socket = ctx.wrap_socket(s.socket, server_side=True)
s.serve_forever()
`
	os.WriteFile(filepath.Join(dir, "srv.py"), []byte(src), 0o644)
	port := freePort(t)
	pid := startServer(t, exec.Command(py, filepath.Join(dir, "srv.py"), fmt.Sprint(port), cert, key, dir), port)
	checkTLSServer(t, pid, port, 100, tls.VersionTLS12, "/a.txt", "/nothing/7")
}

// Node.js's https server: OpenSSL linked into the node executable, which
// exports SSL_read/SSL_write.
func TestHTTPTLSNode(t *testing.T) {
	testenv.RequireBPF(t)
	node := testenv.RequireTool(t, "node")
	dir := t.TempDir()
	cert, key := selfSigned(t, dir)
	js := `const https = require('https'), fs = require('fs');
https.createServer({cert: fs.readFileSync(process.argv[3]), key: fs.readFileSync(process.argv[4])}, (req, res) => {
  if (req.url.startsWith('/slow')) { setTimeout(() => res.end('slow'), 5); return; }
  if (req.url === '/fail') { res.statusCode = 500; res.end('boom'); return; }
  res.end('fast');
}).listen(Number(process.argv[2]), '127.0.0.1');
`
	os.WriteFile(filepath.Join(dir, "srv.js"), []byte(js), 0o644)
	port := freePort(t)
	pid := startServer(t, exec.Command(node, filepath.Join(dir, "srv.js"), fmt.Sprint(port), cert, key), port)
	checkTLSServer(t, pid, port, 300, 0, "/fast", "/slow/99", "/fail")
}

// TLS that no probe decodes (here Go's crypto/tls with --http-tls=false,
// standing for BoringSSL, Java or rustls) is not silently absent: the
// connections are counted, by process, and the report says so.
func TestHTTPTLSUndecodedCounted(t *testing.T) {
	testenv.RequireBPF(t)
	pid, port := startH2TLS(t)
	path := captureHTTPArgs(t, []int{pid}, []string{"--http-tls=false"}, func() { tlsLoad(t, port, 40, 2, 0, "/fast") })
	checkUndecoded(t, path, 2, "the client's two connections")
	h := openHTTP(t, path)
	if h.Requests != 0 || h.TLSUndecoded != 2 || !strings.Contains(h.TLSUndecodedBy, fmt.Sprintf("pid %d: 2", pid)) {
		t.Errorf("summary: %d requests, %d undecoded (%q)", h.Requests, h.TLSUndecoded, h.TLSUndecodedBy)
	}
}

// TLS on a listener that a process of another cgroup created and handed
// down (systemd's socket activation): the connections no probe decodes
// are counted for the process serving them, as on a listener of its own.
func TestHTTPTLSUndecodedOnHandedSocket(t *testing.T) {
	testenv.RequireBPF(t)
	cert, key := selfSigned(t, t.TempDir())
	ho := startHandoff(t, []string{"CERT=" + cert, "KEY=" + key})
	waitTLS(t, ho.port)
	path := captureHTTPArgs(t, []int{ho.childPID}, []string{"--http-tls=false"}, func() { tlsLoad(t, ho.port, 40, 2, 0, "/fast") })
	checkUndecoded(t, path, 2, "the client's two connections, on the handed-down listener")
}

// checkUndecoded checks the archive's count of TLS connections no probe
// decoded.
func checkUndecoded(t *testing.T, path string, want uint64, what string) {
	t.Helper()
	a, err := formats.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	if n := a.Manifest().Drops["http.tls_undecoded"]; n != want {
		t.Errorf("tls_undecoded = %d, want %d (%s); drops %v", n, want, what, a.Manifest().Drops)
	}
}
