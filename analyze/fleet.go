package analyze

import (
	"errors"
	"fmt"
	"runtime"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bpfsnap/bpfsnap/formats"
)

// FleetSummary is the view over many archives (one per node, or per
// capture): each node's window and losses, every route's percentiles
// merged exactly over the requests of all nodes beside each node's own,
// and the CPU profile merged over the nodes. Made by Fleet.
type FleetSummary struct {
	// Nodes are the archives analyzed, those that lost data first.
	Nodes []FleetNode `json:"nodes"`
	// Skipped are archives left out: the selector (--pod, --namespace)
	// matches no process of theirs.
	Skipped []FleetSkip `json:"skipped,omitempty"`
	// Overlap is the span of wall time every node's window covers; nil
	// when the windows do not all overlap.
	Overlap *FleetOverlap `json:"overlap,omitempty"`
	// Routes are the endpoints of every node merged by process name,
	// role, method, protocol and route: servers' first (the service the
	// incident is about; a client's view mirrors it), then the highest
	// merged p99 first.
	Routes []FleetRoute `json:"routes"`
	// Slowest are the slowest requests of all nodes.
	Slowest []FleetExchange `json:"slowest"`
	// CPUSamples counts the samples of the merged profile.
	CPUSamples uint64 `json:"cpu_samples"`

	folded []FoldedStack
}

// Folded returns the CPU stacks of every node merged (same process name
// and frames add up), for the fleet's flame graph.
func (f *FleetSummary) Folded() []FoldedStack { return f.folded }

// FleetNode is one archive in the fleet view.
type FleetNode struct {
	// Index is the archive's position in the list the fleet was made
	// from (the report's archive sections are in that order).
	Index     int       `json:"index"`
	Archive   string    `json:"archive"`
	Host      string    `json:"host"`
	Start     time.Time `json:"start"`
	DurationS float64   `json:"duration_s"`
	// OffsetS is the window's start after the earliest node's start.
	OffsetS   float64 `json:"offset_s"`
	EndReason string  `json:"end_reason"`
	Complete  bool    `json:"complete"`
	// Lost and Incomplete sum the manifest's drop counters by class; the
	// largest lost counter is named in TopLoss.
	Lost       uint64 `json:"lost"`
	Incomplete uint64 `json:"incomplete"`
	TopLoss    string `json:"top_loss,omitempty"`
	Warnings   int    `json:"warnings"`
	Requests   int64  `json:"requests"`
	CPUSamples uint64 `json:"cpu_samples"`
	// Trigger names what made a flight recorder dump this archive.
	Trigger string `json:"trigger,omitempty"`
}

// FleetSkip is an archive left out of the fleet view, and why.
type FleetSkip struct {
	Archive string `json:"archive"`
	Reason  string `json:"reason"`
}

// FleetOverlap is the wall-clock span common to every node's window.
type FleetOverlap struct {
	Start     time.Time `json:"start"`
	DurationS float64   `json:"duration_s"`
}

// FleetRoute is one route over the fleet. The percentiles are exact, over
// every request of every node, with the nearest-rank definition of
// Quantile (as each archive's own figures).
type FleetRoute struct {
	Process  string `json:"process"`
	Role     string `json:"role"`
	Method   string `json:"method"`
	Protocol string `json:"protocol"`
	Route    string `json:"route"`
	// Measure is what the latencies measure (HTTPSummary.Measure); routes
	// of archives that measure differently are kept apart.
	Measure string  `json:"measure"`
	Count   int64   `json:"count"`
	Errors  int64   `json:"errors"`
	ErrPct  float64 `json:"err_pct"`
	P50     float64 `json:"p50_ms"`
	P90     float64 `json:"p90_ms"`
	P99     float64 `json:"p99_ms"`
	P999    float64 `json:"p999_ms"`
	Max     float64 `json:"max_ms"`
	Mean    float64 `json:"mean_ms"`
	TTFBP50 float64 `json:"ttfb_p50_ms"`
	TTFBP99 float64 `json:"ttfb_p99_ms"`
	// Nodes are the nodes that served the route, highest p99 first: the
	// first is the worst node. BestP99 is the lowest node p99.
	Nodes   []FleetRouteNode `json:"nodes"`
	BestP99 float64          `json:"best_p99_ms"`
}

