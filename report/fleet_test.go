package report

import (
	"testing"

	"github.com/bpfsnap/bpfsnap/analyze"
)

// Two archives of one host (two captures, or a flight recorder's dumps)
// are told apart by archive in the fleet's route and request tables; a
// host of its own keeps its name; the summary given is not changed.
func TestFleetViewNamesArchivesOfOneHost(t *testing.T) {
	f := &analyze.FleetSummary{
		Nodes: []analyze.FleetNode{{Index: 0, Host: "vm", Archive: "/x/a.bpfsnap"}, {Index: 1, Host: "vm", Archive: "/x/b.bpfsnap"},
			{Index: 2, Host: "node-c", Archive: "/x/c.bpfsnap"}},
		Routes: []analyze.FleetRoute{{Process: "shop", Role: "server", Method: "GET", Route: "/api/x", Count: 3, P99: 5,
			Nodes: []analyze.FleetRouteNode{{Node: 1, Host: "vm", Count: 1, P99: 9}, {Node: 2, Host: "node-c", Count: 1, P99: 5}, {Node: 0, Host: "vm", Count: 1, P99: 3}}}},
		Slowest: []analyze.FleetExchange{{Node: 0, Host: "vm"}},
	}
	v, err := buildFleetView(f, nil)
	if err != nil {
		t.Fatal(err)
	}
	r := v.Routes[0]
	if r.Worst.Host != "vm (b.bpfsnap)" || r.Nodes[1].Host != "node-c" || r.Nodes[2].Host != "vm (a.bpfsnap)" {
		t.Errorf("route nodes: %+v", r.Nodes)
	}
	if v.Slowest[0].Host != "vm (a.bpfsnap)" {
		t.Errorf("slowest request's node: %q", v.Slowest[0].Host)
	}
	if v.Hosts != 2 {
		t.Errorf("%d hosts, want 2", v.Hosts)
	}
	if f.Routes[0].Nodes[0].Host != "vm" || f.Slowest[0].Host != "vm" {
		t.Error("the fleet summary was changed")
	}
}
