package analyze

import (
	"math/rand/v2"
	"sort"
	"testing"
	"time"

	"github.com/bpfsnap/bpfsnap/formats"
	"github.com/bpfsnap/bpfsnap/internal/fleetfixture"
)

// The rank search over sorted lists gives exactly Quantile of their
// concatenation, sorted: with ties inside and across lists, empty lists,
// single values, and every rank of small unions.
func TestQuantileOfSortedEqualsMergedQuantile(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	qs := []float64{0, 0.001, 0.25, 0.5, 0.9, 0.99, 0.999, 1}
	for round := 0; round < 400; round++ {
		var lists [][]float64
		var all []float64
		for range rng.IntN(6) + 1 {
			n := rng.IntN(40)
			if rng.IntN(5) == 0 {
				n = 0
			}
			l := make([]float64, n)
			for i := range l {
				if round%2 == 0 {
					l[i] = float64(rng.IntN(7)) // many ties
				} else {
					l[i] = rng.ExpFloat64() * 10
				}
			}
			sort.Float64s(l)
			lists = append(lists, l)
			all = append(all, l...)
		}
		sort.Float64s(all)
		for _, q := range qs {
			if got, want := QuantileOfSorted(lists, q), Quantile(all, q); got != want {
				t.Fatalf("round %d q %v: %v, want %v (lists %v)", round, q, got, want, lists)
			}
		}
		for k := range all {
			if got := kthOfSorted(lists, k); got != all[k] {
				t.Fatalf("rank %d: %v, want %v", k, got, all[k])
			}
		}
	}
	if QuantileOfSorted(nil, 0.5) != 0 || QuantileOfSorted([][]float64{{}, {}}, 0.99) != 0 {
		t.Fatal("no values should give 0, as Quantile does")
	}
}

// A fleet of archives loaded concurrently: every route's merged figures
// equal those of all its requests' latencies (read from the archives'
// rows, not from the analysis), each node's p99 its own, the worst node
// named, nodes with lost data first, and the CPU profile the sum of the
// nodes'.
func TestFleetMergesRoutesExactly(t *testing.T) {
	dir := t.TempDir()
	start := time.Date(2026, 12, 7, 9, 30, 0, 0, time.UTC)
	var paths []string
	for i := range 4 {
		n := fleetfixture.Node{Host: "node-" + string(rune('a'+i)), Seed: uint64(i + 1), Start: start.Add(time.Duration(i) * 300 * time.Millisecond),
			Window: 6 * time.Second, RequestsPerSec: 800}
		if i == 2 {
			n.SlowRoute, n.SlowFactor = "/api/search", 10
			n.Drops = map[string]uint64{"http.ringbuf_full": 77}
		}
		p, err := fleetfixture.Write(dir, n)
		if err != nil {
			t.Fatal(err)
		}
		paths = append(paths, p)
	}
	f := NewFleet(len(paths))
	err := LoadEach(paths, Request{}, 3, func(i int, s *Summary, err error) error {
		if err == nil {
			f.Add(i, s)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	fs := f.Summary()
	if len(fs.Nodes) != 4 || fs.Nodes[0].Host != "node-c" || fs.Nodes[0].Lost != 77 || fs.Nodes[0].TopLoss != "http.ringbuf_full: 77" {
		t.Fatalf("nodes, lost data first: %+v", fs.Nodes)
	}
	if fs.Overlap == nil || fs.Overlap.DurationS < 5.0 || fs.Overlap.DurationS > 5.2 {
		t.Fatalf("overlap of windows starting 0.3 s apart: %+v", fs.Overlap)
	}

	// Every latency, per route key, from the rows themselves.
	type key struct{ process, role, method, route string }
	want := map[key][]float64{}
	perNode := map[key]map[string][]float64{}
	for _, p := range paths {
		a, err := formats.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		procs, err := Processes(a)
		if err != nil {
			t.Fatal(err)
		}
		comm := processNames(procs)
		rows, err := formats.ReadAll[formats.HTTPRequest](a, formats.TableHTTPRequests)
		if err != nil {
			t.Fatal(err)
		}
		host := a.Manifest().Host
		a.Close()
		for _, r := range rows {
			if r.ResponseNs == 0 || r.ResponseEndNs == 0 {
				continue
			}
			k := key{comm[r.PID], r.Role, r.Method, NormalizeRoute(r.Path)}
			ms := float64(r.ResponseEndNs-r.RequestNs) / 1e6
			want[k] = append(want[k], ms)
			if perNode[k] == nil {
				perNode[k] = map[string][]float64{}
			}
			perNode[k][host] = append(perNode[k][host], ms)
		}
	}
	if len(fs.Routes) != len(want) {
		t.Fatalf("%d fleet routes, %d route keys in the rows", len(fs.Routes), len(want))
	}
	for _, r := range fs.Routes {
		k := key{r.Process, r.Role, r.Method, r.Route}
		all := want[k]
		sort.Float64s(all)
		if int(r.Count) < len(all) || r.P50 != Quantile(all, 0.5) || r.P90 != Quantile(all, 0.9) || r.P99 != Quantile(all, 0.99) ||
			r.P999 != Quantile(all, 0.999) || r.Max != all[len(all)-1] {
			t.Fatalf("%+v: merged figures differ from the rows' (%d latencies, p99 %v)", k, len(all), Quantile(all, 0.99))
		}
		for _, n := range r.Nodes {
			l := perNode[k][n.Host]
			sort.Float64s(l)
			if n.P99 != Quantile(l, 0.99) || n.P50 != Quantile(l, 0.5) {
				t.Fatalf("%+v on %s: p99 %v, want %v", k, n.Host, n.P99, Quantile(l, 0.99))
			}
		}
		if r.Worst().P99 < r.BestP99 {
			t.Fatalf("worst node first: %+v", r.Nodes)
		}
		if k.process == "shop-api" && k.route == "/api/search" && k.role == "server" && r.Worst().Host != "node-c" {
			t.Fatalf("the slow node is not the worst for %s: %+v", k.route, r.Nodes)
		}
	}
	var nodeSamples uint64
	for _, n := range fs.Nodes {
		nodeSamples += n.CPUSamples
	}
	var folded uint64
	for _, st := range fs.Folded() {
		folded += st.Count
	}
	if nodeSamples == 0 || folded != nodeSamples || fs.CPUSamples != nodeSamples {
		t.Fatalf("merged profile holds %d samples, nodes %d", folded, nodeSamples)
	}
}
