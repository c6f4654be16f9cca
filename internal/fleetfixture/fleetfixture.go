// Package fleetfixture writes the archives of a fleet of nodes running the
// same services, as their captures would: per node a window of HTTP
// requests (lognormal latencies with a slow tail, ids in paths, errors,
// requests without a response or whose last byte was not seen, a client's
// mirror of some calls), CPU samples over deduplicated stacks, processes in
// pods, and drop counters. For the fleet report's tests and its bench row
// (cmd/bpfsnap, bench/): the rows are what the formats writer stores, so
// the reading path is the real one. Tests and benchmarks only.
package fleetfixture

import (
	"fmt"
	"math"
	"math/rand/v2"
	"path/filepath"
	"sort"
	"strconv"
	"time"

	"github.com/bpfsnap/bpfsnap/formats"
)

// Hostile workload strings: a process name and a request path.
const (
	HostileComm = `"><script>alert(1)</script>`
	HostilePath = `/search/"><svg onload=alert(2)>'x'`
)

// Node describes one node's capture.
type Node struct {
	Host string
	Seed uint64
	// Start is the window's wall-clock start; Window its length (60 s
	// when zero).
	Start  time.Time
	Window time.Duration
	// RequestsPerSec and SamplesPerSec set the row counts (500 and 198,
	// 99 Hz on 2 CPUs, when zero).
	RequestsPerSec int
	SamplesPerSec  int
	// SlowRoute, when set (e.g. "/api/search"), makes that route of
	// shop-api SlowFactor times slower on this node.
	SlowRoute  string
	SlowFactor float64
	// HotFunction adds CPU samples in shop-api's `compress` on this node.
	HotFunction bool
	// Hostile gives one process the hostile name and sends the hostile
	// path.
	Hostile bool
	// Drops are the manifest's drop counters (e.g. "cpu.ringbuf_full").
	Drops map[string]uint64
}

type route struct {
	method, tmpl string // tmpl: {n} a decimal id, {u} a UUID
	medianMs     float64
	weight       int
	errRate      float64
}

type service struct {
	comm   string
	pids   []uint32 // workers share the routes
	weight int
	routes []route
}

var services = []service{
	{"nginx", []uint32{3101, 3102}, 30, []route{
		{"GET", "/", 0.3, 20, 0}, {"GET", "/static/app.js", 0.2, 30, 0}, {"GET", "/images/{n}/thumb", 0.4, 25, 0.001},
	}},
	{"shop-api", []uint32{3201}, 45, []route{
		{"GET", "/api/products", 4, 30, 0.002}, {"GET", "/api/products/{n}", 2.5, 40, 0.002}, {"GET", "/api/search", 35, 10, 0.02},
		{"POST", "/api/cart", 6, 8, 0.005}, {"GET", "/api/users/{n}", 2, 6, 0.001}, {"GET", "/healthz", 0.05, 5, 0},
	}},
	{"checkout", []uint32{3301}, 15, []route{
		{"POST", "/checkout", 80, 20, 0.03}, {"GET", "/orders/{u}", 7, 30, 0.002}, {"GET", "/healthz", 0.05, 5, 0},
	}},
}

const loadgenPID = 3401

// Frames and stacks: every node runs the same binaries, so frame and stack
// ids are the same on every node (as a capture's would not be: ids are
// per archive, which the analysis never mixes).
type stackSpec struct {
	pid    uint32
	frames []string // root first
	weight int
}

func stackSpecs(n Node) []stackSpec {
	s := []stackSpec{
		{3101, []string{"main", "ngx_worker_process_cycle", "ngx_process_events_and_timers", "epoll_wait", "[k]do_epoll_wait"}, 10},
		{3101, []string{"main", "ngx_worker_process_cycle", "ngx_http_process_request", "ngx_http_static_handler", "writev", "[k]tcp_sendmsg"}, 14},
		{3102, []string{"main", "ngx_worker_process_cycle", "ngx_http_process_request", "ngx_http_static_handler", "writev", "[k]tcp_sendmsg"}, 12},
		{3201, []string{"runtime.goexit", "net/http.(*conn).serve", "main.products", "encoding/json.Marshal"}, 30},
		{3201, []string{"runtime.goexit", "net/http.(*conn).serve", "main.search", "main.rank"}, 25},
		{3201, []string{"runtime.goexit", "net/http.(*conn).serve", "main.search", "database/sql.(*DB).Query", "[k]tcp_recvmsg"}, 8},
		{3201, []string{"runtime.goexit", "runtime.gcBgMarkWorker", "runtime.gcDrain", "runtime.scanobject"}, 12},
		{3301, []string{"start_thread", "checkout_worker", "price_order", "tax_rules_eval"}, 18},
		{3301, []string{"start_thread", "checkout_worker", "sign_receipt", "RSA_sign"}, 9},
		{loadgenPID, []string{"_start", "main", "send_requests", "connect", "[k]tcp_v4_connect"}, 4},
	}
	if n.HotFunction {
		s = append(s, stackSpec{3201, []string{"runtime.goexit", "net/http.(*conn).serve", "main.products", "main.compress", "compress/flate.(*compressor).deflate"}, 90})
	}
	return s
}

