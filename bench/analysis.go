package main

import (
	"archive/zip"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/bpfsnap/bpfsnap/formats"
)

func init() {
	benchmarks = append(benchmarks, benchmark{"analysis speed", benchAnalysis})
}

// analysisRequests is the size of the synthetic archive: 10 million
// requests, a busy node's HTTP traffic over 10 minutes.
const analysisRequests = 10_000_000

// duckDBQuantiles is the peer: DuckDB reading the archive's own Parquet
// chunks and computing the same per-endpoint nearest-rank percentiles
// bpfsnap does (quantile_disc is nearest rank: the value at 1-based rank
// ceil(q·n), checked by the harness against n = 1..1199). Routes are
// normalized the way analyze.NormalizeRoute does for the segments the
// generator writes (decimal ids and UUIDs).
const duckDBQuantiles = `SELECT pid, role, method, route, count(*)::BIGINT AS n,
  quantile_disc(ms, 0.5) AS p50, quantile_disc(ms, 0.9) AS p90, quantile_disc(ms, 0.99) AS p99
FROM (SELECT pid, role, method,
        regexp_replace(path, '/([0-9]+|[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})(/|$)', '/{id}\2', 'g') AS route,
        (response_end_ns - request_ns)::DOUBLE / 1e6::DOUBLE AS ms
      FROM read_parquet('http_requests-*.parquet')
      WHERE response_end_ns <> 0 AND response_ns >= request_ns AND response_end_ns >= response_ns)
GROUP BY pid, role, method, route`

// benchAnalysis: per-route p50/p90/p99 of 10M requests, `bpfsnap analyze
// --json` (which also computes p99.9, max, mean, statuses and the slowest
// list) against DuckDB on the same Parquet files, interleaved; every
// endpoint's count and percentiles must agree exactly.
func benchAnalysis(env *Env) ([]Row, error) {
	archive := filepath.Join(env.Dir, "http10m.bpfsnap")
	start := time.Now()
	if err := writeHTTPArchive(archive, analysisRequests); err != nil {
		return nil, fmt.Errorf("generating the archive: %w", err)
	}
	genTime := time.Since(start)
	st, err := os.Stat(archive)
	if err != nil {
		return nil, err
	}
	// DuckDB reads Parquet files, not zip members: extract the chunks once
	// (a stored zip, so this is a copy). Not counted in DuckDB's time; it
	// is reported beside it.
	chunks := filepath.Join(env.Dir, "http10m-chunks")
	start = time.Now()
	if err := extractZip(archive, chunks); err != nil {
		return nil, err
	}
	extractTime := time.Since(start)
	defer os.RemoveAll(chunks)
	defer os.Remove(archive)

	tool, err := filepath.Abs("tools/duckdb/query.mjs")
	if err != nil {
		return nil, err
	}
	if err := checkQuantileDisc(tool); err != nil {
		return nil, err
	}
	// node + DuckDB start-up, on a query that reads nothing: part of the
	// peer's time as a user runs it, shown so it can be subtracted.
	var startup []float64
	reps := min(env.Reps, 3) // each variant reads 10M rows; 3 pairs keep the row near a minute
	var ours, theirs, ratios, oursCPU, theirsCPU []float64
	var mismatch string
	var endpoints int
	for i := 0; i < max(reps, 1); i++ {
		t0 := time.Now()
		bcmd := exec.Command(env.Bpfsnap, "analyze", "--json", archive)
		out, err := bcmd.Output()
		if err != nil {
			return nil, fmt.Errorf("bpfsnap analyze: %v: %s", err, stderrOf(err))
		}
		b := time.Since(t0).Seconds()
		t0 = time.Now()
		cmd := exec.Command("node", tool, duckDBQuantiles)
		cmd.Dir = chunks
		dout, err := cmd.Output()
		if err != nil {
			return nil, fmt.Errorf("duckdb: %v: %s", err, stderrOf(err))
		}
		d := time.Since(t0).Seconds()
		oursCPU, theirsCPU = append(oursCPU, cpuSeconds(bcmd)), append(theirsCPU, cpuSeconds(cmd))
		t0 = time.Now()
		if err := exec.Command("node", tool, "SELECT 1 AS one").Run(); err != nil {
			return nil, fmt.Errorf("duckdb: %w", err)
		}
		startup = append(startup, time.Since(t0).Seconds())
		ours, theirs, ratios = append(ours, b), append(theirs, d), append(ratios, b/d)
		if i == 0 {
			endpoints, mismatch, err = compareQuantiles(out, dout)
			if err != nil {
				return nil, err
			}
		}
	}
	if mismatch != "" {
		return nil, fmt.Errorf("bpfsnap and DuckDB disagree: %s", mismatch)
	}
	r := stats(ratios)
	dsRows, err := benchDataset(env, archive, tool, stats(ours).Median)
	if err != nil {
		return nil, err
	}
	return append([]Row{{
		Name:   "analysis: per-route p50/p90/p99 of 10M HTTP requests, time (s)",
		Result: stats(ours).Format("%.2f"),
		Peer:   "DuckDB: " + stats(theirs).Format("%.2f") + "; ratio " + r.Format("%.2f"),
		Goal:   "within 2× of DuckDB", Met: yesNo(r.Median <= 2),
		Note: fmt.Sprintf("wall time; CPU time (user+sys) %s s vs DuckDB's %s s. `go run ./bench -only analysis`: a %s archive of %d requests (%d endpoints: pid×role×method×route, lognormal latencies, ids in paths) written with formats' writer (%.0f s); "+
			"`bpfsnap analyze --json` (whole process: open, decode, aggregate every section, JSON) vs `node tools/duckdb/query.mjs` with quantile_disc over the extracted chunks "+
			"(process start-up included, %s s of it for SELECT 1; the %.1f s unzip is not counted); %d interleaved pairs. "+
			"Every endpoint's count, p50, p90 and p99 agree exactly (both are nearest rank).",
			stats(oursCPU).Format("%.2f"), stats(theirsCPU).Format("%.2f"), humanMB(st.Size()), analysisRequests, endpoints, genTime.Seconds(), stats(startup).Format("%.2f"), extractTime.Seconds(), max(reps, 1)),
	}}, dsRows...), nil
}

