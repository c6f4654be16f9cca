package analyze

import (
	"bytes"
	"fmt"
	"math"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bpfsnap/bpfsnap/formats"
	"github.com/bpfsnap/bpfsnap/internal/offcpufixture"
)

// diffFixture builds a small archive with processes, HTTP requests and CPU
// samples over a 10 s window, for the comparison tests.
type diffFixture struct {
	host    string
	procs   []formats.ProcessEvent
	reqs    []formats.HTTPRequest
	samples []formats.CPUSample
	stacks  []formats.Stack
	frames  map[string]uint64
}

const (
	fixStart = uint64(1_000_000_000)
	fixSpan  = 10 * time.Second
)

func newDiffFixture(host string) *diffFixture {
	return &diffFixture{host: host, frames: map[string]uint64{}}
}

func (f *diffFixture) proc(pid uint32, comm, ns, pod string) {
	f.procs = append(f.procs, formats.ProcessEvent{TimeNs: fixStart, Kind: formats.ProcessScan, PID: pid, Comm: comm, Namespace: ns, Pod: pod})
}

// serve adds one request per latency (ms), spread over [from, from+span)
// of the window.
func (f *diffFixture) serve(pid uint32, route string, latencies []float64, from, span time.Duration) {
	for i, ms := range latencies {
		t := fixStart + uint64(from) + uint64(span)*uint64(i)/uint64(len(latencies))
		// The first byte 0.1 ms after the request, the last after ms.
		f.reqs = append(f.reqs, formats.HTTPRequest{RequestNs: t, ResponseNs: t + 100e3, ResponseEndNs: t + uint64(ms*1e6), PID: pid,
			Role: formats.RoleServer, Method: "GET", Path: route, Status: 200})
	}
}

// cpu adds n samples of pid in stack (root first) over [from, from+span).
func (f *diffFixture) cpu(pid uint32, n int, from, span time.Duration, stack ...string) {
	ids := make([]uint64, len(stack))
	for i, name := range stack {
		id, ok := f.frames[name]
		if !ok {
			id = uint64(len(f.frames) + 1)
			f.frames[name] = id
		}
		ids[len(stack)-1-i] = id // stored leaf first
	}
	sid := uint64(len(f.stacks) + 1)
	f.stacks = append(f.stacks, formats.Stack{StackID: sid, PID: pid, FrameIDs: ids})
	for i := 0; i < n; i++ {
		f.samples = append(f.samples, formats.CPUSample{TimeNs: fixStart + uint64(from) + uint64(span)*uint64(i)/uint64(n), PID: pid, StackID: sid})
	}
}