// Worst returns the node with the highest p99 for the route.
func (r *FleetRoute) Worst() FleetRouteNode { return r.Nodes[0] }

// FleetRouteNode is one node's share of a route (its processes of that
// name merged).
type FleetRouteNode struct {
	Node   int     `json:"node"` // FleetNode.Index
	Host   string  `json:"host"`
	Count  int64   `json:"count"`
	Errors int64   `json:"errors"`
	P50    float64 `json:"p50_ms"`
	P99    float64 `json:"p99_ms"`
	Max    float64 `json:"max_ms"`
}

// FleetExchange is one of the fleet's slowest requests, with its node.
type FleetExchange struct {
	HTTPExchange
	Node int    `json:"node"`
	Host string `json:"host"`
}

// Fleet builds a FleetSummary from the summaries of many archives, added
// in any order and from several goroutines. It keeps each route's sorted
// latencies as the archives' analyses made them (no copy, no re-sort):
// merged percentiles are found by rank over the nodes' sorted lists.
type Fleet struct {
	mu      sync.Mutex
	nodes   []*FleetNode
	skipped []FleetSkip
	routes  map[fleetKey]*fleetRoute
	order   []fleetKey
	folded  map[string]*FoldedStack
	slowest []FleetExchange
	samples uint64
}

type fleetKey struct {
	process, role, method, protocol, route, measure string
}

type fleetRoute struct {
	nodes []*fleetRouteNode
}

// fleetRouteNode is a route on one node: the sorted latency and TTFB
// lists of its processes (one per pid serving it).
type fleetRouteNode struct {
	node          int
	host          string
	count, errors int64
	sum           float64
	lat, ttfb     [][]float64
}

// NewFleet prepares a fleet of n archives (indexes 0..n-1).
func NewFleet(n int) *Fleet {
	return &Fleet{nodes: make([]*FleetNode, n), routes: map[fleetKey]*fleetRoute{}, folded: map[string]*FoldedStack{}}
}

