// Package trigger parses and evaluates the conditions a flight recorder
// (capture --ring) dumps its last window on: `--trigger http.p99>250ms`,
// `http.errors>5%`, `cpu>90%`, `oom`, each with options after commas
// (`route=/api/x`, `cooldown=1m`, `max=3`). The recorder feeds it the rows
// it already writes (HTTP requests, CPU samples) and OOM kills, and asks
// every second which conditions hold. Pure Go, no kernel: tested on its own.
package trigger

import (
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/bpfsnap/bpfsnap/analyze"
	"github.com/bpfsnap/bpfsnap/formats"
)

// Kind is what a condition looks at.
type Kind int

const (
	HTTPLatency Kind = iota + 1 // a percentile of end-to-end latency, per endpoint
	HTTPErrors                  // the share of 5xx responses, per endpoint
	CPU                         // a target process's CPU use
	OOM                         // the OOM killer chose a target
)

// Defaults. Conditions look at the last Window of data; an HTTP condition
// needs MinRequests in it, so two slow requests do not fire a p99.
const (
	Window          = 10 * time.Second
	MinRequests     = 20
	DefaultCooldown = time.Minute
	DefaultMax      = 10
)

// Spec is one --trigger condition.
type Spec struct {
	Text      string // as given, for the manifest
	Kind      Kind
	Quantile  float64 // HTTPLatency: 0.5 for p50 …
	Threshold float64 // HTTPLatency: ms; HTTPErrors and CPU: a fraction (0.05 = 5%)
	// Route limits an HTTP condition to one route (normalized as analyze
	// does); empty means any endpoint.
	Route    string
	Cooldown time.Duration
	Max      int
}

// Parse reads one condition.
func Parse(text string) (Spec, error) {
	parts := strings.Split(strings.TrimSpace(text), ",")
	sp := Spec{Text: strings.TrimSpace(text), Cooldown: DefaultCooldown, Max: DefaultMax}
	cond := strings.ReplaceAll(parts[0], " ", "")
	switch {
	case cond == "oom":
		sp.Kind = OOM
	case strings.HasPrefix(cond, "http.p"):
		q, limit, ok := strings.Cut(strings.TrimPrefix(cond, "http.p"), ">")
		if !ok {
			return sp, fmt.Errorf("--trigger %q: want http.pNN>DURATION, e.g. http.p99>250ms", text)
		}
		var err error
		if sp.Quantile, err = parseQuantile(q); err != nil {
			return sp, fmt.Errorf("--trigger %q: %w", text, err)
		}
		d, err := time.ParseDuration(limit)
		if err != nil || d <= 0 {
			return sp, fmt.Errorf("--trigger %q: %q is not a positive duration", text, limit)
		}
		sp.Kind, sp.Threshold = HTTPLatency, float64(d)/float64(time.Millisecond)
	case strings.HasPrefix(cond, "http.errors>"):
		v, err := parsePercent(strings.TrimPrefix(cond, "http.errors>"))
		if err != nil {
			return sp, fmt.Errorf("--trigger %q: %w", text, err)
		}
		sp.Kind, sp.Threshold = HTTPErrors, v
	case strings.HasPrefix(cond, "cpu>"):
		v, err := parsePercent(strings.TrimPrefix(cond, "cpu>"))
		if err != nil {
			return sp, fmt.Errorf("--trigger %q: %w", text, err)
		}
		sp.Kind, sp.Threshold = CPU, v
	default:
		return sp, fmt.Errorf("--trigger %q: unknown condition (use http.pNN>DURATION, http.errors>N%%, cpu>N%%, oom)", text)
	}
	for _, opt := range parts[1:] {
		k, v, ok := strings.Cut(strings.TrimSpace(opt), "=")
		if !ok {
			return sp, fmt.Errorf("--trigger %q: option %q is not key=value", text, opt)
		}
		switch k {
		case "route":
			if sp.Kind != HTTPLatency && sp.Kind != HTTPErrors {
				return sp, fmt.Errorf("--trigger %q: route= applies to http conditions only", text)
			}
			sp.Route = analyze.NormalizeRoute(v)
		case "cooldown":
			d, err := time.ParseDuration(v)
			if err != nil || d < 0 {
				return sp, fmt.Errorf("--trigger %q: cooldown %q is not a duration", text, v)
			}
			sp.Cooldown = d
		case "max":
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 {
				return sp, fmt.Errorf("--trigger %q: max %q is not a positive number", text, v)
			}
			sp.Max = n
		default:
			return sp, fmt.Errorf("--trigger %q: unknown option %q (route, cooldown, max)", text, k)
		}
	}
	return sp, nil
}

