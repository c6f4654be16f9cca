package analyze

import (
	"runtime"
	"sort"
	"sync"
	"time"

	"github.com/bpfsnap/bpfsnap/formats"
)

// HTTPSummary is the `http` section of analyze.
type HTTPSummary struct {
	Requests  int64          `json:"requests"`
	Endpoints []HTTPEndpoint `json:"endpoints"`
	Slowest   []HTTPExchange `json:"slowest"`
	// Unanswered counts requests still waiting for a response at the end
	// of the window (not in the percentiles).
	Unanswered int64 `json:"unanswered"`
	// EndUnknown counts responses whose last byte was not seen (the window
	// ended inside the body, or framing was lost): they are in the counts
	// and the time-to-first-byte figures, not in the end-to-end ones.
	EndUnknown int64 `json:"end_unknown"`
	// TLSUndecoded counts TCP connections that carried TLS no TLS probe
	// decoded (a TLS library bpfsnap does not cover): their requests are
	// missing. TLSUndecodedBy says by which processes (manifest details).
	TLSUndecoded   uint64 `json:"tls_undecoded"`
	TLSUndecodedBy string `json:"tls_undecoded_by,omitempty"`
	// NamesUnknown counts HTTP/2 requests whose path could not be
	// decoded (HPACK state from before the window) nor recovered: they
	// are in the endpoints under the route "[h2 name unknown]".
	NamesUnknown uint64 `json:"h2_names_unknown"`
	// Measure says what the latency figures (p50_ms …) measure:
	// "last_byte" (request's first byte to response's last byte), or, for
	// archives of format version 1, "first_byte" (to the response's first
	// byte: those recorders saw no more).
	Measure string `json:"measure"`
}

// What HTTPSummary.Measure can say.
const (
	MeasureLastByte  = "last_byte"
	MeasureFirstByte = "first_byte"
)

// HTTPEndpoint aggregates one process × role × method × route. Percentiles
// are exact: computed over every request's latency.
type HTTPEndpoint struct {
	PID     uint32 `json:"pid"`
	Process string `json:"process"`
	Role    string `json:"role"`
	Method  string `json:"method"`
	Route   string `json:"route"`
	Count   int64  `json:"count"`
	// Errors counts 5xx responses, and for gRPC calls a grpc-status other
	// than OK.
	Errors int64 `json:"errors"`
	// Protocol is "http1", "http2" or "grpc"; empty in archives of format
	// version 1. TLS: the requests were read from a TLS library's
	// plaintext.
	Protocol string           `json:"protocol"`
	TLS      bool             `json:"tls"`
	Status   map[string]int64 `json:"status"`
	// GRPCStatus counts gRPC calls by grpc-status code name ("OK",
	// "UNAVAILABLE"...; "unknown" when the trailers could not be read).
	GRPCStatus map[string]int64 `json:"grpc_status,omitempty"`
	// RateRPS is the count over the whole window (or filtered range);
	// BusyRPS is the count over the span the endpoint was seen, first
	// request start to last response end, which is the rate a burst
	// really ran at.
	RateRPS    float64 `json:"rate_rps"`
	BusyRPS    float64 `json:"busy_rps"`
	BusySpanMs float64 `json:"busy_span_ms"`
	// firstReq and lastResp bound the busy span (monotonic ns).
	firstReq, lastResp uint64
	P50                float64 `json:"p50_ms"`
	P90                float64 `json:"p90_ms"`
	P99                float64 `json:"p99_ms"`
	P999               float64 `json:"p999_ms"`
	Max                float64 `json:"max_ms"`
	Mean               float64 `json:"mean_ms"`
	// Time to the response's first byte, over every request of the
	// endpoint (those whose last byte was not seen included).
	TTFBP50  float64 `json:"ttfb_p50_ms"`
	TTFBP90  float64 `json:"ttfb_p90_ms"`
	TTFBP99  float64 `json:"ttfb_p99_ms"`
	TTFBP999 float64 `json:"ttfb_p999_ms"`
	TTFBMax  float64 `json:"ttfb_max_ms"`
	// Latencies is every request's latency in ms, sorted; kept out of the
	// JSON (the report draws histograms from it). ttfb likewise.
	Latencies []float64 `json:"-"`
	ttfb      []float64
	// Series holds (offset from window start in s, latency ms) for charts.
	Series [][2]float64 `json:"-"`
	// TimeSplit is where the requests' time went (offcpu_split.go).
	TimeSplit *TimeSplit `json:"time_split,omitempty"`
	split     *splitAcc
}

