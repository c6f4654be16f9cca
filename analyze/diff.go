package analyze

import (
	"bufio"
	"fmt"
	"io"
	"math"
	"sort"
	"strings"
	"time"
)

// Diff compares two captures, BASE (before, or the healthy node) and NEW
// (after, or the sick one): what `bpfsnap diff --json` prints and what the
// differential flame graph and the report's comparison are drawn from.
// Nothing is matched by pid: endpoints by role, method, route and process
// (or Kubernetes workload), functions and stacks by name, leak sites by
// process, kind and call stack, so two machines' archives compare.
type Diff struct {
	Base DiffSide `json:"base"`
	New  DiffSide `json:"new"`
	// HTTP, CPU and Mem are nil unless both sides have that section.
	HTTP   *HTTPDiff   `json:"http,omitempty"`
	CPU    *CPUDiff    `json:"cpu,omitempty"`
	Mem    *MemDiff    `json:"mem,omitempty"`
	OffCPU *OffCPUDiff `json:"offcpu,omitempty"`

	// folded holds both sides' CPU stacks merged, for the differential
	// flame graph and `flamegraph --diff --folded`.
	folded []FoldedDiff
}

// DiffSide says what one side of the comparison is.
type DiffSide struct {
	Archive string    `json:"archive"`
	Host    string    `json:"host"`
	Start   time.Time `json:"start"`
	// DurationS is the length of the part of the window analyzed (the
	// whole window, or --from/--to).
	DurationS float64 `json:"duration_s"`
	// Filter says in words what the side was restricted to.
	Filter   string   `json:"filter"`
	Warnings []string `json:"warnings"`
	narrowed bool
}

// NoiseZ is the z-score below which a change of a share between the two
// sides counts as sampling noise: the change in percentage points over its
// standard error (ShareChange). Profiles are bursty (samples of one request
// are not independent) and a flame graph compares hundreds of frames at
// once, so the bar is higher than the usual 2.
const NoiseZ = 4

// LoadDiff loads both archives through the reading path (Load), each with
// its own request, and compares them.
func LoadDiff(basePath string, base Request, newPath string, cur Request) (*Diff, error) {
	b, err := Load(basePath, base)
	if err != nil {
		return nil, fmt.Errorf("base: %w", err)
	}
	n, err := Load(newPath, cur)
	if err != nil {
		return nil, fmt.Errorf("new: %w", err)
	}
	return Compare(b, n), nil
}

// Compare compares two summaries made by Analyze (or Load). Sections present
// on only one side are left out (nil).
func Compare(base, cur *Summary) *Diff {
	d := &Diff{Base: diffSide(base), New: diffSide(cur)}
	if base.HTTP != nil && cur.HTTP != nil {
		d.HTTP = compareHTTP(base, cur)
	}
	bp, np := base.CPUProfile(), cur.CPUProfile()
	if bp != nil && np != nil {
		bf, nf := bp.Folded(FoldOptions{}), np.Folded(FoldOptions{})
		d.folded = MergeFolded(bf, nf)
		d.CPU = compareCPU(d.folded, bp, np, d.Base.DurationS, d.New.DurationS)
	}
	if base.Mem != nil && cur.Mem != nil {
		d.Mem = compareMem(base.Mem, cur.Mem)
	}
	if base.OffCPU != nil && cur.OffCPU != nil {
		d.OffCPU = compareOffCPU(base.OffCPU, cur.OffCPU, d.Base.DurationS, d.New.DurationS)
	}
	return d
}

// RequireCPU returns the merged CPU stacks, or an error naming the side
// without samples (against an empty side every frame would look new).
func (d *Diff) RequireCPU() ([]FoldedDiff, error) {
	var b, n uint64
	if d.CPU != nil {
		b, n = d.CPU.BaseSamples, d.CPU.NewSamples
	}
	for _, s := range []struct {
		side    DiffSide
		samples uint64
	}{{d.Base, b}, {d.New, n}} {
		switch {
		case s.samples > 0:
		case s.side.narrowed:
			return nil, fmt.Errorf("%s: no CPU samples match %s", s.side.Archive, s.side.Filter)
		default:
			return nil, fmt.Errorf("%s has no CPU samples (capture with -p cpu)", s.side.Archive)
		}
	}
	return d.folded, nil
}