// benchDataset exports the 10M-request archive as a parquet dataset and
// runs the cookbook's slowest-routes query over it with DuckDB, beside
// `bpfsnap analyze` of the archive (analyzeS, measured above).
func benchDataset(env *Env, archive, tool string, analyzeS float64) ([]Row, error) {
	doc, err := os.ReadFile("docs/cookbook.md")
	if err != nil {
		return nil, err
	}
	_, after, ok := strings.Cut(string(doc), "-- duckdb: slowest-routes\n")
	if !ok {
		return nil, fmt.Errorf("docs/cookbook.md has no slowest-routes query")
	}
	query, _, _ := strings.Cut(after, "```")
	var export, duck []float64
	for i := 0; i < min(env.Reps, 2); i++ {
		ds := filepath.Join(env.Dir, "dataset")
		os.RemoveAll(ds)
		t0 := time.Now()
		if out, err := exec.Command(env.Bpfsnap, "export", "--format", "parquet-dataset", "-o", ds, archive).CombinedOutput(); err != nil {
			return nil, fmt.Errorf("export: %v: %s", err, out)
		}
		export = append(export, time.Since(t0).Seconds())
		t0 = time.Now()
		if out, err := exec.Command("node", tool, strings.ReplaceAll(query, "DATASET", ds)).CombinedOutput(); err != nil {
			return nil, fmt.Errorf("duckdb over the dataset: %v: %s", err, out)
		}
		duck = append(duck, time.Since(t0).Seconds())
		os.RemoveAll(ds)
	}
	perM := make([]float64, len(export))
	for i, e := range export {
		perM[i] = e / (analysisRequests / 1e6)
	}
	return []Row{{
		Name:   "dataset export: seconds per million rows (export --format parquet-dataset)",
		Result: stats(perM).Format("%.3f"),
		Note:   fmt.Sprintf("the 10M-request archive above: chunks copied into table=/host=/capture= partitions, %s s in all", stats(export).Format("%.2f")),
	}, {
		Name:   "dataset: the cookbook's slowest-routes query over it, DuckDB, time (s)",
		Result: stats(duck).Format("%.2f"), Peer: fmt.Sprintf("bpfsnap analyze of the archive: %.2f", analyzeS),
		Note: "docs/cookbook.md's query as written (route normalization in SQL, quantile_disc), node + DuckDB start-up included",
	}}, nil
}

// cpuSeconds is the user+sys CPU time of a finished command: on a shared
// machine it moves less than wall time.
func cpuSeconds(cmd *exec.Cmd) float64 {
	if cmd.ProcessState == nil {
		return 0
	}
	return (cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()).Seconds()
}

