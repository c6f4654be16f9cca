package httpparse

import "testing"

func TestParseRequest(t *testing.T) {
	cases := []struct {
		in     string
		method string
		target string
		cut    bool
		ok     bool
	}{
		{"GET /api/users/42?x=1 HTTP/1.1\r\nHost: a\r\n\r\n", "GET", "/api/users/42?x=1", false, true},
		{"POST /orders HTTP/1.0\r\n", "POST", "/orders", false, true},
		{"DELETE /very/long/path/that/was/cu", "DELETE", "/very/long/path/that/was/cu", true, true},
		{"GET  HTTP/1.1\r\n", "", "", false, false},
		{"GETX / HTTP/1.1\r\n", "", "", false, false},
		{"GET / SMTP/1.1\r\n", "", "", false, false},
		{"hello world", "", "", false, false},
	}
	for _, c := range cases {
		r, ok := ParseRequest([]byte(c.in))
		if ok != c.ok || (ok && (r.Method != c.method || r.Target != c.target || r.Cut != c.cut)) {
			t.Errorf("%q: got %+v %v", c.in, r, ok)
		}
	}
}

func TestParseStatusAndLength(t *testing.T) {
	if c, ok := ParseStatus([]byte("HTTP/1.1 503 Service Unavailable\r\n")); !ok || c != 503 {
		t.Errorf("got %d %v", c, ok)
	}
	if _, ok := ParseStatus([]byte("HTTP/1.1 5x3 nope\r\n")); ok {
		t.Errorf("bad status accepted")
	}
	if n := ContentLength([]byte("HTTP/1.1 200 OK\r\ncontent-LENGTH: 1234\r\n\r\nbody")); n != 1234 {
		t.Errorf("content length %d", n)
	}
	if n := ContentLength([]byte("HTTP/1.1 200 OK\r\nContent-Length: 12")); n != -1 {
		t.Errorf("a header cut by the capture must not be trusted: %d", n)
	}
}

func TestCleanTarget(t *testing.T) {
	cases := map[string]string{
		"/search?q=secret&token=abc": "/search",
		"/a#frag":                    "/a",
		"http://user:pw@shop.local:8080/cart?id=7": "http://shop.local:8080/cart",
		"*": "*",
	}
	for in, want := range cases {
		if got, _ := CleanTarget(in, false); got != want {
			t.Errorf("CleanTarget(%q) = %q, want %q", in, got, want)
		}
	}
	if got, _ := CleanTarget("/search?q=1", true); got != "/search?q=1" {
		t.Errorf("keepQuery: %q", got)
	}
	long := "/" + string(make([]byte, 300))
	if got, cut := CleanTarget(long, false); len(got) != MaxPath || !cut {
		t.Errorf("long path: %d %v", len(got), cut)
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte("GET /x HTTP/1.1\r\nContent-Length: 5\r\n\r\n"))
	f.Add([]byte("HTTP/1.1 200 OK\r\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		if r, ok := ParseRequest(b); ok {
			CleanTarget(r.Target, false)
		}
		ParseStatus(b)
		h := ScanHead(b)
		if h.Len > len(b) || h.ContentLength < -1 {
			t.Fatalf("ScanHead(%q) = %+v", b, h)
		}
		if n, ok := h.MessageLen(true); ok && n < int64(h.Len) {
			t.Fatalf("MessageLen %d shorter than the head %d", n, h.Len)
		}
	})
}

func TestMessageLen(t *testing.T) {
	for _, c := range []struct {
		in      string
		request bool
		n       int64
		ok      bool
	}{
		{"GET / HTTP/1.1\r\nHost: a\r\n\r\n", true, 27, true},
		{"GET / HTTP/1.1\r\nHost: a\r\n\r\nGET /b HTTP/1.1\r\n", true, 27, true},
		{"POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello", true, 43, true},
		{"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n", true, 0, false},
		{"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", false, 40, true},
		{"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nbody", false, 0, false},
		{"HTTP/1.1 200 OK\r\nContent-Len", false, 0, false},
	} {
		n, ok := MessageLen([]byte(c.in), c.request)
		if n != c.n || ok != c.ok {
			t.Errorf("MessageLen(%q) = %d, %v; want %d, %v", c.in, n, ok, c.n, c.ok)
		}
	}
}