func diffSide(s *Summary) DiffSide {
	start, dur := s.Span()
	w := s.Warnings
	if w == nil {
		w = []string{}
	}
	return DiffSide{Archive: s.Archive, Host: s.Manifest.Host, Start: start, DurationS: dur.Seconds(),
		Filter: s.filter.Describe(), Warnings: w, narrowed: s.filter.Narrowed()}
}

// ShareChange compares the share a count has of its side's total:
// change = 100·(n/nTotal − b/bTotal) in percentage points, and z its size
// in standard errors of a two-proportion test (pooled share), so a change
// with |z| < NoiseZ is what sampling alone would give.
func ShareChange(b, bTotal, n, nTotal uint64) (change, z float64) {
	if bTotal == 0 || nTotal == 0 {
		return 0, 0
	}
	pb, pn := float64(b)/float64(bTotal), float64(n)/float64(nTotal)
	change = 100 * (pn - pb)
	p := float64(b+n) / float64(bTotal+nTotal)
	se := math.Sqrt(p * (1 - p) * (1/float64(bTotal) + 1/float64(nTotal)))
	if se == 0 {
		return change, 0
	}
	return change, (pn - pb) / se
}

func pct(n, total uint64) float64 {
	if total == 0 {
		return 0
	}
	return 100 * float64(n) / float64(total)
}

// --- HTTP ---

// HTTPDiff is the http section of a comparison.
type HTTPDiff struct {
	BaseRequests int64   `json:"base_requests"`
	NewRequests  int64   `json:"new_requests"`
	BaseRateRPS  float64 `json:"base_rate_rps"`
	NewRateRPS   float64 `json:"new_rate_rps"`
	// Endpoints are ordered by Impact, the largest first: regressions
	// lead, unchanged endpoints follow, improvements and endpoints gone
	// from NEW come last.
	Endpoints []EndpointDiff `json:"endpoints"`
}

// EndpointDiff is one endpoint on both sides. Base or New is nil when the
// endpoint was not seen on that side.
type EndpointDiff struct {
	Role    string `json:"role"`
	Method  string `json:"method"`
	Route   string `json:"route"`
	Process string `json:"process"`
	// Workload is NAMESPACE/NAME of the pods serving it, the pod name
	// without the suffixes Kubernetes generates per replica (so pods of
	// one Deployment on two nodes match); empty when not attributed.
	Workload string        `json:"workload,omitempty"`
	Base     *EndpointSide `json:"base,omitempty"`
	New      *EndpointSide `json:"new,omitempty"`
	// Change is NEW minus BASE, present when both sides saw the endpoint.
	Change *EndpointChange `json:"change,omitempty"`
	// Impact is the p99 added (ms, NEW minus BASE, a missing side counting
	// as 0) times the request rate (NEW's, or BASE's for an endpoint gone
	// from NEW): how much slower the tail got, weighted by how many
	// requests it touches. The ranking key.
	Impact float64 `json:"impact"`
}

// EndpointSide is one side's figures for an endpoint, over every process
// that served it there (their requests merged, percentiles exact).
type EndpointSide struct {
	Count    int64    `json:"count"`
	Errors   int64    `json:"errors"`
	ErrorPct float64  `json:"error_pct"`
	RateRPS  float64  `json:"rate_rps"`
	P50      float64  `json:"p50_ms"`
	P90      float64  `json:"p90_ms"`
	P99      float64  `json:"p99_ms"`
	P999     float64  `json:"p999_ms"`
	Max      float64  `json:"max_ms"`
	Mean     float64  `json:"mean_ms"`
	TTFBP50  float64  `json:"ttfb_p50_ms"`
	TTFBP99  float64  `json:"ttfb_p99_ms"`
	PIDs     []uint32 `json:"pids"`
	Pods     []string `json:"pods,omitempty"`
	// TimeSplit is where a request's time went, on average, when the
	// archive can tell (see analyze.TimeSplit).
	TimeSplit *RequestSplit `json:"time_split,omitempty"`
	// latencies and ttfb are the merged requests' figures, sorted.
	latencies, ttfb []float64
}

// RequestSplit is a TimeSplit per request: the serving thread's time in
// an average request (ms) on the CPU, blocked (by wait class) and in the
// run queue.
type RequestSplit struct {
	// Requests are those with a serving thread, which the split covers.
	Requests        int64              `json:"requests"`
	WallMs          float64            `json:"wall_ms"`
	OnCPUMs         float64            `json:"on_cpu_ms"`
	OnCPUSource     string             `json:"on_cpu_source"`
	OffCPUMs        float64            `json:"off_cpu_ms"`
	RunqueueMs      float64            `json:"runqueue_ms"`
	OffCPUByClassMs map[string]float64 `json:"off_cpu_by_class_ms,omitempty"`
}