// HTTPExchange is one request, for the slowest list.
type HTTPExchange struct {
	Time      time.Time `json:"time"`
	PID       uint32    `json:"pid"`
	Process   string    `json:"process"`
	Role      string    `json:"role"`
	Method    string    `json:"method"`
	Path      string    `json:"path"`
	Status    uint32    `json:"status"`
	LatencyMs float64   `json:"latency_ms"`
	TTFBMs    float64   `json:"ttfb_ms"`
	Remote    string    `json:"remote"`

	// TimeSplit is where the request's time went (offcpu_split.go).
	TimeSplit *TimeSplit `json:"time_split,omitempty"`
	served    servedRequest
}

const maxSlowest = 20

// NormalizeRoute collapses id-like path segments into {id} so /users/1 and
// /users/2 are one endpoint. A segment is id-like when it is a decimal
// number, a UUID, 12 or more hex digits, or an opaque token: 20 or more of
// [A-Za-z0-9_-] with at least one digit. It runs once per request, so it
// scans bytes instead of running regular expressions, and returns path
// itself (no allocation) when nothing changes.
func NormalizeRoute(path string) string {
	out, changed := appendRoute(nil, path)
	if !changed {
		return path
	}
	return string(out)
}

// appendRoute appends the normalized path to dst; changed is false when it
// is path itself.
func appendRoute[S string | []byte](dst []byte, path S) (out []byte, changed bool) {
	copied := 0 // bytes of path already in dst
	for i := 0; i < len(path); {
		j := i
		for j < len(path) && path[j] != '/' {
			j++
		}
		if j > i && idLike(path[i:j]) {
			dst = append(dst, path[copied:i]...)
			dst = append(dst, "{id}"...)
			copied, changed = j, true
		}
		i = j + 1
	}
	return append(dst, path[copied:]...), changed
}

func idLike[S string | []byte](seg S) bool {
	var digits, hex, token int // counts of bytes in each class
	for k := 0; k < len(seg); k++ {
		c := seg[k]
		switch {
		case c >= '0' && c <= '9':
			digits++
			hex++
			token++
		case c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F':
			hex++
			token++
		case c >= 'g' && c <= 'z' || c >= 'G' && c <= 'Z' || c == '_' || c == '-':
			token++
		}
	}
	n := len(seg)
	switch {
	case digits == n: // a number
		return true
	case hex == n && n >= 12: // long hex
		return true
	case token == n && n >= 20 && digits > 0: // opaque token
		return true
	}
	return n == 36 && isUUID(seg)
}

// isUUID matches 8-4-4-4-12 hex digits.
func isUUID[S string | []byte](s S) bool {
	if len(s) != 36 {
		return false
	}
	for k := 0; k < 36; k++ {
		c := s[k]
		if k == 8 || k == 13 || k == 18 || k == 23 {
			if c != '-' {
				return false
			}
			continue
		}
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F') {
			return false
		}
	}
	return true
}