// Add takes archive i's summary. The fleet keeps references to its
// endpoints' latency lists, not the summary.
func (f *Fleet) Add(i int, s *Summary) {
	m := s.Manifest
	drops := m.DropsByClass()
	n := &FleetNode{Index: i, Archive: s.Archive, Host: m.Host, Start: m.Window.StartWall,
		DurationS: m.Window.Duration().Seconds(), EndReason: m.Window.EndReason, Complete: m.Complete,
		Lost: drops[formats.DropLost], Incomplete: drops[formats.DropIncomplete], Warnings: len(s.Warnings)}
	var top formats.DropCount
	for _, d := range m.SortedDrops() {
		if r, _ := formats.LookupDrop(d.Reason); r.Class == formats.DropLost && d.Count > top.Count {
			top = d
		}
	}
	if top.Count > 0 {
		n.TopLoss = fmt.Sprintf("%s: %d", top.Reason, top.Count)
	}
	if m.Dump != nil {
		n.Trigger = m.Dump.Trigger
	}
	// This node's routes, its processes of one name merged, made before
	// taking the lock.
	local := map[fleetKey]*fleetRouteNode{}
	var keys []fleetKey
	var slow []FleetExchange
	if h := s.HTTP; h != nil {
		n.Requests = h.Requests
		for ei := range h.Endpoints {
			e := &h.Endpoints[ei]
			k := fleetKey{e.Process, e.Role, e.Method, e.Protocol, e.Route, h.Measure}
			rn := local[k]
			if rn == nil {
				rn = &fleetRouteNode{node: i, host: m.Host}
				local[k] = rn
				keys = append(keys, k)
			}
			rn.count += e.Count
			rn.errors += e.Errors
			for _, v := range e.Latencies {
				rn.sum += v
			}
			rn.lat = append(rn.lat, e.Latencies)
			rn.ttfb = append(rn.ttfb, e.ttfb)
		}
		for _, x := range h.Slowest {
			slow = append(slow, FleetExchange{HTTPExchange: x, Node: i, Host: m.Host})
		}
	}
	var folded []FoldedStack
	if p := s.CPUProfile(); p != nil && p.Samples > 0 {
		n.CPUSamples = uint64(p.Samples)
		folded = p.Folded(FoldOptions{})
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.nodes[i] = n
	for _, k := range keys {
		r := f.routes[k]
		if r == nil {
			r = &fleetRoute{}
			f.routes[k] = r
			f.order = append(f.order, k)
		}
		r.nodes = append(r.nodes, local[k])
	}
	f.slowest = topFleetSlowest(append(f.slowest, slow...))
	for _, st := range folded {
		key := strings.Join(st.Frames, "\x00")
		if have := f.folded[key]; have != nil {
			have.Count += st.Count
			continue
		}
		c := st
		f.folded[key] = &c
	}
	f.samples += n.CPUSamples
}

// Skip records that archive i was left out, and why.
func (f *Fleet) Skip(i int, archive string, reason error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.skipped = append(f.skipped, FleetSkip{Archive: archive, Reason: reason.Error()})
}

// Summary computes the fleet view of everything added.
func (f *Fleet) Summary() *FleetSummary {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := &FleetSummary{Skipped: f.skipped, Slowest: f.slowest, CPUSamples: f.samples}
	var first time.Time
	var overlapStart, overlapEnd time.Time
	for _, n := range f.nodes {
		if n == nil {
			continue
		}
		end := n.Start.Add(time.Duration(n.DurationS * 1e9))
		if len(out.Nodes) == 0 || n.Start.Before(first) {
			first = n.Start
		}
		if len(out.Nodes) == 0 || n.Start.After(overlapStart) {
			overlapStart = n.Start
		}
		if len(out.Nodes) == 0 || end.Before(overlapEnd) {
			overlapEnd = end
		}
		out.Nodes = append(out.Nodes, *n)
	}
	for i := range out.Nodes {
		out.Nodes[i].OffsetS = out.Nodes[i].Start.Sub(first).Seconds()
	}
	if len(out.Nodes) > 0 && overlapEnd.After(overlapStart) {
		out.Overlap = &FleetOverlap{Start: overlapStart, DurationS: overlapEnd.Sub(overlapStart).Seconds()}
	}
	// Lost data first, then incomplete rows, then in the order given.
	sort.SliceStable(out.Nodes, func(i, j int) bool {
		a, b := out.Nodes[i], out.Nodes[j]
		if a.Lost != b.Lost {
			return a.Lost > b.Lost
		}
		return a.Incomplete > b.Incomplete
	})
	for _, k := range f.order {
		out.Routes = append(out.Routes, f.routes[k].summarize(k))
	}
	sort.SliceStable(out.Routes, func(i, j int) bool {
		a, b := out.Routes[i], out.Routes[j]
		if (a.Role == formats.RoleServer) != (b.Role == formats.RoleServer) {
			return a.Role == formats.RoleServer
		}
		if a.P99 != b.P99 {
			return a.P99 > b.P99
		}
		if a.Count != b.Count {
			return a.Count > b.Count
		}
		return a.Route < b.Route
	})
	keys := make([]string, 0, len(f.folded))
	for k := range f.folded {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		out.folded = append(out.folded, *f.folded[k])
	}
	return out
}

func (r *fleetRoute) summarize(k fleetKey) FleetRoute {
	out := FleetRoute{Process: k.process, Role: k.role, Method: k.method, Protocol: k.protocol, Route: k.route, Measure: k.measure}
	var lat, ttfb [][]float64
	var sum float64
	for _, rn := range r.nodes {
		out.Count += rn.count
		out.Errors += rn.errors
		sum += rn.sum
		lat = append(lat, rn.lat...)
		ttfb = append(ttfb, rn.ttfb...)
		nv := FleetRouteNode{Node: rn.node, Host: rn.host, Count: rn.count, Errors: rn.errors,
			P50: QuantileOfSorted(rn.lat, 0.50), P99: QuantileOfSorted(rn.lat, 0.99), Max: maxOfSorted(rn.lat)}
		out.Nodes = append(out.Nodes, nv)
	}
	if out.Count > 0 {
		out.ErrPct = 100 * float64(out.Errors) / float64(out.Count)
	}
	out.P50, out.P90 = QuantileOfSorted(lat, 0.50), QuantileOfSorted(lat, 0.90)
	out.P99, out.P999 = QuantileOfSorted(lat, 0.99), QuantileOfSorted(lat, 0.999)
	out.TTFBP50, out.TTFBP99 = QuantileOfSorted(ttfb, 0.50), QuantileOfSorted(ttfb, 0.99)
	out.Max = maxOfSorted(lat)
	if n := totalLen(lat); n > 0 {
		out.Mean = sum / float64(n)
	}
	sort.SliceStable(out.Nodes, func(i, j int) bool {
		a, b := out.Nodes[i], out.Nodes[j]
		if a.P99 != b.P99 {
			return a.P99 > b.P99
		}
		return a.Node < b.Node
	})
	out.BestP99 = out.Nodes[len(out.Nodes)-1].P99
	return out
}

// QuantileOfSorted is Quantile over the union of sorted lists, without
// merging them: the value of the union's nearest rank is found by binary
// searches (for each list, the first element whose count of values at or
// below it passes the rank; it is the answer when fewer values lie below
// it). Exact, and O(k² log² n) for k lists: no copy of the values.
func QuantileOfSorted(lists [][]float64, q float64) float64 {
	n := totalLen(lists)
	if n == 0 {
		return 0
	}
	return kthOfSorted(lists, quantileRank(n, q))
}

// kthOfSorted returns the element of 0-based rank k of the union of
// sorted lists (k < their total length).
func kthOfSorted(lists [][]float64, k int) float64 {
	atOrBelow := func(x float64) (le, lt int) {
		for _, l := range lists {
			le += sort.Search(len(l), func(i int) bool { return l[i] > x })
			lt += sort.Search(len(l), func(i int) bool { return l[i] >= x })
		}
		return le, lt
	}
	for _, l := range lists {
		j := sort.Search(len(l), func(i int) bool { le, _ := atOrBelow(l[i]); return le > k })
		if j == len(l) {
			continue
		}
		if _, lt := atOrBelow(l[j]); lt <= k {
			return l[j]
		}
	}
	panic("kthOfSorted: rank out of range or unsorted list")
}

func totalLen(lists [][]float64) int {
	n := 0
	for _, l := range lists {
		n += len(l)
	}
	return n
}

func maxOfSorted(lists [][]float64) float64 {
	m := 0.0
	for _, l := range lists {
		if len(l) > 0 && l[len(l)-1] > m {
			m = l[len(l)-1]
		}
	}
	return m
}

func topFleetSlowest(x []FleetExchange) []FleetExchange {
	sort.SliceStable(x, func(i, j int) bool { return x[i].LatencyMs > x[j].LatencyMs })
	if len(x) > maxSlowest {
		x = x[:maxSlowest]
	}
	return x
}

// LoadEach is the reading path of a verb over many archives: Load on
// every path, up to workers at once (GOMAXPROCS when 0), each result
// handed to fn (from several goroutines; i is the path's index). At most
// workers analyses are in memory at a time, besides what fn keeps. fn
// decides what a failed Load means: its error stops the work (no new
// archive is started) and is returned.
func LoadEach(paths []string, r Request, workers int, fn func(i int, s *Summary, err error) error) error {
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	workers = min(workers, len(paths))
	var (
		next    atomic.Int64
		stopped atomic.Bool
		errOnce sync.Once
		first   error
		wg      sync.WaitGroup
	)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stopped.Load() {
				i := int(next.Add(1) - 1)
				if i >= len(paths) {
					return
				}
				s, err := Load(paths[i], r)
				if err != nil && !strings.Contains(err.Error(), paths[i]) {
					err = fmt.Errorf("%s: %w", paths[i], err)
				}
				if err := fn(i, s, err); err != nil {
					stopped.Store(true)
					errOnce.Do(func() { first = err })
				}
			}
		}()
	}
	wg.Wait()
	return first
}

// NoMatchError is returned when a Kubernetes selector matches no process
// of an archive: for one archive a typo, for a fleet the many nodes the pod
// does not run on.
type NoMatchError struct{ Namespace, Pod string }

func (e *NoMatchError) Error() string {
	return fmt.Sprintf("no process in the archive belongs to namespace %q pod %q", e.Namespace, e.Pod)
}

// IsNoMatch reports whether err says a selector matched nothing.
func IsNoMatch(err error) bool {
	var nm *NoMatchError
	return errors.As(err, &nm)
}
