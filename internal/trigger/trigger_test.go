package trigger

import (
	"strings"
	"testing"
	"time"

	"github.com/bpfsnap/bpfsnap/formats"
)

func TestParse(t *testing.T) {
	for _, c := range []struct {
		in   string
		want Spec
	}{
		{"http.p99>250ms", Spec{Kind: HTTPLatency, Quantile: 0.99, Threshold: 250}},
		{"http.p50>1.5s,route=/api/users/42", Spec{Kind: HTTPLatency, Quantile: 0.5, Threshold: 1500, Route: "/api/users/{id}"}},
		{"http.p999>20ms", Spec{Kind: HTTPLatency, Quantile: 0.999, Threshold: 20}},
		{"http.errors>5%,cooldown=30s,max=2", Spec{Kind: HTTPErrors, Threshold: 0.05, Cooldown: 30 * time.Second, Max: 2}},
		{"cpu>90%", Spec{Kind: CPU, Threshold: 0.9}},
		{"oom", Spec{Kind: OOM}},
	} {
		got, err := Parse(c.in)
		if err != nil {
			t.Errorf("Parse(%q): %v", c.in, err)
			continue
		}
		if c.want.Cooldown == 0 {
			c.want.Cooldown = DefaultCooldown
		}
		if c.want.Max == 0 {
			c.want.Max = DefaultMax
		}
		c.want.Text = c.in
		if got.Kind != c.want.Kind || got.Quantile != c.want.Quantile || got.Threshold != c.want.Threshold ||
			got.Route != c.want.Route || got.Cooldown != c.want.Cooldown || got.Max != c.want.Max || got.Text != c.want.Text {
			t.Errorf("Parse(%q) = %+v, want %+v", c.in, got, c.want)
		}
	}
	for _, bad := range []string{"", "http.p99", "http.p99>fast", "http.p0>1s", "http.errors>5", "cpu>190%",
		"oom,route=/x", "http.p99>1s,max=0", "http.p99>1s,color=red", "disk>1%"} {
		if _, err := Parse(bad); err == nil {
			t.Errorf("Parse(%q) accepted", bad)
		}
	}
}

func reqs(start float64, n int, ms float64, path string, status uint32) []formats.HTTPRequest {
	var out []formats.HTTPRequest
	for i := 0; i < n; i++ {
		at := uint64((start + float64(i)*0.01) * 1e9)
		out = append(out, formats.HTTPRequest{RequestNs: at, ResponseNs: at + 1000, ResponseEndNs: at + uint64(ms*1e6),
			PID: 7, Role: formats.RoleServer, Method: "GET", Path: path, Status: status})
	}
	return out
}

func mustParse(t *testing.T, s string) Spec {
	t.Helper()
	sp, err := Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return sp
}

// A p99 condition fires on the endpoint that breaks it, within the
// histogram's resolution, not before MinRequests, and then waits its
// cool-down; max bounds how often it fires.
func TestHTTPLatencyFires(t *testing.T) {
	e := New([]Spec{mustParse(t, "http.p99>250ms,route=/slow,cooldown=5s,max=2")}, 0)
	e.AddHTTP(reqs(100, 50, 10, "/fast", 200))
	e.AddHTTP(reqs(100, 10, 400, "/slow", 200))
	if f := e.Check(101e9); len(f) != 0 {
		t.Fatalf("fired on 10 requests: %+v", f)
	}
	e.AddHTTP(reqs(101, 15, 400, "/slow", 200))
	f := e.Check(102e9)
	if len(f) != 1 || !strings.Contains(f[0].Detail, "GET /slow") || !strings.Contains(f[0].Detail, "p99 40") {
		t.Fatalf("want the slow route at ~400 ms: %+v", f)
	}
	e.AddHTTP(reqs(102, 30, 400, "/slow", 200))
	if f := e.Check(104e9); len(f) != 0 {
		t.Errorf("fired within its cool-down: %+v", f)
	}
	if f := e.Check(108e9); len(f) != 1 {
		t.Errorf("did not fire again after the cool-down: %+v", f)
	}
	e.AddHTTP(reqs(108, 30, 400, "/slow", 200))
	if f := e.Check(115e9); len(f) != 0 {
		t.Errorf("fired a third time past max=2: %+v", f)
	}
	// Old data leaves the window: a fresh evaluator, slow requests long ago.
	e = New([]Spec{mustParse(t, "http.p90>100ms")}, 0)
	e.AddHTTP(reqs(100, 50, 400, "/a", 200))
	if f := e.Check(120e9); len(f) != 0 {
		t.Errorf("fired on requests 20 s old: %+v", f)
	}
}

func TestHTTPErrorsCPUAndOOM(t *testing.T) {
	e := New([]Spec{mustParse(t, "http.errors>5%"), mustParse(t, "cpu>90%"), mustParse(t, "oom")}, 99)
	e.AddHTTP(reqs(105, 90, 5, "/a", 200))
	e.AddHTTP(reqs(105.5, 10, 5, "/a", 503))
	var samples []formats.CPUSample
	for i := 0; i < 99*9; i++ { // 99 Hz for 9 of the 10 s: 90%, not above
		samples = append(samples, formats.CPUSample{TimeNs: uint64(101e9 + float64(i)*1e9/99), PID: 42, Comm: "burn"})
	}
	e.AddCPU(samples)
	f := e.Check(110.5e9)
	if len(f) != 1 || f[0].Spec.Kind != HTTPErrors || !strings.Contains(f[0].Detail, "10.0% 5xx") {
		t.Fatalf("want only the error condition: %+v", f)
	}
	more := []formats.CPUSample{}
	for i := 0; i < 60; i++ {
		more = append(more, formats.CPUSample{TimeNs: uint64(110e9 + float64(i)*1e7), PID: 42, Comm: "burn"})
	}
	e.AddCPU(more)
	e.AddOOM(43, "hog", 110e9)
	f = e.Check(110.9e9)
	if len(f) != 2 || f[0].Spec.Kind != CPU || !strings.Contains(f[0].Detail, "burn [42]") || f[1].Spec.Kind != OOM || !strings.Contains(f[1].Detail, "hog [43]") {
		t.Fatalf("want cpu and oom: %+v", f)
	}
}
