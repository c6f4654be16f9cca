package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/bpfsnap/bpfsnap/analyze"
	"github.com/bpfsnap/bpfsnap/formats"
)

// nodeArchive writes an archive of one node's incident: HTTP requests on
// id-bearing routes, CPU samples whose stacks hold kernel, inlined and
// unresolved frames, allocations with leaks, processes in pods, drops, and
// for a flight recorder's dump the trigger that fired.
func nodeArchive(t *testing.T, dir, host string, seed uint64, fired time.Time) string {
	t.Helper()
	rng := rand.New(rand.NewPCG(seed, 7))
	start := time.Date(2026, 12, 6, 1, 0, 0, int(seed)*1e6, time.UTC)
	const mono = uint64(5_000_000_000)
	m := formats.Manifest{BpfsnapVersion: "test", Host: host, Kernel: "6.18", Arch: "amd64",
		Window: formats.Window{StartWall: start, EndWall: start.Add(10 * time.Second), StartMonoNs: mono, EndMonoNs: mono + 10e9, EndReason: "dump"},
		Probes: []formats.Probe{{Name: "cpu", Attached: true, Details: map[string]string{"freq": "99"}}, {Name: "http", Attached: true}, {Name: "mem", Attached: true}},
		Drops:  map[string]uint64{"cpu.ringbuf_full": seed * 3, "http.no_response": 2}}
	if !fired.IsZero() {
		m.Dump = &formats.Dump{Trigger: "http.p99>250ms", Detail: "p99 300 ms on GET /api/users/{id} of " + host, FiredWall: fired, Ring: "10s", Sequence: 1}
	}
	out := filepath.Join(dir, host+".bpfsnap")
	w, err := formats.Create(out, m, formats.CreateOptions{SealInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	w.MaxChunkRows = 700 // several chunks per table
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(formats.NewTable[formats.ProcessEvent](w, formats.TableProcesses).Write(
		formats.ProcessEvent{TimeNs: mono, Kind: formats.ProcessScan, PID: 100, Comm: "api", Namespace: "shop", Pod: "api-" + host},
		formats.ProcessEvent{TimeNs: mono, Kind: formats.ProcessScan, PID: 200, Comm: "web", Namespace: "shop", Pod: "web-" + host}))
	must(formats.NewTable[formats.Frame](w, formats.TableFrames).Write(
		formats.Frame{FrameID: 1, Module: "/srv/api", FileOffset: 0x1000, Function: "main"},
		formats.Frame{FrameID: 2, Module: "/srv/api", FileOffset: 0x1100, Function: "handle"},
		formats.Frame{FrameID: 3, Module: "/srv/api", FileOffset: 0x1200, Function: "encode"},
		formats.Frame{FrameID: 30, Module: "/srv/api", FileOffset: 0x1200, Function: "appendQuoted", Inlined: true, InlineOf: 3, InlineDepth: 1},
		formats.Frame{FrameID: 31, Module: "/srv/api", FileOffset: 0x1200, Function: "isSafe", Inlined: true, InlineOf: 3, InlineDepth: 2},
		formats.Frame{FrameID: 4, Module: "/srv/api", FileOffset: 0x1300, Function: "query"},
		formats.Frame{FrameID: 5, Kernel: true, Module: "[kernel]", Address: 0xffffffff81000100, Function: "copy_user_generic"},
		formats.Frame{FrameID: 6, Module: "/usr/lib/x86_64-linux-gnu/libz.so.1", FileOffset: 0x4a2c},
		formats.Frame{FrameID: 7, Address: 0x7f00dead},
		formats.Frame{FrameID: 8, Kernel: true, Module: "[kernel]", Address: 0xffffffff81abcdef},
		formats.Frame{FrameID: 9, Module: "/srv/api", FileOffset: 0x1400, Function: "malloc_site"}))
	must(formats.NewTable[formats.Stack](w, formats.TableStacks).Write(
		formats.Stack{StackID: 11, PID: 100, FrameIDs: []uint64{3, 2, 1}},
		formats.Stack{StackID: 12, PID: 100, FrameIDs: []uint64{4, 2, 1}},
		formats.Stack{StackID: 13, PID: 100, FrameIDs: []uint64{5, 4, 2, 1}},
		formats.Stack{StackID: 14, PID: 200, FrameIDs: []uint64{6, 1}},
		formats.Stack{StackID: 15, PID: 200, FrameIDs: []uint64{7, 1}},
		formats.Stack{StackID: 16, PID: 200, FrameIDs: []uint64{8, 6, 1}},
		formats.Stack{StackID: 17, PID: 100, FrameIDs: []uint64{9, 2, 1}}))
	var samples []formats.CPUSample
	for stack, n := range map[uint64]int{11: 400 + int(seed)*10, 12: 150, 13: 60, 14: 40, 15: 25, 16: 15, 0: 8} {
		pid := uint32(100)
		if stack >= 14 || stack == 0 {
			pid = 200
		}
		for i := 0; i < n; i++ {
			samples = append(samples, formats.CPUSample{TimeNs: mono + uint64(rng.Int64N(10e9)), PID: pid, TID: pid, StackID: stack})
		}
	}
	must(formats.NewTable[formats.CPUSample](w, formats.TableCPUSamples).Write(samples...))

	var reqs []formats.HTTPRequest
	routes := []string{"/api/users/%d", "/api/orders/3fa85f64-5717-4562-b3fc-2c963f66afa6", "/health", "/api/users/%d/cart",
		"/static/app.js", "/token/abcdefghijklmnopqrstu1v"}
	for i := 0; i < 3000; i++ {
		r := routes[rng.IntN(len(routes))]
		if strings.Contains(r, "%d") {
			r = fmt.Sprintf(r, rng.IntN(5000))
		}
		at := mono + uint64(rng.Int64N(9e9))
		ttfb := uint64(rng.ExpFloat64() * 2e6)
		end := ttfb + uint64(rng.ExpFloat64()*3e6)
		row := formats.HTTPRequest{RequestNs: at, ResponseNs: at + ttfb, ResponseEndNs: at + end, PID: 100, TID: 101,
			Role: formats.RoleServer, Method: []string{"GET", "POST"}[rng.IntN(2)], Path: r, Status: 200, Protocol: formats.ProtocolHTTP1}
		switch rng.IntN(20) {
		case 0:
			row.Status = 503
		case 1:
			row.ResponseEndNs = 0 // last byte not seen
		case 2:
			row.ResponseNs, row.ResponseEndNs, row.Status = 0, 0, 0 // no response
		case 3:
			row.Role, row.PID = formats.RoleClient, 200
		}
		reqs = append(reqs, row)
	}
	must(formats.NewTable[formats.HTTPRequest](w, formats.TableHTTPRequests).Write(reqs...))

	// Allocations: blocks from stack 17 (leaks) and 12 (freed), a realloc
	// that moves a block, one in place, and frees of unknown blocks.
	var mem []formats.MemEvent
	at := mono
	next := func() uint64 { at += 1000 + uint64(rng.IntN(5000)); return at }
	live := map[uint64]bool{}
	for i := 0; i < 900; i++ {
		addr := 0x5500_0000 + uint64(i)*64
		stack := uint64(12)
		if i%4 == 0 {
			stack = 17
		}
		mem = append(mem, formats.MemEvent{TimeNs: next(), PID: 100, TID: 100, Kind: formats.MemMalloc, Addr: addr, Size: uint64(16 + i%100), StackID: stack, Weight: 1})
		live[addr] = true
		if stack == 12 && rng.IntN(10) < 9 {
			mem = append(mem, formats.MemEvent{TimeNs: next(), PID: 100, TID: 100, Kind: formats.MemFree, Addr: addr, Weight: 1})
			delete(live, addr)
		}
		if i%50 == 7 && live[addr] {
			moved := addr + 0x100_0000
			mem = append(mem, formats.MemEvent{TimeNs: next(), PID: 100, TID: 100, Kind: formats.MemRealloc, Addr: moved, OldAddr: addr, Size: 4096, StackID: 17, Weight: 1})
		}
		if i%70 == 3 && live[addr] {
			mem = append(mem, formats.MemEvent{TimeNs: next(), PID: 100, TID: 100, Kind: formats.MemRealloc, Addr: addr, OldAddr: addr, Size: 128, StackID: 17, Weight: 1})
		}
		if i%90 == 5 {
			mem = append(mem, formats.MemEvent{TimeNs: next(), PID: 100, TID: 100, Kind: formats.MemFree, Addr: 0x1234_0000 + uint64(i), Weight: 1})
		}
	}
	rng.Shuffle(len(mem), func(i, j int) { mem[i], mem[j] = mem[j], mem[i] }) // rows are not in time order
	must(formats.NewTable[formats.MemEvent](w, formats.TableMemEvents).Write(mem...))
	must(w.Finish(nil))
	return out
}

// cookbookQueries returns the DuckDB queries of docs/cookbook.md by name.
func cookbookQueries(t *testing.T) map[string]string {
	t.Helper()
	doc, err := os.ReadFile("../../docs/cookbook.md")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, block := range strings.Split(string(doc), "```sql\n")[1:] {
		body, _, _ := strings.Cut(block, "```")
		first, rest, _ := strings.Cut(body, "\n")
		if name, ok := strings.CutPrefix(first, "-- duckdb: "); ok {
			out[name] = rest
		}
	}
	return out
}

func runDuckDB(t *testing.T, sql string) []map[string]any {
	t.Helper()
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatal("node is needed to run DuckDB (scripts/deps.sh installs it)")
	}
	cmd := exec.Command(node, "../../tools/duckdb/query.mjs", sql)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("DuckDB: %v: %s\n%s", err, stderr.String(), sql)
	}
	var rows []map[string]any
	if err := json.Unmarshal(out, &rows); err != nil {
		t.Fatalf("DuckDB output: %v: %s", err, out)
	}
	return rows
}