// httpColumns are the columns of formats.HTTPRequest the analysis reads,
// in the order the loop below indexes them.
var httpColumns = []formats.ColumnSpec{
	{Name: "request_ns", Kind: formats.ColumnInt64},
	{Name: "response_ns", Kind: formats.ColumnInt64},
	{Name: "pid", Kind: formats.ColumnInt32},
	{Name: "role", Kind: formats.ColumnBytes},
	{Name: "method", Kind: formats.ColumnBytes},
	{Name: "path", Kind: formats.ColumnBytes},
	{Name: "status", Kind: formats.ColumnInt32},
	{Name: "remote_addr", Kind: formats.ColumnBytes},
	{Name: "response_end_ns", Kind: formats.ColumnInt64, Optional: true},
	{Name: "protocol", Kind: formats.ColumnBytes, Optional: true},
	{Name: "tls", Kind: formats.ColumnBool, Optional: true},
	{Name: "grpc_status", Kind: formats.ColumnInt32, Optional: true},
	{Name: "tid", Kind: formats.ColumnInt32},
	{Name: "request_tid", Kind: formats.ColumnInt32, Optional: true},
	{Name: "response_tid", Kind: formats.ColumnInt32, Optional: true},
	{Name: "response_written_ns", Kind: formats.ColumnInt64, Optional: true},
}

