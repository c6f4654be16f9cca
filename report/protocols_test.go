package report

import (
	"bytes"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bpfsnap/bpfsnap/analyze"
	"github.com/bpfsnap/bpfsnap/formats"
)

// The HTTP section says each endpoint's protocol and whether it was read
// inside TLS, counts gRPC failures by grpc-status, and says how many TLS
// connections were not decoded and how many HTTP/2 calls have no name.
func TestHTTPProtocolsInReports(t *testing.T) {
	out := filepath.Join(t.TempDir(), "p.bpfsnap")
	const start = uint64(1_000_000_000)
	m := formats.Manifest{BpfsnapVersion: "test", Host: "h", Kernel: "k", Arch: "amd64",
		Window: formats.Window{StartWall: time.Unix(1000, 0).UTC(), StartMonoNs: start, EndMonoNs: start + 10e9}}
	w, err := formats.Create(out, m, formats.CreateOptions{SealInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	reqs := formats.NewTable[formats.HTTPRequest](w, formats.TableHTTPRequests)
	for i := uint64(0); i < 40; i++ {
		t0 := start + i*1e6
		rows := []formats.HTTPRequest{
			// A gRPC method whose every 4th call fails with UNAVAILABLE
			// (HTTP status 200 all the same).
			{Path: "/shop.Cart/Get2FAToken1234567890", Protocol: formats.ProtocolGRPC, TLS: true, Method: "POST", Status: 200, GRPCStatus: int32(map[bool]int{true: 14}[i%4 == 0])},
			{Path: "/api/items/42", Protocol: formats.ProtocolHTTP2, Method: "GET", Status: 200, GRPCStatus: -1},
			{Path: "/old", Protocol: formats.ProtocolHTTP1, Method: "GET", Status: 200, GRPCStatus: -1},
			{Path: formats.PathNameUnknown, Protocol: formats.ProtocolGRPC, Method: "POST", Status: 200, GRPCStatus: -1},
		}
		for _, r := range rows {
			r.RequestNs, r.ResponseNs, r.ResponseEndNs, r.PID, r.Role = t0, t0+1e5, t0+2e5, 7, formats.RoleServer
			if err := reqs.Write(r); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := w.Finish(func(m *formats.Manifest) {
		m.Drops["http.tls_undecoded"] = 3
		m.Drops["http.h2_name_unknown"] = 40
		m.Probes = append(m.Probes, formats.Probe{Name: "http", Attached: true, Details: map[string]string{"tls_undecoded": "pid 9: 3"}})
	}); err != nil {
		t.Fatal(err)
	}
	s, err := analyze.Load(out, analyze.Request{})
	if err != nil {
		t.Fatal(err)
	}
	byRoute := map[string]analyze.HTTPEndpoint{}
	for _, e := range s.HTTP.Endpoints {
		byRoute[e.Route] = e
	}
	g := byRoute["/shop.Cart/Get2FAToken1234567890"] // a gRPC method is not cut into {id}s
	if g.Errors != 10 || g.GRPCStatus["UNAVAILABLE"] != 10 || g.GRPCStatus["OK"] != 30 || !g.TLS {
		t.Errorf("gRPC endpoint: errors %d, grpc %v, tls %v", g.Errors, g.GRPCStatus, g.TLS)
	}
	if e := byRoute["/api/items/{id}"]; e.Count != 40 || e.Protocol != formats.ProtocolHTTP2 {
		t.Errorf("HTTP/2 endpoint: %+v", e)
	}
	var text bytes.Buffer
	WriteSummaryText(&text, s)
	for _, want := range []string{"[gRPC · TLS]", "[HTTP/2]", "3 TLS connections not decoded", "pid 9: 3", "40 HTTP/2 requests without a name"} {
		if !strings.Contains(text.String(), want) {
			t.Errorf("text lacks %q:\n%s", want, text.String())
		}
	}
	if strings.Contains(text.String(), "[HTTP/1.x]") {
		t.Errorf("plain HTTP/1.x endpoints are tagged:\n%s", text.String())
	}
	ha, err := BuildHTMLArchive(s)
	if err != nil {
		t.Fatal(err)
	}
	var page bytes.Buffer
	if err := WriteHTML(&page, []*HTMLArchive{ha}, HTMLOptions{Version: "test", Now: time.Unix(2000, 0)}); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"gRPC · TLS", "HTTP/1.x", "3 TLS connections not decoded", "UNAVAILABLE×10", "[h2 name unknown]"} {
		if !strings.Contains(page.String(), want) {
			t.Errorf("page lacks %q", want)
		}
	}
}