func humanMB(n int64) string { return fmt.Sprintf("%.0f MB", float64(n)/1e6) }

func stderrOf(err error) string {
	if ee, ok := err.(*exec.ExitError); ok {
		return strings.TrimSpace(string(ee.Stderr))
	}
	return ""
}

// checkQuantileDisc confirms on this DuckDB that quantile_disc is nearest
// rank (rank ceil(q·n)), the definition analyze.Quantile uses, so the
// comparison below compares like with like.
func checkQuantileDisc(tool string) error {
	for _, q := range []string{"0.5", "0.9", "0.99"} {
		sql := `WITH g AS (SELECT n, x FROM range(1, 1200) a(n), range(1, 1200) b(x) WHERE x <= n)
			SELECT count(*)::BIGINT AS bad FROM (SELECT n, quantile_disc(x, ` + q + `) AS d FROM g GROUP BY n)
			WHERE d <> greatest(ceil(` + q + `::DOUBLE * n), 1)`
		out, err := exec.Command("node", tool, sql).Output()
		if err != nil {
			return fmt.Errorf("duckdb: %v: %s", err, stderrOf(err))
		}
		if !strings.Contains(string(out), `"bad":"0"`) && !strings.Contains(string(out), `"bad":0`) {
			return fmt.Errorf("DuckDB's quantile_disc(%s) is not nearest rank here: %s", q, out)
		}
	}
	return nil
}

// compareQuantiles matches analyze's endpoints with DuckDB's groups and
// returns how many there are and the first disagreement, if any.
func compareQuantiles(analyzeJSON, duckJSON []byte) (int, string, error) {
	var s struct {
		HTTP struct {
			Endpoints []struct {
				PID                 uint32
				Role, Method, Route string
				Count               int64
				P50                 float64 `json:"p50_ms"`
				P90                 float64 `json:"p90_ms"`
				P99                 float64 `json:"p99_ms"`
			} `json:"endpoints"`
		} `json:"http"`
	}
	if err := json.Unmarshal(analyzeJSON, &s); err != nil {
		return 0, "", fmt.Errorf("analyze --json: %w", err)
	}
	var rows []map[string]any
	if err := json.Unmarshal(duckJSON, &rows); err != nil {
		return 0, "", fmt.Errorf("duckdb output: %w", err)
	}
	type quant struct {
		n             int64
		p50, p90, p99 float64
	}
	num := func(v any) float64 {
		switch x := v.(type) {
		case float64:
			return x
		case string:
			f, _ := strconv.ParseFloat(x, 64)
			return f
		}
		return math.NaN()
	}
	duck := map[string]quant{}
	for _, r := range rows {
		k := fmt.Sprintf("%v %v %v %v", num(r["pid"]), r["role"], r["method"], r["route"])
		duck[k] = quant{int64(num(r["n"])), num(r["p50"]), num(r["p90"]), num(r["p99"])}
	}
	if len(duck) != len(s.HTTP.Endpoints) {
		return 0, fmt.Sprintf("%d endpoints in analyze, %d groups in DuckDB", len(s.HTTP.Endpoints), len(duck)), nil
	}
	var bad []string
	for _, e := range s.HTTP.Endpoints {
		k := fmt.Sprintf("%v %v %v %v", float64(e.PID), e.Role, e.Method, e.Route)
		d, ok := duck[k]
		got := quant{e.Count, e.P50, e.P90, e.P99}
		if !ok || !sameQuant(got.p50, d.p50) || !sameQuant(got.p90, d.p90) || !sameQuant(got.p99, d.p99) || got.n != d.n {
			bad = append(bad, fmt.Sprintf("%s: analyze %+v, duckdb %+v", k, got, d))
		}
	}
	sort.Strings(bad)
	if len(bad) > 0 {
		return len(duck), fmt.Sprintf("%d endpoints differ, e.g. %s", len(bad), bad[0]), nil
	}
	return len(duck), "", nil
}

// sameQuant compares two latencies in ms computed as float64(ns)/1e6 by
// both sides; JSON round trips keep float64 exactly, so any difference is a
// different rank.
func sameQuant(a, b float64) bool {
	return a == b || math.Abs(a-b) <= 1e-12*math.Max(math.Abs(a), math.Abs(b))
}