func num(v any) float64 {
	switch x := v.(type) {
	case float64:
		return x
	case string:
		var f float64
		fmt.Sscan(x, &f)
		return f
	}
	return math.NaN()
}

// Two archives exported as a dataset: every cookbook query, run by a real
// DuckDB over the dataset, gives what `bpfsnap analyze` gives of each
// archive (the percentiles exactly).
func TestDatasetCookbookMatchesAnalyze(t *testing.T) {
	if _, err := os.Stat("../../tools/duckdb/node_modules/@duckdb/node-api"); err != nil {
		t.Fatal("DuckDB is not installed (run scripts/deps.sh, which make test runs)")
	}
	dir := t.TempDir()
	a := nodeArchive(t, dir, "node-a", 1, time.Date(2026, 12, 6, 1, 0, 9, 0, time.UTC))
	b := nodeArchive(t, dir, "node-b", 2, time.Date(2026, 12, 6, 1, 0, 4, 0, time.UTC))
	ds := filepath.Join(dir, "fleet")
	if out, err := exec.Command(bpfsnapBin(t), "export", "--format", "parquet-dataset", "-o", ds, a, b).CombinedOutput(); err != nil {
		t.Fatalf("export: %v: %s", err, out)
	}
	if out, err := exec.Command(bpfsnapBin(t), "export", "--format", "parquet-dataset", "-o", ds, a).CombinedOutput(); err == nil {
		t.Errorf("exporting the same capture twice was accepted: %s", out)
	}
	queries := cookbookQueries(t)
	for _, name := range []string{"slowest-routes", "top-functions", "leaks-by-site", "first-trigger", "drops"} {
		if queries[name] == "" {
			t.Fatalf("docs/cookbook.md has no DuckDB query %q", name)
		}
	}
	query := func(name string) []map[string]any {
		return runDuckDB(t, strings.ReplaceAll(queries[name], "DATASET", ds))
	}
	summaries := map[string]*analyze.Summary{}
	for _, p := range []string{a, b} {
		s, err := analyze.Load(p, analyze.Request{})
		if err != nil {
			t.Fatal(err)
		}
		arch, _ := formats.Open(p)
		summaries[formats.CaptureID(arch.Manifest())] = s
		arch.Close()
	}

	// Slowest routes: every endpoint, with its count and exact p50/p90/p99.
	got := map[string][4]float64{}
	for _, r := range query("slowest-routes") {
		k := fmt.Sprintf("%v|%v|%v|%v|%v", r["capture"], r["pid"], r["role"], r["method"], r["route"])
		got[k] = [4]float64{num(r["requests"]), num(r["p50_ms"]), num(r["p90_ms"]), num(r["p99_ms"])}
	}
	endpoints := 0
	for id, s := range summaries {
		for _, e := range s.HTTP.Endpoints {
			if len(e.Latencies) == 0 {
				continue
			}
			endpoints++
			k := fmt.Sprintf("%s|%d|%s|%s|%s", id, e.PID, e.Role, e.Method, e.Route)
			want := [4]float64{float64(len(e.Latencies)), e.P50, e.P90, e.P99}
			if g, ok := got[k]; !ok || g != want {
				t.Errorf("slowest-routes %s: DuckDB %v, analyze %v", k, g, want)
			}
		}
	}
	if endpoints < 10 || len(got) != endpoints {
		t.Errorf("slowest-routes: %d rows from DuckDB, %d endpoints from analyze", len(got), endpoints)
	}

	// Top functions: per capture, the self samples of each function.
	self := map[string]float64{}
	for _, r := range query("top-functions") {
		self[fmt.Sprintf("%v|%s", r["capture"], analyze.SafeFrameName(fmt.Sprint(r["function"])))] += num(r["self_samples"])
	}
	for id, s := range summaries {
		for _, f := range s.CPU.Functions {
			if f.SelfSamples == 0 {
				continue
			}
			k := id + "|" + f.Name
			if self[k] != float64(f.SelfSamples) {
				t.Errorf("top-functions %s: DuckDB %v self samples, analyze %d", k, self[k], f.SelfSamples)
			}
			delete(self, k)
		}
	}
	for k, n := range self {
		t.Errorf("top-functions: %s (%v samples) is not among analyze's functions", k, n)
	}

	// Leaks: the bytes and blocks still held, per capture.
	held := map[string][2]float64{}
	for _, r := range query("leaks-by-site") {
		k := fmt.Sprint(r["capture"])
		v := held[k]
		held[k] = [2]float64{v[0] + num(r["bytes"]), v[1] + num(r["blocks"])}
	}
	for id, s := range summaries {
		want := [2]float64{float64(s.Mem.OutstandingBytes), float64(s.Mem.OutstandingBlocks)}
		if held[id] != want || want[0] == 0 {
			t.Errorf("leaks-by-site %s: DuckDB %v (bytes, blocks), analyze %v", id, held[id], want)
		}
	}

	// Triggers, first fired first: node-b's.
	trig := query("first-trigger")
	if len(trig) != 2 || trig[0]["host"] != "node-b" || trig[1]["host"] != "node-a" || !strings.Contains(fmt.Sprint(trig[0]["trigger_detail"]), "node-b") {
		t.Errorf("first-trigger: %v", trig)
	}
	var ids []string
	for id := range summaries {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool {
		return summaries[ids[i]].Manifest.Dump.FiredWall.Before(summaries[ids[j]].Manifest.Dump.FiredWall)
	})
	if len(trig) == 2 && (trig[0]["capture"] != ids[0] || trig[1]["capture"] != ids[1]) {
		t.Errorf("first-trigger order %v %v, the manifests' %v", trig[0]["capture"], trig[1]["capture"], ids)
	}

	// Lost data per node, as the manifests count it.
	lost := query("drops")
	if len(lost) != 2 {
		t.Errorf("drops: %v", lost)
	}
	for _, r := range lost {
		s := summaries[fmt.Sprint(r["capture"])]
		if s == nil || r["reason"] != "cpu.ringbuf_full" || num(r["count"]) != float64(s.Manifest.Drops["cpu.ringbuf_full"]) {
			t.Errorf("drops row %v", r)
		}
	}
}