// parts returns the split's parts by name (on_cpu, runqueue, each wait
// class); only on_cpu when the archive had no offcpu probe (the rest is
// not known then).
func (r *RequestSplit) parts() map[string]float64 {
	out := map[string]float64{"on_cpu": r.OnCPUMs}
	if r.OnCPUSource == OnCPUFromScheduler {
		out["runqueue"] = r.RunqueueMs
		for c, v := range r.OffCPUByClassMs {
			out[c] = v
		}
	}
	return out
}

// EndpointChange is NEW minus BASE.
type EndpointChange struct {
	P50 float64 `json:"p50_ms"`
	P90 float64 `json:"p90_ms"`
	P99 float64 `json:"p99_ms"`
	// P99Ratio is NEW's p99 over BASE's (0 when BASE's is 0).
	P99Ratio float64 `json:"p99_ratio"`
	RateRPS  float64 `json:"rate_rps"`
	// ErrorPct is the change of the error rate in percentage points.
	ErrorPct float64 `json:"error_pct"`
	TTFBP99  float64 `json:"ttfb_p99_ms"`
	// TimeSplit is the change of each part of an average request's time
	// (ms: on_cpu, runqueue and each wait class; on_cpu only when either
	// side lacks the offcpu probe), when both sides have a split. Cause is
	// the part that grew most, when it accounts for at least half of the
	// mean latency added.
	TimeSplit map[string]float64 `json:"time_split,omitempty"`
	Cause     string             `json:"cause,omitempty"`
}

// splitChange fills the change's time split from both sides'.
func (c *EndpointChange) splitChange(b, n *EndpointSide) {
	if b.TimeSplit == nil || n.TimeSplit == nil {
		return
	}
	bp, np := b.TimeSplit.parts(), n.TimeSplit.parts()
	if b.TimeSplit.OnCPUSource != n.TimeSplit.OnCPUSource {
		bp, np = map[string]float64{"on_cpu": bp["on_cpu"]}, map[string]float64{"on_cpu": np["on_cpu"]}
	}
	c.TimeSplit = map[string]float64{}
	for k := range bp {
		c.TimeSplit[k] = np[k] - bp[k]
	}
	for k := range np {
		c.TimeSplit[k] = np[k] - bp[k]
	}
	best := 0.0
	for _, k := range append([]string{"on_cpu", "runqueue"}, WaitClasses...) {
		if v := c.TimeSplit[k]; v > best {
			c.Cause, best = k, v
		}
	}
	if added := n.Mean - b.Mean; added <= 0 || best < added/2 {
		c.Cause = ""
	}
}

// EndpointKey is what an endpoint is matched by across archives.
type EndpointKey struct {
	Role, Method, Route, Process, Workload string
}

// Key returns the endpoint's match key.
func (e *EndpointDiff) Key() EndpointKey {
	return EndpointKey{e.Role, e.Method, e.Route, e.Process, e.Workload}
}

// Find returns the endpoint matching key, or nil.
func (h *HTTPDiff) Find(key EndpointKey) *EndpointDiff {
	for i := range h.Endpoints {
		if h.Endpoints[i].Key() == key {
			return &h.Endpoints[i]
		}
	}
	return nil
}

// EndpointKeys returns the match key of each of the summary's endpoints,
// in the order of s.HTTP.Endpoints.
func (s *Summary) EndpointKeys() []EndpointKey {
	if s.HTTP == nil {
		return nil
	}
	pods := podsOf(s.Processes)
	out := make([]EndpointKey, len(s.HTTP.Endpoints))
	for i, e := range s.HTTP.Endpoints {
		out[i] = EndpointKey{e.Role, e.Method, e.Route, e.Process, workloadOf(pods[e.PID])}
	}
	return out
}

// podsOf maps pids to NAMESPACE/POD (the last attributed life of each).
func podsOf(procs []Process) map[uint32]string {
	out := map[uint32]string{}
	for _, p := range procs {
		if p.Pod != "" {
			out[p.PID] = p.Namespace + "/" + p.Pod
		}
	}
	return out
}

