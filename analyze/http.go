package analyze

import (
	"regexp"
	"sort"
	"strings"
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
}

// HTTPEndpoint aggregates one process × role × method × route. Percentiles
// are exact: computed over every request's latency.
type HTTPEndpoint struct {
	PID     uint32           `json:"pid"`
	Process string           `json:"process"`
	Role    string           `json:"role"`
	Method  string           `json:"method"`
	Route   string           `json:"route"`
	Count   int64            `json:"count"`
	Errors  int64            `json:"errors"` // 5xx
	Status  map[string]int64 `json:"status"`
	RateRPS float64          `json:"rate_rps"`
	P50     float64          `json:"p50_ms"`
	P90     float64          `json:"p90_ms"`
	P99     float64          `json:"p99_ms"`
	P999    float64          `json:"p999_ms"`
	Max     float64          `json:"max_ms"`
	Mean    float64          `json:"mean_ms"`
	// Latencies is every request's latency in ms, sorted; kept out of the
	// JSON (the report draws histograms from it).
	Latencies []float64 `json:"-"`
	// Series holds (offset from window start in s, latency ms) for charts.
	Series [][2]float64 `json:"-"`
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
	Remote    string    `json:"remote"`
}

const maxSlowest = 20

// Route normalization: segments that are ids (numbers, UUIDs, long hex)
// collapse into {id} so /users/1 and /users/2 are one endpoint.
var (
	reNumber = regexp.MustCompile(`^[0-9]+$`)
	reUUID   = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)
	reHex    = regexp.MustCompile(`^[0-9a-fA-F]{12,}$`)
	reMixed  = regexp.MustCompile(`^[A-Za-z0-9_-]{20,}$`) // opaque tokens
)

// NormalizeRoute collapses id-like path segments into {id}.
func NormalizeRoute(path string) string {
	segs := strings.Split(path, "/")
	for i, s := range segs {
		if s == "" {
			continue
		}
		if reNumber.MatchString(s) || reUUID.MatchString(s) || reHex.MatchString(s) ||
			(reMixed.MatchString(s) && strings.ContainsAny(s, "0123456789")) {
			segs[i] = "{id}"
		}
	}
	return strings.Join(segs, "/")
}

// HTTP computes the http section, or nil when the archive has no HTTP data.
func HTTP(a *formats.Archive, opts Options, procs []Process) (*HTTPSummary, error) {
	if !a.HasTable(formats.TableHTTPRequests) {
		return nil, nil
	}
	m := a.Manifest()
	b := opts.Filter.Bind(m)
	names := processNames(procs)
	type key struct {
		pid                 uint32
		role, method, route string
	}
	eps := map[key]*HTTPEndpoint{}
	s := &HTTPSummary{}
	var slow []HTTPExchange
	err := formats.ReadTable(a, formats.TableHTTPRequests, func(rows []formats.HTTPRequest) error {
		for _, r := range rows {
			if !b.Keep(r.PID, r.RequestNs) {
				continue
			}
			if r.ResponseNs == 0 {
				s.Unanswered++
				continue
			}
			if r.ResponseNs < r.RequestNs {
				continue // impossible from a real capture; hostile archive
			}
			s.Requests++
			k := key{r.PID, r.Role, r.Method, NormalizeRoute(r.Path)}
			ep := eps[k]
			if ep == nil {
				ep = &HTTPEndpoint{PID: r.PID, Process: names[r.PID], Role: r.Role, Method: r.Method, Route: k.route, Status: map[string]int64{}}
				eps[k] = ep
			}
			ms := float64(r.ResponseNs-r.RequestNs) / 1e6
			ep.Count++
			ep.Latencies = append(ep.Latencies, ms)
			ep.Series = append(ep.Series, [2]float64{float64(int64(r.RequestNs)-int64(m.Window.StartMonoNs)) / 1e9, ms})
			ep.Status[statusKey(r.Status)]++
			if r.Status >= 500 {
				ep.Errors++
			}
			slow = append(slow, HTTPExchange{Time: m.Window.WallTime(r.RequestNs), PID: r.PID, Process: names[r.PID], Role: r.Role,
				Method: r.Method, Path: r.Path, Status: r.Status, LatencyMs: ms, Remote: r.RemoteAddr})
			if len(slow) > 4*maxSlowest {
				slow = topSlowest(slow)
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
	for _, ep := range eps {
		sort.Float64s(ep.Latencies)
		ep.P50, ep.P90, ep.P99, ep.P999 = Quantile(ep.Latencies, 0.50), Quantile(ep.Latencies, 0.90), Quantile(ep.Latencies, 0.99), Quantile(ep.Latencies, 0.999)
		ep.Max = ep.Latencies[len(ep.Latencies)-1]
		var sum float64
		for _, v := range ep.Latencies {
			sum += v
		}
		ep.Mean = sum / float64(len(ep.Latencies))
		if window > 0 {
			ep.RateRPS = float64(ep.Count) / window
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
	return s, nil
}

func topSlowest(x []HTTPExchange) []HTTPExchange {
	sort.Slice(x, func(i, j int) bool { return x[i].LatencyMs > x[j].LatencyMs })
	if len(x) > maxSlowest {
		x = x[:maxSlowest]
	}
	return x
}

func statusKey(s uint32) string {
	if s == 0 {
		return "none"
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
	rank := int(q*float64(len(sorted))+0.999999999) - 1
	if rank < 0 {
		rank = 0
	}
	if rank >= len(sorted) {
		rank = len(sorted) - 1
	}
	return sorted[rank]
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