func parseQuantile(q string) (float64, error) {
	// p50, p90, p99, p999 (99.9), p99.9
	if q == "" || strings.Trim(q, "0123456789.") != "" {
		return 0, fmt.Errorf("percentile p%s is not a number", q)
	}
	if !strings.Contains(q, ".") && len(q) > 2 {
		q = q[:2] + "." + q[2:]
	}
	v, err := strconv.ParseFloat(q, 64)
	if err != nil || v <= 0 || v >= 100 {
		return 0, fmt.Errorf("percentile p%s is not between 0 and 100", q)
	}
	return math.Round(v*1e7) / 1e9, nil // 99.9 → 0.999 exactly as written
}

func parsePercent(s string) (float64, error) {
	v, err := strconv.ParseFloat(strings.TrimSuffix(s, "%"), 64)
	if err != nil || !strings.HasSuffix(s, "%") || v < 0 || v > 100 {
		return 0, fmt.Errorf("%q is not a percentage (e.g. 5%%)", s)
	}
	return v / 100, nil
}

// Fired is a condition that held, with what it saw.
type Fired struct {
	Spec   Spec
	Detail string
}

// Evaluator keeps the last Window of what the conditions look at. Its Add
// methods are called from the recorder's ring readers, Check from its loop.
type Evaluator struct {
	mu    sync.Mutex
	specs []Spec
	// per spec: when it last fired (monotonic ns) and how often
	last  []uint64
	count []int
	eps   map[endpointKey]*endpointStats
	cpu   map[uint32]*cpuStats
	// cpuRate is the samples per second one fully busy CPU gives (the
	// sampling frequency); 0 without CPU sampling.
	cpuRate float64
	names   map[uint32]string // comm per pid, for details
	ooms    []oomKill
}

type endpointKey struct {
	pid                 uint32
	role, method, route string
}

// seconds of history kept per endpoint and process: one slot per second.
const slots = int(Window / time.Second)

// endpointStats holds, per second, a log-bucketed latency histogram and
// the error count: bounded memory whatever the request rate, percentiles
// within the bucket width (1.5%); the archive's own figures stay exact.
type endpointStats struct {
	sec    [slots]int64 // which second each slot holds
	hist   [slots]map[int]uint32
	n, err [slots]uint32
}

type cpuStats struct {
	sec [slots]int64
	n   [slots]uint32
}

type oomKill struct {
	pid  uint32
	comm string
	ns   uint64
}

// New returns an evaluator of specs. cpuHz is the CPU sampling frequency
// (0 without CPU sampling: cpu conditions then never hold).
func New(specs []Spec, cpuHz float64) *Evaluator {
	return &Evaluator{specs: specs, last: make([]uint64, len(specs)), count: make([]int, len(specs)),
		eps: map[endpointKey]*endpointStats{}, cpu: map[uint32]*cpuStats{}, cpuRate: cpuHz, names: map[uint32]string{}}
}

// Needs reports whether any condition looks at k.
func (e *Evaluator) Needs(k Kind) bool {
	for _, s := range e.specs {
		if s.Kind == k {
			return true
		}
	}
	return false
}

const bucketWidth = 1.015

func bucketOf(ms float64) int {
	if ms <= 0.001 {
		return 0
	}
	return int(math.Log(ms/0.001)/math.Log(bucketWidth)) + 1
}

func bucketValue(b int) float64 {
	if b == 0 {
		return 0.001
	}
	return 0.001 * math.Pow(bucketWidth, float64(b))
}

// AddHTTP takes written request rows: those with a response end are
// counted at the second their response ended.
func (e *Evaluator) AddHTTP(rows []formats.HTTPRequest) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for i := range rows {
		r := &rows[i]
		if r.ResponseEndNs == 0 || r.ResponseEndNs < r.RequestNs {
			continue
		}
		k := endpointKey{r.PID, r.Role, r.Method, analyze.NormalizeRoute(r.Path)}
		st := e.eps[k]
		if st == nil {
			st = &endpointStats{}
			e.eps[k] = st
		}
		sec := int64(r.ResponseEndNs / 1e9)
		i := int(sec % int64(slots))
		if st.sec[i] != sec {
			st.sec[i], st.hist[i], st.n[i], st.err[i] = sec, map[int]uint32{}, 0, 0
		}
		st.hist[i][bucketOf(float64(r.ResponseEndNs-r.RequestNs)/1e6)]++
		st.n[i]++
		if r.Status >= 500 {
			st.err[i]++
		}
	}
}

// AddCPU takes written CPU sample rows.
func (e *Evaluator) AddCPU(rows []formats.CPUSample) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for i := range rows {
		r := &rows[i]
		st := e.cpu[r.PID]
		if st == nil {
			st = &cpuStats{}
			e.cpu[r.PID] = st
		}
		sec := int64(r.TimeNs / 1e9)
		j := int(sec % int64(slots))
		if st.sec[j] != sec {
			st.sec[j], st.n[j] = sec, 0
		}
		st.n[j]++
		if r.Comm != "" {
			e.names[r.PID] = r.Comm
		}
	}
}

// AddOOM records that the OOM killer chose pid.
func (e *Evaluator) AddOOM(pid uint32, comm string, ns uint64) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.ooms = append(e.ooms, oomKill{pid, comm, ns})
}

