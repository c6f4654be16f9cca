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
	})
}