// kubeSuffixAlphabet is the alphabet Kubernetes draws the random parts of
// generated names from (apimachinery's rand.SafeEncodeString: no vowels,
// no 0, 1, 3), so a suffix like "-login" is never taken for one.
const kubeSuffixAlphabet = "bcdfghjklmnpqrstvwxz2456789"

// workloadOf strips the per-replica suffixes Kubernetes generates from a
// NAMESPACE/POD name: the pod's 5-character suffix (Deployment, DaemonSet,
// Job pods) and then a ReplicaSet's pod-template hash (6 to 10
// characters), so "shop/api-7d9f8b6c5d-xk2p9" is "shop/api". StatefulSet
// ordinals stay: web-0 is its own identity.
func workloadOf(pod string) string {
	if pod == "" {
		return ""
	}
	name := pod
	if cut, ok := cutKubeSuffix(name, 5, 5); ok {
		name = cut
		if cut, ok := cutKubeSuffix(name, 6, 10); ok {
			name = cut
		}
	}
	return name
}

func cutKubeSuffix(name string, minLen, maxLen int) (string, bool) {
	i := strings.LastIndexByte(name, '-')
	if i <= 0 || strings.LastIndexByte(name[:i], '/') == i-1 {
		return name, false
	}
	suf := name[i+1:]
	if len(suf) < minLen || len(suf) > maxLen {
		return name, false
	}
	for j := 0; j < len(suf); j++ {
		if strings.IndexByte(kubeSuffixAlphabet, suf[j]) < 0 {
			return name, false
		}
	}
	return name[:i], true
}

// httpSide merges one summary's endpoints by key.
func httpSide(s *Summary) map[EndpointKey]*EndpointSide {
	pods := podsOf(s.Processes)
	keys := s.EndpointKeys()
	out := map[EndpointKey]*EndpointSide{}
	for i := range s.HTTP.Endpoints {
		e, k := &s.HTTP.Endpoints[i], keys[i]
		side := out[k]
		if side == nil {
			side = &EndpointSide{}
			out[k] = side
		}
		side.Count += e.Count
		side.Errors += e.Errors
		side.RateRPS += e.RateRPS
		side.latencies = append(side.latencies, e.Latencies...)
		side.ttfb = append(side.ttfb, e.ttfb...)
		side.addSplit(e.TimeSplit)
		side.PIDs = append(side.PIDs, e.PID)
		if pod := pods[e.PID]; pod != "" && !contains(side.Pods, pod) {
			side.Pods = append(side.Pods, pod)
		}
	}
	for _, side := range out {
		sort.Float64s(side.ttfb)
		side.TTFBP50, side.TTFBP99 = Quantile(side.ttfb, 0.50), Quantile(side.ttfb, 0.99)
		side.finishSplit()
		l := side.latencies
		sort.Float64s(l)
		sort.Slice(side.PIDs, func(i, j int) bool { return side.PIDs[i] < side.PIDs[j] })
		sort.Strings(side.Pods)
		if side.Count > 0 {
			side.ErrorPct = 100 * float64(side.Errors) / float64(side.Count)
		}
		if len(l) == 0 {
			continue
		}
		side.P50, side.P90, side.P99, side.P999 = Quantile(l, 0.50), Quantile(l, 0.90), Quantile(l, 0.99), Quantile(l, 0.999)
		side.Max = l[len(l)-1]
		var sum float64
		for _, v := range l {
			sum += v
		}
		side.Mean = sum / float64(len(l))
	}
	return out
}

// addSplit adds a process's time split of the endpoint (sums, made per
// request by finishSplit).
func (side *EndpointSide) addSplit(ts *TimeSplit) {
	if ts == nil || ts.Requests == 0 {
		return
	}
	r := side.TimeSplit
	if r == nil {
		r = &RequestSplit{OnCPUSource: ts.OnCPUSource, OffCPUByClassMs: map[string]float64{}}
		side.TimeSplit = r
	}
	r.Requests += ts.Requests
	r.WallMs += ts.WallMs
	r.OnCPUMs += ts.OnCPUMs
	r.OffCPUMs += ts.OffCPUMs
	r.RunqueueMs += ts.RunqueueMs
	for c, v := range ts.OffCPUByClassMs {
		r.OffCPUByClassMs[c] += v
	}
}