func (f *diffFixture) write(t *testing.T) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), f.host+".bpfsnap")
	m := formats.Manifest{BpfsnapVersion: "test", Host: f.host, Kernel: "k", Arch: "amd64",
		Window: formats.Window{StartWall: time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC), StartMonoNs: fixStart, EndMonoNs: fixStart + uint64(fixSpan)},
		Probes: []formats.Probe{{Name: "cpu", Attached: true, Details: map[string]string{"freq": "100"}}}}
	w, err := formats.Create(out, m, formats.CreateOptions{SealInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	var frames []formats.Frame
	for name, id := range f.frames {
		frames = append(frames, formats.Frame{FrameID: id, Module: "/bin/svc", Function: name})
	}
	check := func(err error) {
		if err != nil {
			w.Abort()
			t.Fatal(err)
		}
	}
	check(formats.NewTable[formats.ProcessEvent](w, formats.TableProcesses).Write(f.procs...))
	if len(f.reqs) > 0 {
		check(formats.NewTable[formats.HTTPRequest](w, formats.TableHTTPRequests).Write(f.reqs...))
	}
	if len(f.samples) > 0 {
		check(formats.NewTable[formats.CPUSample](w, formats.TableCPUSamples).Write(f.samples...))
		check(formats.NewTable[formats.Stack](w, formats.TableStacks).Write(f.stacks...))
		check(formats.NewTable[formats.Frame](w, formats.TableFrames).Write(frames...))
	}
	check(w.Finish(nil))
	return out
}

// ramp returns n latencies from+1 … from+n ms.
func ramp(from float64, n int) []float64 {
	out := make([]float64, n)
	for i := range out {
		out[i] = from + float64(i+1)
	}
	return out
}

func same(v float64, n int) []float64 {
	out := make([]float64, n)
	for i := range out {
		out[i] = v
	}
	return out
}

func near(a, b float64) bool { return math.Abs(a-b) < 1e-9 }

// Two services of one name, two workers each, on two hosts with other
// pids: endpoints match by name, the workers' requests merge with exact
// percentiles, and the ranking is p99 added × request rate.
func TestCompareHTTP(t *testing.T) {
	base, cur := newDiffFixture("node-a"), newDiffFixture("node-b")
	base.proc(100, "svc", "", "")
	base.proc(101, "svc", "", "")
	cur.proc(200, "svc", "", "")
	cur.proc(201, "svc", "", "")
	// /orders: 1…100 ms split over the two workers (p99s 50 and 100 on
	// their own, 99 merged); NEW 31…130 ms.
	base.serve(100, "/orders", ramp(0, 50), 0, fixSpan)
	base.serve(101, "/orders", ramp(50, 50), 0, fixSpan)
	cur.serve(200, "/orders", ramp(30, 50), 0, fixSpan)
	cur.serve(201, "/orders", ramp(80, 50), 0, fixSpan)
	// /items: 2 → 3 ms at 10 req/s; /old only in BASE; /users/{id} only in NEW.
	base.serve(100, "/items", same(2, 100), 0, fixSpan)
	cur.serve(200, "/items", same(3, 100), 0, fixSpan)
	base.serve(101, "/old", same(5, 20), 0, fixSpan)
	cur.serve(201, "/users/42", same(1, 10), 0, fixSpan)
	d, err := LoadDiff(base.write(t), Request{}, cur.write(t), Request{})
	if err != nil {
		t.Fatal(err)
	}
	if d.Base.Host != "node-a" || d.New.Host != "node-b" || d.Base.DurationS != 10 || d.CPU != nil || d.Mem != nil {
		t.Errorf("sides %+v %+v, cpu %v mem %v", d.Base, d.New, d.CPU, d.Mem)
	}
	var order []string
	for _, e := range d.HTTP.Endpoints {
		order = append(order, e.Route)
	}
	if got := strings.Join(order, " "); got != "/orders /items /users/{id} /old" {
		t.Fatalf("order %s, want by p99 added × rate: /orders /items /users/{id} /old", got)
	}
	o := d.HTTP.Endpoints[0]
	if o.Process != "svc" || o.Role != "server" || o.Method != "GET" || o.Workload != "" {
		t.Errorf("identity %+v", o)
	}
	if o.Base.Count != 100 || !near(o.Base.P99, 99) || !near(o.New.P99, 129) || !near(o.Base.P50, 50) || !near(o.Base.Max, 100) {
		t.Errorf("merged sides: base %+v new %+v", o.Base, o.New)
	}
	if !near(o.Change.P99, 30) || !near(o.Base.RateRPS, 10) || !near(o.Impact, 300) || !near(o.Change.P99Ratio, 129.0/99) {
		t.Errorf("change %+v impact %v", o.Change, o.Impact)
	}
	if got := fmt.Sprint(o.Base.PIDs, o.New.PIDs); got != "[100 101] [200 201]" {
		t.Errorf("pids %s", got)
	}
	items := d.HTTP.Endpoints[1]
	if !near(items.Impact, 10) || !near(items.Change.P50, 1) {
		t.Errorf("/items %+v", items)
	}
	added, gone := d.HTTP.Endpoints[2], d.HTTP.Endpoints[3]
	if added.Base != nil || added.Change != nil || !near(added.Impact, 1*1) {
		t.Errorf("/users/{id} only in NEW: %+v", added)
	}
	if gone.New != nil || gone.Change != nil || !near(gone.Impact, -5*2) {
		t.Errorf("/old only in BASE: %+v", gone)
	}
	if d.HTTP.BaseRequests != 220 || d.HTTP.NewRequests != 210 || !near(d.HTTP.BaseRateRPS, 22) {
		t.Errorf("totals %+v", d.HTTP)
	}
	if k := d.HTTP.Find(o.Key()); k != &d.HTTP.Endpoints[0] {
		t.Errorf("Find(%v) = %p", o.Key(), k)
	}
}

// Pods of one Deployment on two nodes are one workload.
func TestCompareHTTPByWorkload(t *testing.T) {
	base, cur := newDiffFixture("node-a"), newDiffFixture("node-b")
	base.proc(100, "api", "shop", "api-7d9f8b6c5d-xk2p9")
	cur.proc(200, "api", "shop", "api-5c4b9d8f7-q7w2z")
	cur.proc(201, "api", "staging", "api-5c4b9d8f7-q7w2z")
	base.serve(100, "/x", same(1, 10), 0, fixSpan)
	cur.serve(200, "/x", same(2, 10), 0, fixSpan)
	cur.serve(201, "/x", same(9, 10), 0, fixSpan)
	d, err := LoadDiff(base.write(t), Request{}, cur.write(t), Request{})
	if err != nil {
		t.Fatal(err)
	}
	if len(d.HTTP.Endpoints) != 2 {
		t.Fatalf("%d endpoints, want shop/api matched and staging/api apart", len(d.HTTP.Endpoints))
	}
	for _, e := range d.HTTP.Endpoints {
		switch e.Workload {
		case "shop/api":
			if e.Base == nil || e.New == nil || !near(e.Change.P99, 1) || e.New.Pods[0] != "shop/api-5c4b9d8f7-q7w2z" {
				t.Errorf("shop/api: %+v", e)
			}
		case "staging/api":
			if e.Base != nil {
				t.Errorf("staging/api matched the baseline's shop pod: %+v", e)
			}
		default:
			t.Errorf("workload %q", e.Workload)
		}
	}
}

func TestWorkloadOf(t *testing.T) {
	for in, want := range map[string]string{
		"shop/api-7d9f8b6c5d-xk2p9":       "shop/api",                  // Deployment pod
		"kube-system/node-exporter-x7k2q": "kube-system/node-exporter", // DaemonSet pod
		"shop/web-0":                      "shop/web-0",                // StatefulSet: the ordinal is the identity
		"shop/web-login":                  "shop/web-login",            // vowels: not generated
		"shop/cache":                      "shop/cache",
		"shop/api-7d9f8b6c5d":             "shop/api-7d9f8b6c5d", // no pod suffix
		"ns-bcdfg/x":                      "ns-bcdfg/x",
		"":                                "",
	} {
		if got := workloadOf(in); got != want {
			t.Errorf("workloadOf(%q) = %q, want %q", in, got, want)
		}
	}
}

// CPU: each side's shares of its own samples, the change beyond noise
// flagged, the merged folded stacks in difffolded.pl's format.
func TestCompareCPU(t *testing.T) {
	base, cur := newDiffFixture("a"), newDiffFixture("b")
	base.proc(100, "svc", "", "")
	cur.proc(200, "svc", "", "")
	base.cpu(100, 100, 0, fixSpan, "main", "work", "hot")
	base.cpu(100, 880, 0, fixSpan, "main", "work", "cold")
	base.cpu(100, 20, 0, fixSpan, "main", "idle")
	cur.cpu(200, 600, 0, fixSpan, "main", "work", "hot")
	cur.cpu(200, 1380, 0, fixSpan, "main", "work", "cold")
	cur.cpu(200, 20, 0, fixSpan, "main", "gc")
	d, err := LoadDiff(base.write(t), Request{}, cur.write(t), Request{})
	if err != nil {
		t.Fatal(err)
	}
	c := d.CPU
	if c.BaseSamples != 1000 || c.NewSamples != 2000 || !near(c.BaseCores, 1000*0.01/10) || !near(c.NewCores, 2) {
		t.Fatalf("cpu %+v", c)
	}
	f := map[string]FunctionDiff{}
	for _, x := range c.Functions {
		f[x.Name] = x
	}
	hot, cold, idle, gc, main := f["hot"], f["cold"], f["idle"], f["gc"], f["main"]
	if !near(hot.BaseShare, 10) || !near(hot.NewShare, 30) || !near(hot.Change, 20) || !hot.Significant || hot.Z < 10 {
		t.Errorf("hot %+v", hot)
	}
	if !near(cold.Change, -19) || !cold.Significant || cold.Z > -10 {
		t.Errorf("cold %+v", cold)
	}
	// 2% → 0% of 1000 vs 2000 samples: z = 0.02/sqrt(p(1-p)(1/1000+1/2000)) with p=20/3000.
	if !near(idle.Change, -2) || idle.Significant != (math.Abs(idle.Z) >= NoiseZ) || math.Abs(idle.Z+6.34) > 0.01 {
		t.Errorf("idle %+v", idle)
	}
	if !near(gc.NewShare, 1) || gc.BaseShare != 0 {
		t.Errorf("gc %+v", gc)
	}
	if main.Change != 0 || !near(main.BaseTotalShare, 100) || !near(main.NewTotalShare, 100) || main.Significant {
		t.Errorf("main %+v", main)
	}
	if c.Functions[0].Name != "hot" || c.Functions[1].Name != "cold" {
		t.Errorf("order %s %s, want the largest changes first", c.Functions[0].Name, c.Functions[1].Name)
	}
	if len(c.Processes) != 1 || c.Processes[0].Name != "svc" || c.Processes[0].Change != 0 {
		t.Errorf("processes %+v (matched by name across pids)", c.Processes)
	}
	var b bytes.Buffer
	if err := WriteFoldedDiff(&b, d.Folded()); err != nil {
		t.Fatal(err)
	}
	want := "svc;main;gc 0 20\nsvc;main;idle 20 0\nsvc;main;work;cold 880 1380\nsvc;main;work;hot 100 600\n"
	if b.String() != want {
		t.Errorf("folded diff:\n%s\nwant:\n%s", b.String(), want)
	}
	if _, err := d.RequireCPU(); err != nil {
		t.Error(err)
	}
}

// Each side has its own filter: two halves of one archive compare.
func TestCompareSidesOfOneArchive(t *testing.T) {
	f := newDiffFixture("a")
	f.proc(100, "svc", "", "")
	f.cpu(100, 100, 0, fixSpan/2, "main", "early")
	f.cpu(100, 100, fixSpan/2, fixSpan/2, "main", "late")
	f.serve(100, "/x", same(1, 50), 0, fixSpan/2)
	f.serve(100, "/x", same(4, 50), fixSpan/2, fixSpan/2)
	path := f.write(t)
	d, err := LoadDiff(path, Request{To: "5s"}, path, Request{From: "5s"})
	if err != nil {
		t.Fatal(err)
	}
	if d.Base.Filter != "time 0s to 5s" || d.New.Filter != "time 5s to end" || d.Base.DurationS != 5 || d.New.DurationS != 5 {
		t.Errorf("sides %+v %+v", d.Base, d.New)
	}
	if e := d.HTTP.Endpoints[0]; !near(e.Change.P99, 3) || !near(e.Base.RateRPS, 10) || !near(e.New.RateRPS, 10) {
		t.Errorf("/x %+v %+v", e.Base, e.New)
	}
	if c := d.CPU; c.BaseSamples != 100 || c.NewSamples != 100 || c.Functions[0].Change*c.Functions[1].Change != -100*100 {
		t.Errorf("cpu %+v", c)
	}
	// A side without samples cannot be drawn.
	d, err = LoadDiff(path, Request{To: "5s"}, path, Request{From: "5s", PIDs: []uint32{999}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.RequireCPU(); err == nil || !strings.Contains(err.Error(), "pid 999") {
		t.Errorf("RequireCPU with an empty side: %v", err)
	}
}

func TestShareChange(t *testing.T) {
	c, z := ShareChange(10, 100, 30, 100)
	// pooled p = 0.2, se = sqrt(0.2·0.8·0.02) = 0.05657
	if !near(c, 20) || math.Abs(z-0.2/0.0565685) > 1e-4 {
		t.Errorf("ShareChange = %v, %v", c, z)
	}
	if c, z := ShareChange(0, 0, 5, 10); c != 0 || z != 0 {
		t.Errorf("empty side: %v %v", c, z)
	}
	if c, z := ShareChange(10, 10, 20, 20); c != 0 || z != 0 {
		t.Errorf("all samples both sides: %v %v", c, z)
	}
}

// Leak sites match by process, kind and stack; only new or grown ones are
// listed, the largest growth first; the allocator's own mappings are left
// out.
func TestCompareMem(t *testing.T) {
	leak := func(pid uint32, bytes uint64, stack ...string) MemLeak {
		return MemLeak{PID: pid, Process: "svc", Kind: memHeap, Bytes: bytes, Allocations: 1, Stack: stack}
	}
	base := &MemSummary{OutstandingBytes: 300, Leaks: []MemLeak{leak(1, 100, "a", "main"), leak(1, 200, "b", "main"), leak(1, 50, "c", "main")}}
	cur := &MemSummary{OutstandingBytes: 900, MappedBytes: 4096,
		Leaks:    []MemLeak{leak(7, 500, "a", "main"), leak(8, 100, "a", "main"), leak(7, 150, "b", "main"), leak(7, 50, "c", "main"), leak(7, 80, "d", "main")},
		Mappings: []MemLeak{{PID: 7, Process: "svc", Kind: memMmap, Bytes: 4096, Stack: []string{"m"}}, {PID: 7, Process: "svc", Kind: memMmap, ByAllocator: true, Bytes: 1 << 20}}}
	d := compareMem(base, cur)
	var got []string
	for _, s := range d.Sites {
		got = append(got, s.Stack[0]+":"+uitoa(uint64(s.GrowthBytes)))
	}
	if strings.Join(got, " ") != "m:4096 a:500 d:80" {
		t.Errorf("sites %v, want m:4096 a:500 d:80 (b shrank, c did not move, the allocator's mapping is not a site)", got)
	}
	if d.Sites[1].Base.Bytes != 100 || d.Sites[1].New.Bytes != 600 || d.Sites[2].Base != nil {
		t.Errorf("sides %+v %+v", d.Sites[1], d.Sites[2])
	}
	if d.BaseOutstandingBytes != 300 || d.NewOutstandingBytes != 900 || d.NewMappedBytes != 4096 {
		t.Errorf("totals %+v", d)
	}
}

// The time split of an endpoint, per request on each side, from the
// off-CPU fixture (a /lock route blocked 8 ms of 10 on a mutex, 0.5 ms in
// the run queue); the off-CPU section per second of the window.
func TestCompareTimeSplitAndOffCPU(t *testing.T) {
	path, err := offcpufixture.Write(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	d, err := LoadDiff(path, Request{}, path, Request{})
	if err != nil {
		t.Fatal(err)
	}
	var lock *EndpointDiff
	for i := range d.HTTP.Endpoints {
		if d.HTTP.Endpoints[i].Route == "/lock" {
			lock = &d.HTTP.Endpoints[i]
		}
	}
	if lock == nil || lock.New.TimeSplit == nil || lock.Change == nil {
		t.Fatalf("/lock: %+v", lock)
	}
	ts := lock.New.TimeSplit
	if ts.Requests != offcpufixture.Requests || !near(ts.WallMs, offcpufixture.LockWall) || !near(ts.OffCPUByClassMs[WaitLock], offcpufixture.LockBlocked) ||
		!near(ts.RunqueueMs, offcpufixture.LockRunq) || ts.OnCPUSource != OnCPUFromScheduler {
		t.Errorf("/lock split per request %+v", ts)
	}
	if lock.Change.TimeSplit[WaitLock] != 0 || lock.Change.Cause != "" {
		t.Errorf("an archive against itself: %+v", lock.Change)
	}
	o := d.OffCPU
	if o == nil || len(o.Classes) == 0 || o.BaseBlocked != o.NewBlocked || o.BaseBlocked <= 0 {
		t.Fatalf("offcpu %+v", o)
	}
	for _, c := range o.Classes {
		if c.Class == WaitLock && !near(c.NewBlocked, offcpufixture.Requests*offcpufixture.LockBlocked/10) {
			t.Errorf("lock: %+v ms/s, want %v", c, offcpufixture.Requests*offcpufixture.LockBlocked/10)
		}
	}
}

// The part of a request's time that grew names the cause; a part the
// other side cannot know (no offcpu probe there) is left out.
func TestSplitChange(t *testing.T) {
	side := func(mean, onCPU, sleep float64, source string) *EndpointSide {
		return &EndpointSide{Mean: mean, TimeSplit: &RequestSplit{Requests: 10, WallMs: mean, OnCPUMs: onCPU, OnCPUSource: source,
			OffCPUMs: sleep, OffCPUByClassMs: map[string]float64{WaitSleep: sleep}}}
	}
	var c EndpointChange
	c.splitChange(side(10, 2, 8, OnCPUFromScheduler), side(40, 2.5, 37.5, OnCPUFromScheduler))
	if c.Cause != WaitSleep || !near(c.TimeSplit[WaitSleep], 29.5) || !near(c.TimeSplit["on_cpu"], 0.5) {
		t.Errorf("%+v, want sleep +29.5 ms the cause", c)
	}
	c = EndpointChange{}
	c.splitChange(side(10, 2, 8, OnCPUFromSamples), side(40, 2.5, 37.5, OnCPUFromScheduler))
	if c.Cause != "" || len(c.TimeSplit) != 1 || !near(c.TimeSplit["on_cpu"], 0.5) {
		t.Errorf("%+v, want on_cpu only and no cause (on-CPU is not most of what was added)", c)
	}
	c = EndpointChange{}
	c.splitChange(side(10, 2, 8, OnCPUFromSamples), side(30, 20, 0, OnCPUFromSamples))
	if c.Cause != "on_cpu" || !near(c.TimeSplit["on_cpu"], 18) {
		t.Errorf("%+v, want on_cpu the cause", c)
	}
}