func extractZip(archive, dir string) error {
	zr, err := zip.OpenReader(archive)
	if err != nil {
		return err
	}
	defer zr.Close()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for _, f := range zr.File {
		if !strings.HasSuffix(f.Name, ".parquet") || strings.ContainsAny(f.Name, "/\\") {
			continue
		}
		rc, err := f.Open()
		if err != nil {
			return err
		}
		out, err := os.Create(filepath.Join(dir, f.Name))
		if err == nil {
			_, err = io.Copy(out, rc)
			if cerr := out.Close(); err == nil {
				err = cerr
			}
		}
		rc.Close()
		if err != nil {
			return err
		}
	}
	return nil
}

// A synthetic node: services with their routes, each route with a typical
// latency; some services also call others (client rows).
type synthRoute struct {
	method, tmpl string // tmpl holds {n} (a decimal id) or {u} (a UUID)
	medianMs     float64
	weight       int
	errRate      float64
}

var synthServices = []struct {
	comm   string
	pid    uint32
	weight int
	routes []synthRoute
}{
	{"nginx", 2101, 30, []synthRoute{
		{"GET", "/", 0.3, 20, 0}, {"GET", "/static/app.js", 0.2, 30, 0}, {"GET", "/static/style.css", 0.2, 20, 0},
		{"GET", "/images/{n}/thumb", 0.4, 25, 0.001}, {"GET", "/favicon.ico", 0.1, 5, 0},
	}},
	{"shop-api", 2202, 35, []synthRoute{
		{"GET", "/api/products", 4, 30, 0.002}, {"GET", "/api/products/{n}", 2.5, 40, 0.002}, {"GET", "/api/products/{n}/reviews", 12, 8, 0.01},
		{"GET", "/api/search", 35, 10, 0.02}, {"POST", "/api/cart", 6, 8, 0.005}, {"GET", "/api/cart", 3, 10, 0.001},
		{"DELETE", "/api/cart/{n}", 5, 2, 0.001}, {"GET", "/api/users/{n}", 2, 6, 0.001}, {"PUT", "/api/users/{n}", 9, 1, 0.01},
		{"GET", "/healthz", 0.05, 5, 0},
	}},
	{"checkout", 2303, 10, []synthRoute{
		{"POST", "/checkout", 80, 20, 0.03}, {"GET", "/orders/{u}", 7, 30, 0.002}, {"GET", "/orders/{u}/status", 3, 20, 0.001},
		{"POST", "/orders/{u}/cancel", 25, 2, 0.05}, {"GET", "/healthz", 0.05, 5, 0},
	}},
	{"auth", 2404, 15, []synthRoute{
		{"POST", "/token", 15, 30, 0.005}, {"GET", "/introspect", 0.8, 60, 0.001}, {"POST", "/logout", 2, 3, 0}, {"GET", "/healthz", 0.05, 5, 0},
	}},
	{"inventory", 2505, 8, []synthRoute{
		{"GET", "/stock/{n}", 1.5, 60, 0.002}, {"POST", "/stock/{n}/reserve", 9, 15, 0.02}, {"GET", "/warehouses", 20, 3, 0},
	}},
}