func (side *EndpointSide) finishSplit() {
	r := side.TimeSplit
	if r == nil {
		return
	}
	n := float64(r.Requests)
	r.WallMs, r.OnCPUMs, r.OffCPUMs, r.RunqueueMs = r.WallMs/n, r.OnCPUMs/n, r.OffCPUMs/n, r.RunqueueMs/n
	for c := range r.OffCPUByClassMs {
		r.OffCPUByClassMs[c] /= n
	}
}

func contains(xs []string, x string) bool {
	for _, v := range xs {
		if v == x {
			return true
		}
	}
	return false
}

func compareHTTP(base, cur *Summary) *HTTPDiff {
	h := &HTTPDiff{BaseRequests: base.HTTP.Requests, NewRequests: cur.HTTP.Requests}
	if _, dur := base.Span(); dur > 0 {
		h.BaseRateRPS = float64(base.HTTP.Requests) / dur.Seconds()
	}
	if _, dur := cur.Span(); dur > 0 {
		h.NewRateRPS = float64(cur.HTTP.Requests) / dur.Seconds()
	}
	bs, ns := httpSide(base), httpSide(cur)
	keys := map[EndpointKey]bool{}
	for k := range bs {
		keys[k] = true
	}
	for k := range ns {
		keys[k] = true
	}
	for k := range keys {
		e := EndpointDiff{Role: k.Role, Method: k.Method, Route: k.Route, Process: k.Process, Workload: k.Workload,
			Base: bs[k], New: ns[k]}
		var bp99, np99, rate float64
		if e.Base != nil {
			bp99, rate = e.Base.P99, e.Base.RateRPS
		}
		if e.New != nil {
			np99, rate = e.New.P99, e.New.RateRPS
		}
		if e.Base != nil && e.New != nil {
			c := &EndpointChange{P50: e.New.P50 - e.Base.P50, P90: e.New.P90 - e.Base.P90, P99: np99 - bp99,
				RateRPS: e.New.RateRPS - e.Base.RateRPS, ErrorPct: e.New.ErrorPct - e.Base.ErrorPct, TTFBP99: e.New.TTFBP99 - e.Base.TTFBP99}
			c.splitChange(e.Base, e.New)
			if bp99 > 0 {
				c.P99Ratio = np99 / bp99
			}
			e.Change = c
		}
		e.Impact = (np99 - bp99) * rate
		h.Endpoints = append(h.Endpoints, e)
	}
	sort.Slice(h.Endpoints, func(i, j int) bool {
		a, b := &h.Endpoints[i], &h.Endpoints[j]
		if a.Impact != b.Impact {
			return a.Impact > b.Impact
		}
		ka, kb := a.Key(), b.Key()
		for _, c := range [][2]string{{ka.Route, kb.Route}, {ka.Method, kb.Method}, {ka.Role, kb.Role}, {ka.Process, kb.Process}, {ka.Workload, kb.Workload}} {
			if c[0] != c[1] {
				return c[0] < c[1]
			}
		}
		return false
	})
	return h
}

// --- CPU ---

// CPUDiff is the cpu section of a comparison. Shares are percentages of
// each side's own samples, so windows of different lengths, sampling
// frequencies and machines compare.
type CPUDiff struct {
	BaseSamples uint64 `json:"base_samples"`
	NewSamples  uint64 `json:"new_samples"`
	// BaseCores and NewCores are the CPU the samples stand for, in cores
	// (samples × period over the analyzed duration); 0 when the archive
	// does not record its sampling frequency.
	BaseCores float64 `json:"base_cores"`
	NewCores  float64 `json:"new_cores"`
	// Functions are ordered by the size of the self share change, grown
	// and shrunk alike, then the total share change (at most
	// maxDiffFunctions; FunctionsTotal counts them all).
	Functions      []FunctionDiff `json:"functions"`
	FunctionsTotal int            `json:"functions_total"`
	// Processes compares each process name's share of the samples.
	Processes []ProcessShareDiff `json:"processes"`
}

// FunctionDiff is one function on both sides: self share (it was the
// leaf) and total share (anywhere on the stack), in percent of the side's
// samples, and the change of the self share in percentage points with its
// size in standard errors.
type FunctionDiff struct {
	Name           string  `json:"name"`
	Kernel         bool    `json:"kernel,omitempty"`
	BaseShare      float64 `json:"base_share"`
	NewShare       float64 `json:"new_share"`
	BaseTotalShare float64 `json:"base_total_share"`
	NewTotalShare  float64 `json:"new_total_share"`
	BaseSelf       uint64  `json:"base_self_samples"`
	NewSelf        uint64  `json:"new_self_samples"`
	Change         float64 `json:"change"`
	TotalChange    float64 `json:"total_change"`
	Z              float64 `json:"z"`
	// Significant is |Z| >= NoiseZ: a change sampling alone would not give.
	Significant bool `json:"significant"`
}