// Check returns the conditions that hold at now (CLOCK_MONOTONIC ns) and
// may fire (past their cool-down, under their maximum), and forgets data
// older than the window.
func (e *Evaluator) Check(now uint64) []Fired {
	e.mu.Lock()
	defer e.mu.Unlock()
	nowSec := int64(now / 1e9)
	inWindow := func(sec int64) bool { return sec > nowSec-int64(slots) && sec <= nowSec }
	var out []Fired
	for i, sp := range e.specs {
		if e.count[i] >= sp.Max || (e.count[i] > 0 && now-e.last[i] < uint64(sp.Cooldown)) {
			continue
		}
		var detail string
		switch sp.Kind {
		case HTTPLatency, HTTPErrors:
			detail = e.checkHTTP(sp, inWindow)
		case CPU:
			detail = e.checkCPU(sp, inWindow)
		case OOM:
			if len(e.ooms) > 0 {
				k := e.ooms[len(e.ooms)-1]
				detail = fmt.Sprintf("the OOM killer chose %s [%d]", k.comm, k.pid)
			}
		}
		if detail != "" {
			e.last[i], e.count[i] = now, e.count[i]+1
			out = append(out, Fired{Spec: sp, Detail: detail})
		}
	}
	e.ooms = e.ooms[:0]
	for k, st := range e.eps {
		if !anyInWindow(st.sec[:], inWindow) {
			delete(e.eps, k)
		}
	}
	for pid, st := range e.cpu {
		if !anyInWindow(st.sec[:], inWindow) {
			delete(e.cpu, pid)
			delete(e.names, pid)
		}
	}
	return out
}

func anyInWindow(secs []int64, in func(int64) bool) bool {
	for _, s := range secs {
		if in(s) {
			return true
		}
	}
	return false
}

// checkHTTP returns a detail when an endpoint (the worst one) breaks the
// condition over the window.
func (e *Evaluator) checkHTTP(sp Spec, in func(int64) bool) string {
	keys := make([]endpointKey, 0, len(e.eps))
	for k := range e.eps {
		if sp.Route == "" || k.route == sp.Route {
			keys = append(keys, k)
		}
	}
	// Deterministic: the first endpoint in order that breaks it.
	sort.Slice(keys, func(i, j int) bool {
		a, b := keys[i], keys[j]
		if a.route != b.route {
			return a.route < b.route
		}
		if a.method != b.method {
			return a.method < b.method
		}
		if a.role != b.role {
			return a.role < b.role
		}
		return a.pid < b.pid
	})
	for _, k := range keys {
		st := e.eps[k]
		var n, errs uint32
		merged := map[int]uint32{}
		for i := range st.sec {
			if !in(st.sec[i]) {
				continue
			}
			n += st.n[i]
			errs += st.err[i]
			for b, c := range st.hist[i] {
				merged[b] += c
			}
		}
		if n < MinRequests {
			continue
		}
		what := fmt.Sprintf("%s %s (%s, pid %d), %d requests in the last %s", k.method, k.route, k.role, k.pid, n, Window)
		if sp.Kind == HTTPErrors {
			if share := float64(errs) / float64(n); share > sp.Threshold {
				return fmt.Sprintf("%.1f%% 5xx on %s", 100*share, what)
			}
			continue
		}
		if q := quantile(merged, n, sp.Quantile); q > sp.Threshold {
			return fmt.Sprintf("p%s %.1f ms on %s", strconv.FormatFloat(sp.Quantile*100, 'f', -1, 64), q, what)
		}
	}
	return ""
}

// quantile is the nearest-rank quantile of a bucketed histogram: the
// bucket's upper bound.
func quantile(h map[int]uint32, n uint32, q float64) float64 {
	buckets := make([]int, 0, len(h))
	for b := range h {
		buckets = append(buckets, b)
	}
	sort.Ints(buckets)
	rank := uint32(math.Ceil(q * float64(n)))
	var seen uint32
	for _, b := range buckets {
		seen += h[b]
		if seen >= rank {
			return bucketValue(b)
		}
	}
	return 0
}

func (e *Evaluator) checkCPU(sp Spec, in func(int64) bool) string {
	if e.cpuRate <= 0 {
		return ""
	}
	pids := make([]uint32, 0, len(e.cpu))
	for pid := range e.cpu {
		pids = append(pids, pid)
	}
	sort.Slice(pids, func(i, j int) bool { return pids[i] < pids[j] })
	for _, pid := range pids {
		st := e.cpu[pid]
		var n uint32
		for i := range st.sec {
			if in(st.sec[i]) {
				n += st.n[i]
			}
		}
		if use := float64(n) / (e.cpuRate * Window.Seconds()); use > sp.Threshold {
			return fmt.Sprintf("%s [%d] used %.0f%% of a CPU over the last %s", e.names[pid], pid, 100*use, Window)
		}
	}
	return ""
}