// Write writes the node's archive into dir as HOST.bpfsnap and returns its
// path.
func Write(dir string, n Node) (string, error) {
	if n.Window == 0 {
		n.Window = 60 * time.Second
	}
	if n.RequestsPerSec == 0 {
		n.RequestsPerSec = 500
	}
	if n.SamplesPerSec == 0 {
		n.SamplesPerSec = 198
	}
	if n.Start.IsZero() {
		n.Start = time.Date(2026, 12, 7, 9, 30, 0, 0, time.UTC)
	}
	rng := rand.New(rand.NewPCG(n.Seed, 0xf1ee7))
	// Each node booted at its own time: monotonic clocks differ.
	mono := uint64(1000+rng.IntN(100000)) * 1e9
	window := uint64(n.Window)
	out := filepath.Join(dir, n.Host+".bpfsnap")
	m := formats.Manifest{BpfsnapVersion: "fixture", Host: n.Host, Kernel: "6.18.0", Arch: "amd64",
		Window: formats.Window{StartWall: n.Start, EndWall: n.Start.Add(n.Window), StartMonoNs: mono, EndMonoNs: mono + window,
			Requested: n.Window.String(), EndReason: "duration"},
		Probes:  []formats.Probe{{Name: "cpu", Attached: true, Details: map[string]string{"freq": "99"}}, {Name: "http", Attached: true}},
		Targets: formats.Targets{Extra: map[string]string{"namespace": "shop"}},
		Drops:   n.Drops,
	}
	w, err := formats.Create(out, m, formats.CreateOptions{SealInterval: time.Hour})
	if err != nil {
		return "", err
	}
	if err := write(w, n, rng, mono, window); err != nil {
		w.Abort()
		return "", err
	}
	return out, w.Finish(nil)
}

func write(w *formats.Writer, n Node, rng *rand.Rand, mono, window uint64) error {
	var procs []formats.ProcessEvent
	for _, s := range services {
		for _, pid := range s.pids {
			comm := s.comm
			if n.Hostile && pid == 3301 {
				comm = HostileComm
			}
			procs = append(procs, formats.ProcessEvent{TimeNs: mono, Kind: formats.ProcessScan, PID: pid, PPID: 1, Comm: comm,
				Exe: "/usr/bin/" + s.comm, StartNs: mono - 3600e9, Namespace: "shop", Pod: s.comm + "-" + n.Host, Container: s.comm})
		}
	}
	procs = append(procs, formats.ProcessEvent{TimeNs: mono, Kind: formats.ProcessScan, PID: loadgenPID, PPID: 1, Comm: "loadgen",
		Exe: "/usr/bin/loadgen", StartNs: mono - 60e9})
	if err := formats.NewTable[formats.ProcessEvent](w, formats.TableProcesses).Write(procs...); err != nil {
		return err
	}
	if err := writeCPU(w, n, rng, mono, window); err != nil {
		return err
	}
	return writeHTTP(w, n, rng, mono, window)
}

func writeCPU(w *formats.Writer, n Node, rng *rand.Rand, mono, window uint64) error {
	specs := stackSpecs(n)
	ids := map[string]uint64{}
	var frames []formats.Frame
	frameID := func(name string) uint64 {
		if id, ok := ids[name]; ok {
			return id
		}
		id := uint64(len(ids) + 1)
		ids[name] = id
		f := formats.Frame{FrameID: id, Function: name, Module: "/usr/bin/app", FileOffset: 0x1000 * id, Address: 0x400000 + 0x1000*id}
		if len(name) > 3 && name[:3] == "[k]" {
			f = formats.Frame{FrameID: id, Kernel: true, Module: "[kernel]", Function: name[3:], Address: 0xffffffff81000000 + 0x100*id}
		}
		frames = append(frames, f)
		return id
	}
	var stacks []formats.Stack
	var pick []int
	for i, s := range specs {
		st := formats.Stack{StackID: uint64(100 + i), PID: s.pid}
		for j := len(s.frames) - 1; j >= 0; j-- { // leaf first
			st.FrameIDs = append(st.FrameIDs, frameID(s.frames[j]))
		}
		stacks = append(stacks, st)
		for k := 0; k < s.weight; k++ {
			pick = append(pick, i)
		}
	}
	total := int(float64(n.SamplesPerSec) * time.Duration(window).Seconds())
	samples := make([]formats.CPUSample, 0, total)
	for i := 0; i < total; i++ {
		k := pick[rng.IntN(len(pick))]
		at := mono + uint64(i)*window/uint64(total)
		samples = append(samples, formats.CPUSample{TimeNs: at, CPU: uint32(i % 2), PID: specs[k].pid, TID: specs[k].pid + uint32(rng.IntN(4)),
			StackID: stacks[k].StackID})
	}
	if err := formats.NewTable[formats.Frame](w, formats.TableFrames).Write(frames...); err != nil {
		return err
	}
	if err := formats.NewTable[formats.Stack](w, formats.TableStacks).Write(stacks...); err != nil {
		return err
	}
	return formats.NewTable[formats.CPUSample](w, formats.TableCPUSamples).Write(samples...)
}