// ProcessShareDiff is one process name's share of each side's samples.
type ProcessShareDiff struct {
	Name        string  `json:"name"`
	BaseShare   float64 `json:"base_share"`
	NewShare    float64 `json:"new_share"`
	Change      float64 `json:"change"`
	Significant bool    `json:"significant"`
}

// maxDiffFunctions bounds the functions listed: a whole-node capture has
// thousands, and the ones that did not move are at the end.
const maxDiffFunctions = 200

// FoldedDiff is one stack of both sides, root (process) first: the line
// difffolded.pl writes, "stack BASE_COUNT NEW_COUNT".
type FoldedDiff struct {
	Frames []string `json:"frames"`
	Base   uint64   `json:"base"`
	New    uint64   `json:"new"`
}

// MergeFolded joins two sides' folded stacks by their text; a stack seen
// on one side only has 0 on the other. The result is sorted by stack.
func MergeFolded(base, cur []FoldedStack) []FoldedDiff {
	idx := map[string]int{}
	var out []FoldedDiff
	add := func(stacks []FoldedStack, isBase bool) {
		for _, s := range stacks {
			k := strings.Join(s.Frames, ";")
			i, ok := idx[k]
			if !ok {
				i = len(out)
				idx[k] = i
				out = append(out, FoldedDiff{Frames: s.Frames})
			}
			if isBase {
				out[i].Base += s.Count
			} else {
				out[i].New += s.Count
			}
		}
	}
	add(base, true)
	add(cur, false)
	sort.Slice(out, func(i, j int) bool { return lessFrames(out[i].Frames, out[j].Frames) })
	return out
}

// lessFrames orders stacks as their folded text sorts.
func lessFrames(a, b []string) bool {
	for i := 0; i < len(a) && i < len(b); i++ {
		if a[i] != b[i] {
			return a[i]+";" < b[i]+";"
		}
	}
	return len(a) < len(b)
}

// Folded returns both sides' CPU stacks merged (nil without CPU on both).
func (d *Diff) Folded() []FoldedDiff { return d.folded }

type funcCounts struct{ bSelf, bTotal, nSelf, nTotal uint64 }

