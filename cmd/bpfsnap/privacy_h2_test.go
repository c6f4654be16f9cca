//go:build linux

package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/spf13/pflag"

	"github.com/bpfsnap/bpfsnap/capture"
	"github.com/bpfsnap/bpfsnap/internal/testenv"
)

// The same secrets over HTTP/2 (h2c) and over TLS (HTTP/1.1 and HTTP/2):
// the HPACK blocks and the TLS plaintext reach the recorder, but no header
// value other than :method, :path, :status, content-type and grpc-status
// reaches the archive or analyze's output, and query strings only with
// --keep-query.
func TestPrivacyHTTP2AndTLS(t *testing.T) {
	testenv.RequireBPF(t)
	bin := bpfsnapBin(t)
	dir := t.TempDir()
	srv := filepath.Join(dir, "srv")
	if out, err := exec.Command("go", "build", "-o", srv, "../../testdata/h2tls").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v: %s", err, out)
	}
	cert, key := filepath.Join(dir, "c.pem"), filepath.Join(dir, "k.pem")
	if out, err := exec.Command("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
		"-keyout", key, "-out", cert, "-days", "1", "-subj", "/CN=bpfsnap", "-addext", "subjectAltName=IP:127.0.0.1").CombinedOutput(); err != nil {
		t.Fatalf("openssl: %v: %s", err, out)
	}
	plainAddr, tlsAddr := freeAddr(t), freeAddr(t)
	cmd := exec.Command(srv, "-listen", plainAddr, "-tls-listen", tlsAddr, "-cert", cert, "-key", key)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	for _, a := range []string{plainAddr, tlsAddr} {
		for i := 0; ; i++ {
			if c, err := net.Dial("tcp", a); err == nil {
				c.Close()
				break
			}
			if i == 200 {
				t.Fatalf("server on %s not listening", a)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	h2c := &http.Client{Transport: &http.Transport{Protocols: protocols(false)}}
	h2tls := &http.Client{Transport: &http.Transport{Protocols: protocols(true), TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	h1tls := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, TLSNextProto: map[string]func(string, *tls.Conn) http.RoundTripper{}}}
	send := func() {
		for i, c := range []struct {
			client *http.Client
			base   string
			proto  int
		}{{h2c, "http://" + plainAddr, 2}, {h2tls, "https://" + tlsAddr, 2}, {h1tls, "https://" + tlsAddr, 1}} {
			for j := 0; j < 4; j++ {
				// Secrets in the request target and in headers.
				req, _ := http.NewRequest("GET", fmt.Sprintf("%s/priv/h%d/%d?token=SECRETQUERY1", c.base, i, j), nil)
				req.Header.Set("Authorization", "Bearer SECRETAUTH2")
				req.Header.Set("Cookie", "session=SECRETCOOKIE3")
				req.Header.Set("X-Api-Key", "SECRETHEADER10")
				resp, err := c.client.Do(req)
				if err != nil {
					t.Fatalf("%s: %v", c.base, err)
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.ProtoMajor != c.proto {
					t.Fatalf("%s: HTTP/%d, want HTTP/%d", c.base, resp.ProtoMajor, c.proto)
				}
			}
		}
	}
	for _, keep := range []bool{false, true} {
		var extra []string
		if keep {
			extra = []string{"--keep-query"}
		}
		arc := captureWhile(t, filepath.Join(dir, fmt.Sprintf("p%v.bpfsnap", keep)), cmd.Process.Pid, extra, send)
		texts := archiveStrings(t, arc)
		js, err := exec.Command(bin, "analyze", "--json", arc).Output()
		if err != nil {
			t.Fatal(err)
		}
		texts = append(texts, string(js))
		for i := 0; i < 3; i++ {
			if p := fmt.Sprintf("/priv/h%d/", i); !containsAny(texts, p) {
				t.Errorf("keep=%v: %s not in the archive: the search would prove nothing", keep, p)
			}
		}
		for _, s := range []string{"SECRETAUTH2", "SECRETCOOKIE3", "SECRETHEADER10"} {
			if containsAny(texts, s) {
				t.Errorf("keep=%v: %s reached the archive or analyze's output", keep, s)
			}
		}
		if containsAny(texts, "SECRETQUERY1") != keep {
			t.Errorf("keep=%v: query string in the archive: %v", keep, !keep)
		}
	}
}

func protocols(tlsOn bool) *http.Protocols {
	p := new(http.Protocols)
	if tlsOn {
		p.SetHTTP2(true)
	} else {
		p.SetUnencryptedHTTP2(true)
	}
	return p
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// captureWhile captures the http probe set of pid while load runs.
func captureWhile(t *testing.T, out string, pid int, extra []string, load func()) string {
	t.Helper()
	sets := capture.NewProbeSets()
	flags := pflag.NewFlagSet("capture", pflag.ContinueOnError)
	for _, ps := range sets {
		ps.BindFlags(flags)
	}
	if err := flags.Parse(extra); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		_, err := capture.Run(ctx, capture.Options{Output: out, Duration: 2 * time.Minute, Probes: []string{"http"}, Sets: sets,
			PIDs: []uint32{uint32(pid)}, Version: "test", Ready: func() { close(ready) }})
		done <- err
	}()
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("capture ended before it was ready: %v", err)
	}
	load()
	time.Sleep(300 * time.Millisecond)
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	return out
}
