package analyze

import (
	"math"
	"path/filepath"
	"testing"
	"time"

	"github.com/bpfsnap/bpfsnap/formats"
)

// A 0.12 s burst of 2000 requests inside a 10 s window: the window rate is
// 200 req/s, the busy rate the ~16.7k req/s the burst ran at.
func TestHTTPBusyRate(t *testing.T) {
	out := filepath.Join(t.TempDir(), "a.bpfsnap")
	const start = uint64(1_000_000_000)
	m := formats.Manifest{BpfsnapVersion: "test", Host: "h", Kernel: "k", Arch: "amd64",
		Window: formats.Window{StartWall: time.Unix(1000, 0).UTC(), StartMonoNs: start, EndMonoNs: start + 10e9}}
	w, err := formats.Create(out, m, formats.CreateOptions{SealInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	reqs := formats.NewTable[formats.HTTPRequest](w, formats.TableHTTPRequests)
	const n = 2000
	burst := start + 3e9
	step := uint64(120e6) / n // requests start every 60 µs
	for i := uint64(0); i < n; i++ {
		// Each takes 50 µs, so the span ends 50 µs after the last start.
		r := formats.HTTPRequest{RequestNs: burst + i*step, ResponseNs: burst + i*step + 40e3, ResponseEndNs: burst + i*step + 50e3, PID: 7,
			Role: formats.RoleServer, Method: "GET", Path: "/burst", Status: 200}
		if err := reqs.Write(r); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Finish(nil); err != nil {
		t.Fatal(err)
	}
	a, err := formats.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	s, err := HTTP(a, Options{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Endpoints) != 1 {
		t.Fatalf("%d endpoints, want 1", len(s.Endpoints))
	}
	ep := s.Endpoints[0]
	span := float64((n-1)*step+50e3) / 1e6
	if math.Abs(ep.BusySpanMs-span) > 1e-6 {
		t.Errorf("busy_span_ms = %v, want %v", ep.BusySpanMs, span)
	}
	if want := n / (span / 1e3); math.Abs(ep.BusyRPS-want) > 1e-6*want {
		t.Errorf("busy_rps = %v, want %v", ep.BusyRPS, want)
	}
	if math.Abs(ep.RateRPS-200) > 1e-9 {
		t.Errorf("rate_rps = %v, want 200 (count over the window)", ep.RateRPS)
	}
}