func compareCPU(folded []FoldedDiff, bp, np *CPUProfile, bDur, nDur float64) *CPUDiff {
	c := &CPUDiff{BaseSamples: bp.Samples, NewSamples: np.Samples}
	cores := func(p *CPUProfile, dur float64) float64 {
		if p.PeriodNs <= 0 || dur <= 0 {
			return 0
		}
		return float64(p.Samples) * float64(p.PeriodNs) / 1e9 / dur
	}
	c.BaseCores, c.NewCores = cores(bp, bDur), cores(np, nDur)
	funcs := map[string]*funcCounts{}
	procs := map[string]*[2]uint64{}
	seen := map[string]bool{}
	for _, s := range folded {
		if len(s.Frames) == 0 {
			continue
		}
		p := procs[s.Frames[0]]
		if p == nil {
			p = &[2]uint64{}
			procs[s.Frames[0]] = p
		}
		p[0] += s.Base
		p[1] += s.New
		frames := s.Frames[1:]
		if len(frames) == 1 && frames[0] == "[no stack]" {
			continue
		}
		clear(seen)
		for i, f := range frames {
			// Inlined or not, it is one function's time (FunctionName).
			n := strings.TrimSuffix(f, InlinedSuffix)
			fc := funcs[n]
			if fc == nil {
				fc = &funcCounts{}
				funcs[n] = fc
			}
			if i == len(frames)-1 {
				fc.bSelf += s.Base
				fc.nSelf += s.New
			}
			if !seen[n] {
				seen[n] = true
				fc.bTotal += s.Base
				fc.nTotal += s.New
			}
		}
	}
	for name, fc := range funcs {
		f := FunctionDiff{Name: name, Kernel: strings.HasSuffix(name, KernelSuffix),
			BaseShare: pct(fc.bSelf, bp.Samples), NewShare: pct(fc.nSelf, np.Samples),
			BaseTotalShare: pct(fc.bTotal, bp.Samples), NewTotalShare: pct(fc.nTotal, np.Samples),
			BaseSelf: fc.bSelf, NewSelf: fc.nSelf}
		f.Change, f.Z = ShareChange(fc.bSelf, bp.Samples, fc.nSelf, np.Samples)
		f.TotalChange = f.NewTotalShare - f.BaseTotalShare
		f.Significant = math.Abs(f.Z) >= NoiseZ
		c.Functions = append(c.Functions, f)
	}
	c.FunctionsTotal = len(c.Functions)
	sort.Slice(c.Functions, func(i, j int) bool {
		a, b := &c.Functions[i], &c.Functions[j]
		if x, y := math.Abs(a.Change), math.Abs(b.Change); x != y {
			return x > y
		}
		if x, y := math.Abs(a.TotalChange), math.Abs(b.TotalChange); x != y {
			return x > y
		}
		return a.Name < b.Name
	})
	if len(c.Functions) > maxDiffFunctions {
		c.Functions = c.Functions[:maxDiffFunctions]
	}
	for name, p := range procs {
		pd := ProcessShareDiff{Name: name, BaseShare: pct(p[0], bp.Samples), NewShare: pct(p[1], np.Samples)}
		var z float64
		pd.Change, z = ShareChange(p[0], bp.Samples, p[1], np.Samples)
		pd.Significant = math.Abs(z) >= NoiseZ
		c.Processes = append(c.Processes, pd)
	}
	sort.Slice(c.Processes, func(i, j int) bool {
		a, b := c.Processes[i], c.Processes[j]
		if x, y := math.Max(a.BaseShare, a.NewShare), math.Max(b.BaseShare, b.NewShare); x != y {
			return x > y
		}
		return a.Name < b.Name
	})
	if c.Functions == nil {
		c.Functions = []FunctionDiff{}
	}
	if c.Processes == nil {
		c.Processes = []ProcessShareDiff{}
	}
	return c
}

// --- memory ---

// MemDiff is the mem section of a comparison: outstanding memory at the end
// of each window, and the allocation sites that are new in NEW or hold
// more there.
type MemDiff struct {
	BaseOutstandingBytes uint64 `json:"base_outstanding_bytes"`
	NewOutstandingBytes  uint64 `json:"new_outstanding_bytes"`
	BaseMappedBytes      uint64 `json:"base_mapped_bytes"`
	NewMappedBytes       uint64 `json:"new_mapped_bytes"`
	// Sites are the leak candidates (heap) and the program's own
	// mappings that are new or grew, the largest growth first. Each side's
	// candidates are its top ones (analyze's mem section), so a site absent
	// from BASE may have been below BASE's list.
	Sites []MemSiteDiff `json:"sites"`
}

// MemSiteDiff is one allocation site (process, kind, call stack) on both
// sides; Base is nil when BASE did not list it.
type MemSiteDiff struct {
	Process string       `json:"process"`
	Kind    string       `json:"kind"`
	Stack   []string     `json:"stack"`
	Base    *MemSiteSide `json:"base,omitempty"`
	New     *MemSiteSide `json:"new"`
	// GrowthBytes is NEW's outstanding bytes minus BASE's.
	GrowthBytes int64 `json:"growth_bytes"`
}

// MemSiteSide is one side's outstanding memory at a site.
type MemSiteSide struct {
	Bytes       uint64 `json:"bytes"`
	Allocations uint64 `json:"allocations"`
	Steady      bool   `json:"steady"`
}

type memSiteKey struct{ process, kind, stack string }

func memSites(m *MemSummary) map[memSiteKey]*MemSiteDiff {
	out := map[memSiteKey]*MemSiteDiff{}
	for _, ls := range [][]MemLeak{m.Leaks, m.Mappings} {
		for _, l := range ls {
			if l.ByAllocator {
				continue // backs heap blocks counted as leaks already
			}
			k := memSiteKey{l.Process, l.Kind, strings.Join(l.Stack, ";")}
			s := out[k]
			if s == nil {
				s = &MemSiteDiff{Process: l.Process, Kind: l.Kind, Stack: l.Stack, New: &MemSiteSide{}}
				out[k] = s
			}
			// Same site in several processes of one name: add up.
			s.New.Bytes += l.Bytes
			s.New.Allocations += l.Allocations
			s.New.Steady = s.New.Steady || l.Steady
		}
	}
	return out
}