func writeHTTP(w *formats.Writer, n Node, rng *rand.Rand, mono, window uint64) error {
	// A request goes to a service by its weight, then to one of its
	// routes by theirs: drawn from the cumulative shares.
	type choice struct {
		svc, route int
		upTo       float64 // cumulative share, up to 1
	}
	var choices []choice
	var sum float64
	for si, s := range services {
		routeTotal := 0
		for _, r := range s.routes {
			routeTotal += r.weight
		}
		for ri, r := range s.routes {
			sum += float64(s.weight*r.weight) / float64(routeTotal)
			choices = append(choices, choice{si, ri, sum})
		}
	}
	pick := func() choice {
		x := rng.Float64() * sum
		return choices[sort.Search(len(choices)-1, func(i int) bool { return choices[i].upTo > x })]
	}
	reqs := formats.NewTable[formats.HTTPRequest](w, formats.TableHTTPRequests)
	total := int(float64(n.RequestsPerSec) * time.Duration(window).Seconds())
	batch := make([]formats.HTTPRequest, 0, 4096)
	flush := func() error {
		err := reqs.Write(batch...)
		batch = batch[:0]
		return err
	}
	var path []byte
	for i := 0; i < total; i++ {
		c := pick()
		s, r := services[c.svc], services[c.svc].routes[c.route]
		path = expand(path[:0], r.tmpl, rng)
		if n.Hostile && i%997 == 0 {
			path = append(path[:0], HostilePath...)
		}
		at := mono + uint64(i)*window/uint64(total) + uint64(rng.IntN(1000))
		ms := r.medianMs * math.Exp(0.6*rng.NormFloat64())
		if rng.IntN(100) == 0 {
			ms *= 5 + 20*rng.Float64() // the slow tail: GC pauses, lock waits
		}
		if s.comm == "shop-api" && r.tmpl == n.SlowRoute && n.SlowFactor > 0 {
			ms *= n.SlowFactor
		}
		status := uint32(200)
		if rng.Float64() < r.errRate {
			status = 500 + uint32(rng.IntN(4))
		}
		pid := s.pids[rng.IntN(len(s.pids))]
		end := at + uint64(ms*1e6) + 1
		row := formats.HTTPRequest{RequestNs: at, ResponseNs: at + uint64(ms*0.7e6) + 1, ResponseEndNs: end, ResponseWrittenNs: end,
			PID: pid, TID: pid + uint32(rng.IntN(4)), Role: formats.RoleServer, Method: r.method, Path: string(path), Status: status,
			LocalAddr: "10.1.0.5:8080", RemoteAddr: "10.1.3." + strconv.Itoa(rng.IntN(250)) + ":40000",
			Connection: uint64(i / 50), RequestBytes: -1, ResponseBytes: int64(100 + rng.IntN(5000)), Protocol: formats.ProtocolHTTP1}
		switch rng.IntN(2000) {
		case 0: // no response before the window ended
			row.ResponseNs, row.ResponseEndNs, row.ResponseWrittenNs, row.Status = 0, 0, 0, 0
		case 1: // the response's last byte was not seen
			row.ResponseEndNs = 0
		}
		batch = append(batch, row)
		// A tenth of shop-api's calls come from the node's load
		// generator: the same exchange seen from the client side.
		if s.comm == "shop-api" && rng.IntN(10) == 0 {
			cl := row
			cl.PID, cl.TID, cl.Role, cl.LocalAddr, cl.RemoteAddr = loadgenPID, loadgenPID, formats.RoleClient, cl.RemoteAddr, cl.LocalAddr
			cl.RequestNs -= 20e3
			if cl.ResponseEndNs != 0 {
				cl.ResponseEndNs += 20e3
			}
			batch = append(batch, cl)
		}
		if len(batch) >= 4000 {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	return flush()
}

func expand(dst []byte, tmpl string, rng *rand.Rand) []byte {
	for j := 0; j < len(tmpl); j++ {
		if j+2 < len(tmpl) && tmpl[j] == '{' && tmpl[j+2] == '}' {
			if tmpl[j+1] == 'n' {
				dst = strconv.AppendUint(dst, uint64(rng.IntN(100000)), 10)
			} else {
				dst = fmt.Appendf(dst, "%08x-%04x-4%03x-a%03x-%012x", rng.Uint32(), rng.IntN(1<<16), rng.IntN(1<<12), rng.IntN(1<<12), rng.Uint64()&(1<<48-1))
			}
			j += 2
			continue
		}
		dst = append(dst, tmpl[j])
	}
	return dst
}