// HTTP computes the http section, or nil when the archive has no HTTP data
// (no request, and no TLS connection that went by undecoded).
func HTTP(a *formats.Archive, opts Options, procs []Process) (*HTTPSummary, error) {
	m := a.Manifest()
	if !a.HasTable(formats.TableHTTPRequests) {
		if m.Drops["http.tls_undecoded"] == 0 {
			return nil, nil
		}
		s := &HTTPSummary{Measure: MeasureLastByte}
		s.undecoded(m)
		return s, nil
	}
	b := opts.Filter.Bind(m)
	names := processNames(procs)
	// Endpoints are found without allocating per request: role and method
	// are interned, and the route (normalized into a scratch buffer) is
	// looked up as string(bytes), which Go does without a copy.
	type group struct {
		pid                    uint32
		role, method, protocol string
		tls                    bool
	}
	eps := map[group]map[string]*HTTPEndpoint{}
	var all []*HTTPEndpoint
	intern := map[string]string{}
	internBytes := func(b []byte) string {
		if v, ok := intern[string(b)]; ok {
			return v
		}
		v := string(b)
		if len(intern) < 1<<16 {
			intern[v] = v
		}
		return v
	}
	s := &HTTPSummary{Measure: MeasureLastByte}
	s.undecoded(m)
	// Format 1 recorders timed the response's first segment only.
	firstByteOnly := m.FormatVersion < 2
	if firstByteOnly {
		s.Measure = MeasureFirstByte
	}
	var slow []HTTPExchange
	// Once maxSlowest requests are kept, one faster than the slowest
	// list's last entry cannot enter it: skip building its exchange.
	slowFloor := -1.0
	var route []byte
	err := formats.ReadColumns(a, formats.TableHTTPRequests, httpColumns, func(c *formats.ColumnBatch) error {
		reqNs, respNs, pids, status := c.Columns[0].Int64, c.Columns[1].Int64, c.Columns[2].Int32, c.Columns[6].Int32
		roles, methods, paths, remotes := &c.Columns[3], &c.Columns[4], &c.Columns[5], &c.Columns[7]
		endNs, protocols, tlss, grpcs := c.Columns[8].Int64, &c.Columns[9], c.Columns[10].Int32, c.Columns[11].Int32
		tids, reqTids, respTids, written := c.Columns[12].Int32, c.Columns[13].Int32, c.Columns[14].Int32, c.Columns[15].Int64
		for i := 0; i < c.Rows; i++ {
			pid, req, resp, end := uint32(pids[i]), uint64(reqNs[i]), uint64(respNs[i]), uint64(endNs[i])
			if !b.Keep(pid, req) {
				continue
			}
			if resp == 0 {
				s.Unanswered++
				continue
			}
			if firstByteOnly {
				end = resp
			}
			if resp < req || (end != 0 && end < resp) {
				continue // impossible from a real capture; hostile archive
			}
			s.Requests++
			g := group{pid, internBytes(roles.Bytes(i)), internBytes(methods.Bytes(i)), internBytes(protocols.Bytes(i)), tlss[i] != 0}
			byRoute := eps[g]
			if byRoute == nil {
				byRoute = map[string]*HTTPEndpoint{}
				eps[g] = byRoute
			}
			grpc := g.protocol == formats.ProtocolGRPC
			if grpc {
				// A gRPC route is the full method name, as it is.
				route = append(route[:0], paths.Bytes(i)...)
			} else {
				route, _ = appendRoute(route[:0], paths.Bytes(i))
			}
			ep := byRoute[string(route)]
			if ep == nil {
				ep = &HTTPEndpoint{PID: pid, Process: names[pid], Role: g.role, Method: g.method, Protocol: g.protocol, TLS: g.tls,
					Route: string(route), Status: map[string]int64{}}
				if grpc {
					ep.GRPCStatus = map[string]int64{}
				}
				byRoute[ep.Route] = ep
				all = append(all, ep)
			}
			ttfb := float64(resp-req) / 1e6
			st := uint32(status[i])
			if ep.Count == 0 || req < ep.firstReq {
				ep.firstReq = req
			}
			if last := max(resp, end); last > ep.lastResp {
				ep.lastResp = last
			}
			ep.Count++
			ep.ttfb = append(ep.ttfb, ttfb)
			ep.Status[statusKey(st)]++
			if grpc {
				gs := grpcs[i]
				ep.GRPCStatus[GRPCCodeName(gs)]++
				if st >= 500 || gs > 0 {
					ep.Errors++
				}
			} else if st >= 500 {
				ep.Errors++
			}
			// The serving threads' time counts until the server wrote the
			// response's last byte (not when a segment held back by Nagle
			// left: the thread had moved on), else its last or first byte.
			done := max(resp, end)
			if w := uint64(written[i]); w >= resp && w <= done {
				done = w
			}
			served := servedRequest{PID: pid, TID: uint32(tids[i]), RequestTID: uint32(reqTids[i]),
				ResponseTID: uint32(respTids[i]), RequestNs: req, ResponseNs: done}
			if opts.split != nil && g.role == formats.RoleServer {
				ep.split = opts.split.add(ep.split, served)
			}
			if end == 0 {
				s.EndUnknown++
				continue
			}
			ms := float64(end-req) / 1e6
			ep.Latencies = append(ep.Latencies, ms)
			ep.Series = append(ep.Series, [2]float64{float64(int64(req)-int64(m.Window.StartMonoNs)) / 1e9, ms})
			if ms < slowFloor {
				continue
			}
			slow = append(slow, HTTPExchange{Time: m.Window.WallTime(req), PID: pid, Process: names[pid], Role: g.role,
				Method: g.method, Path: string(paths.Bytes(i)), Status: st, LatencyMs: ms, TTFBMs: ttfb, Remote: string(remotes.Bytes(i)), served: served})
			if len(slow) > 4*maxSlowest {
				slow = topSlowest(slow)
				slowFloor = slow[len(slow)-1].LatencyMs
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	window := m.Window.Duration().Seconds()
	if opts.Filter.To > 0 || opts.Filter.From > 0 {
		end := m.Window.Duration()
		if opts.Filter.To > 0 && opts.Filter.To < end {
			end = opts.Filter.To
		}
		window = (end - opts.Filter.From).Seconds()
	}
	sortLatencies(all)
	for _, ep := range all {
		ep.P50, ep.P90, ep.P99, ep.P999 = Quantile(ep.Latencies, 0.50), Quantile(ep.Latencies, 0.90), Quantile(ep.Latencies, 0.99), Quantile(ep.Latencies, 0.999)
		ep.TTFBP50, ep.TTFBP90, ep.TTFBP99, ep.TTFBP999 = Quantile(ep.ttfb, 0.50), Quantile(ep.ttfb, 0.90), Quantile(ep.ttfb, 0.99), Quantile(ep.ttfb, 0.999)
		ep.TTFBMax = ep.ttfb[len(ep.ttfb)-1]
		if n := len(ep.Latencies); n > 0 {
			ep.Max = ep.Latencies[n-1]
			var sum float64
			for _, v := range ep.Latencies {
				sum += v
			}
			ep.Mean = sum / float64(n)
		}
		if window > 0 {
			ep.RateRPS = float64(ep.Count) / window
		}
		ep.BusySpanMs = float64(ep.lastResp-ep.firstReq) / 1e6
		if ep.BusySpanMs > 0 {
			ep.BusyRPS = float64(ep.Count) / (ep.BusySpanMs / 1e3)
		}
		s.Endpoints = append(s.Endpoints, *ep)
	}
	// Worst first: the endpoint whose p99 is highest leads the table.
	sort.Slice(s.Endpoints, func(i, j int) bool {
		a, b := s.Endpoints[i], s.Endpoints[j]
		if a.P99 != b.P99 {
			return a.P99 > b.P99
		}
		if a.Count != b.Count {
			return a.Count > b.Count
		}
		return a.Route < b.Route
	})
	s.Slowest = topSlowest(slow)
	if opts.split != nil {
		if err := opts.split.finish(s); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// undecoded takes what the capture could not decode from the manifest.
func (s *HTTPSummary) undecoded(m *formats.Manifest) {
	s.TLSUndecoded, s.NamesUnknown = m.Drops["http.tls_undecoded"], m.Drops["http.h2_name_unknown"]
	for _, p := range m.Probes {
		if p.Name == "http" {
			s.TLSUndecodedBy = p.Details["tls_undecoded"]
		}
	}
}

// sortLatencies sorts every endpoint's latencies, on every CPU: with
// millions of requests this is a good part of the analysis.
func sortLatencies(eps []*HTTPEndpoint) {
	work := make(chan []float64)
	var wg sync.WaitGroup
	for range runtime.GOMAXPROCS(0) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for l := range work {
				sort.Float64s(l)
			}
		}()
	}
	for _, ep := range eps {
		work <- ep.Latencies
		work <- ep.ttfb
	}
	close(work)
	wg.Wait()
}

func topSlowest(x []HTTPExchange) []HTTPExchange {
	sort.Slice(x, func(i, j int) bool { return x[i].LatencyMs > x[j].LatencyMs })
	if len(x) > maxSlowest {
		x = x[:maxSlowest]
	}
	return x
}

// grpcCodes are the names of gRPC status codes (google.golang.org/grpc/codes).
var grpcCodes = [...]string{"OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND",
	"ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION", "ABORTED", "OUT_OF_RANGE",
	"UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED"}

// GRPCCodeName names a grpc-status value: "unknown" for -1 (not read),
// the code's name, or its number for codes gRPC does not define.
func GRPCCodeName(c int32) string {
	switch {
	case c < 0:
		return "unknown"
	case int(c) < len(grpcCodes):
		return grpcCodes[c]
	}
	return uitoa(uint64(c))
}

// statusKeys holds the keys of every valid status code, so counting a
// request does not format (and allocate) its status.
var statusKeys = func() (k [600]string) {
	for i := range k {
		k[i] = uitoa(uint64(i))
	}
	k[0] = "none"
	return k
}()

func statusKey(s uint32) string {
	if int(s) < len(statusKeys) {
		return statusKeys[s]
	}
	return uitoa(uint64(s))
}

func uitoa(v uint64) string {
	var b [20]byte
	i := len(b)
	for {
		i--
		b[i] = byte('0' + v%10)
		v /= 10
		if v == 0 {
			return string(b[i:])
		}
	}
}

// Quantile returns the q-quantile of sorted values with the nearest-rank
// method (the value below which a fraction q of requests fall), the same
// definition the tests' client-side measurements use.
func Quantile(sorted []float64, q float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	return sorted[quantileRank(len(sorted), q)]
}

// quantileRank is the 0-based nearest rank of the q-quantile of n values.
func quantileRank(n int, q float64) int {
	rank := int(q*float64(n)+0.999999999) - 1
	return min(max(rank, 0), n-1)
}

// processNames maps pids to the name of their last program.
func processNames(procs []Process) map[uint32]string {
	out := map[uint32]string{}
	for _, p := range procs {
		if p.Comm != "" {
			out[p.PID] = p.Comm
		}
	}
	return out
}