func compareMem(base, cur *MemSummary) *MemDiff {
	d := &MemDiff{BaseOutstandingBytes: base.OutstandingBytes, NewOutstandingBytes: cur.OutstandingBytes,
		BaseMappedBytes: base.MappedBytes, NewMappedBytes: cur.MappedBytes, Sites: []MemSiteDiff{}}
	bs := memSites(base)
	for k, s := range memSites(cur) {
		if b := bs[k]; b != nil {
			s.Base = b.New
		}
		s.GrowthBytes = int64(s.New.Bytes)
		if s.Base != nil {
			s.GrowthBytes -= int64(s.Base.Bytes)
		}
		if s.GrowthBytes > 0 {
			d.Sites = append(d.Sites, *s)
		}
	}
	sort.Slice(d.Sites, func(i, j int) bool {
		a, b := &d.Sites[i], &d.Sites[j]
		if a.GrowthBytes != b.GrowthBytes {
			return a.GrowthBytes > b.GrowthBytes
		}
		if a.Process != b.Process {
			return a.Process < b.Process
		}
		return strings.Join(a.Stack, ";") < strings.Join(b.Stack, ";")
	})
	return d
}

// WriteFoldedDiff writes merged stacks as difffolded.pl does:
// "frame;frame;leaf BASE_COUNT NEW_COUNT" per line, so FlameGraph's
// `flamegraph.pl` draws them as a differential graph.
func WriteFoldedDiff(w io.Writer, stacks []FoldedDiff) error {
	bw := bufio.NewWriter(w)
	for _, s := range stacks {
		fmt.Fprintf(bw, "%s %d %d\n", strings.Join(s.Frames, ";"), s.Base, s.New)
	}
	return bw.Flush()
}

// --- off-CPU ---

// OffCPUDiff compares where the threads waited: blocked and run-queue time
// in ms per second of each side's window, in all and per wait class, so
// windows of different lengths compare.
type OffCPUDiff struct {
	BaseBlocked  float64           `json:"base_blocked_ms_per_s"`
	NewBlocked   float64           `json:"new_blocked_ms_per_s"`
	BaseRunqueue float64           `json:"base_runqueue_ms_per_s"`
	NewRunqueue  float64           `json:"new_runqueue_ms_per_s"`
	Classes      []OffCPUClassDiff `json:"classes"`
}

// OffCPUClassDiff is one wait class on both sides (ms per second).
type OffCPUClassDiff struct {
	Class        string  `json:"class"`
	BaseBlocked  float64 `json:"base_blocked_ms_per_s"`
	NewBlocked   float64 `json:"new_blocked_ms_per_s"`
	BaseRunqueue float64 `json:"base_runqueue_ms_per_s"`
	NewRunqueue  float64 `json:"new_runqueue_ms_per_s"`
}

func compareOffCPU(base, cur *OffCPUSummary, bDur, nDur float64) *OffCPUDiff {
	per := func(ms, dur float64) float64 {
		if dur <= 0 {
			return 0
		}
		return ms / dur
	}
	d := &OffCPUDiff{BaseBlocked: per(base.BlockedMs, bDur), NewBlocked: per(cur.BlockedMs, nDur),
		BaseRunqueue: per(base.RunqueueMs, bDur), NewRunqueue: per(cur.RunqueueMs, nDur), Classes: []OffCPUClassDiff{}}
	classes := map[string]*OffCPUClassDiff{}
	get := func(c string) *OffCPUClassDiff {
		if classes[c] == nil {
			classes[c] = &OffCPUClassDiff{Class: c}
		}
		return classes[c]
	}
	for _, c := range base.Classes {
		x := get(c.Class)
		x.BaseBlocked, x.BaseRunqueue = per(c.BlockedMs, bDur), per(c.RunqueueMs, bDur)
	}
	for _, c := range cur.Classes {
		x := get(c.Class)
		x.NewBlocked, x.NewRunqueue = per(c.BlockedMs, nDur), per(c.RunqueueMs, nDur)
	}
	for _, c := range WaitClasses {
		if x := classes[c]; x != nil {
			d.Classes = append(d.Classes, *x)
			delete(classes, c)
		}
	}
	var other []string // classes this version does not know
	for c := range classes {
		other = append(other, c)
	}
	sort.Strings(other)
	for _, c := range other {
		d.Classes = append(d.Classes, *classes[c])
	}
	return d
}