// writeHTTPArchive writes an archive of n requests with formats' writer, as
// a capture would: process rows for the services, then requests in time
// order over a 10-minute window, a few without a response.
func writeHTTPArchive(path string, n int) error {
	os.Remove(path)
	os.RemoveAll(path + formats.PartialSuffix)
	const startNs = uint64(10_000_000_000_000)
	window := uint64(600 * time.Second)
	wall := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	m := formats.Manifest{Host: "bench", Kernel: "synthetic", Arch: "amd64",
		Window:  formats.Window{StartWall: wall, EndWall: wall.Add(time.Duration(window)), StartMonoNs: startNs, EndMonoNs: startNs + window, Requested: "10m0s", EndReason: "duration"},
		Probes:  []formats.Probe{{Name: "http", Attached: true}},
		Options: map[string]string{"generator": "bench/analysis.go"}}
	w, err := formats.Create(path, m, formats.CreateOptions{})
	if err != nil {
		return err
	}
	procs := formats.NewTable[formats.ProcessEvent](w, formats.TableProcesses)
	for _, s := range synthServices {
		procs.Write(formats.ProcessEvent{TimeNs: startNs, Kind: formats.ProcessScan, PID: s.pid, PPID: 1, Comm: s.comm, Exe: "/usr/bin/" + s.comm, Cmdline: s.comm, StartNs: startNs - 3600e9})
	}
	procs.Write(formats.ProcessEvent{TimeNs: startNs, Kind: formats.ProcessScan, PID: 2606, PPID: 1, Comm: "loadgen", Exe: "/usr/bin/loadgen", StartNs: startNs - 60e9})
	reqs := formats.NewTable[formats.HTTPRequest](w, formats.TableHTTPRequests)

	rng := rand.New(rand.NewPCG(42, 1))
	type pick struct {
		svc   int
		route int
	}
	var picks []pick // one entry per unit of weight
	for si, s := range synthServices {
		total := 0
		for _, r := range s.routes {
			total += r.weight
		}
		for ri, r := range s.routes {
			for k := 0; k < s.weight*r.weight*100/total; k++ {
				picks = append(picks, pick{si, ri})
			}
		}
	}
	batch := make([]formats.HTTPRequest, 0, 4096)
	var buf []byte
	step := window / uint64(n)
	written := 0
	for i := 0; written < n; i++ {
		p := picks[rng.IntN(len(picks))]
		svc, r := synthServices[p.svc], synthServices[p.svc].routes[p.route]
		buf = buf[:0]
		for j := 0; j < len(r.tmpl); j++ {
			if j+2 < len(r.tmpl) && r.tmpl[j] == '{' && r.tmpl[j+2] == '}' {
				if r.tmpl[j+1] == 'n' {
					buf = strconv.AppendUint(buf, uint64(rng.IntN(200000)), 10)
				} else {
					buf = fmt.Appendf(buf, "%08x-%04x-4%03x-a%03x-%012x", rng.Uint32(), rng.IntN(1<<16), rng.IntN(1<<12), rng.IntN(1<<12), rng.Uint64()&(1<<48-1))
				}
				j += 2
				continue
			}
			buf = append(buf, r.tmpl[j])
		}
		reqNs := startNs + uint64(i)*step + rng.Uint64N(step)
		// Lognormal around the route's median, and a slow tail (GC pauses,
		// lock waits) for 1% of requests.
		ms := r.medianMs * math.Exp(0.6*rng.NormFloat64())
		if rng.IntN(100) == 0 {
			ms *= 5 + 20*rng.Float64()
		}
		status := uint32(200)
		switch {
		case rng.Float64() < r.errRate:
			status = []uint32{500, 502, 503}[rng.IntN(3)]
		case strings.Contains(r.tmpl, "{") && rng.IntN(50) == 0:
			status = 404
		case r.method == "POST" && rng.IntN(4) == 0:
			status = 201
		}
		row := formats.HTTPRequest{
			RequestNs: reqNs, ResponseNs: reqNs + uint64(ms*1e6*0.8) + 1, ResponseEndNs: reqNs + uint64(ms*1e6) + 1,
			PID: svc.pid, TID: svc.pid + uint32(rng.IntN(8)), CgroupID: 5000 + uint64(svc.pid),
			Role: formats.RoleServer, Method: r.method, Path: string(buf), Status: status,
			LocalAddr:  "10.0.0." + strconv.Itoa(int(svc.pid%250)) + ":8080",
			RemoteAddr: "10.0." + strconv.Itoa(rng.IntN(4)) + "." + strconv.Itoa(rng.IntN(250)) + ":" + strconv.Itoa(32768+rng.IntN(28000)),
			Connection: uint64(i/64)*7919 + uint64(svc.pid), RequestBytes: -1, ResponseBytes: int64(200 + rng.IntN(20000)),
		}
		if rng.IntN(200_000) == 0 {
			row.ResponseNs, row.ResponseEndNs, row.Status, row.ResponseBytes = 0, 0, 0, -1 // still waiting at the end
		}
		// A tenth of shop-api's calls show up twice: as the load
		// generator's client side too.
		batch = append(batch, row)
		written++
		if svc.comm == "shop-api" && rng.IntN(10) == 0 && written < n {
			written++
			c := row
			c.PID, c.TID, c.Role, c.CgroupID = 2606, 2606, formats.RoleClient, 4000
			c.LocalAddr, c.RemoteAddr = c.RemoteAddr, c.LocalAddr
			c.RequestNs -= 20_000
			if c.ResponseNs != 0 {
				c.ResponseNs += 30_000
				c.ResponseEndNs += 30_000
			}
			batch = append(batch, c)
		}
		if len(batch) >= 4000 {
			if err := reqs.Write(batch...); err != nil {
				w.Abort()
				return err
			}
			batch = batch[:0]
		}
	}
	if err := reqs.Write(batch...); err != nil {
		w.Abort()
		return err
	}
	return w.Finish(nil)
}
