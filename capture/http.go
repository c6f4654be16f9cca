//go:build linux

package capture

import (
	"errors"
	"net/netip"
	"strconv"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/spf13/pflag"

	"github.com/bpfsnap/bpfsnap/bpf"
	"github.com/bpfsnap/bpfsnap/formats"
	"github.com/bpfsnap/bpfsnap/internal/httpparse"
)

func init() { Register("http", func() ProbeSet { return &httpProbe{} }) }

// maxConnections bounds the per-connection pairing state; beyond it the
// oldest-looking entries are evicted and counted.
const maxConnections = 100_000

// maxPending bounds queued requests per connection (pipelining depth).
const maxPending = 64

// httpProbe sees HTTP/1.x on every TCP socket through cgroup_skb programs
// on the cgroup v2 root and pairs requests with responses per socket. See
// docs/architecture.md for why this hook and not syscall tracepoints.
type httpProbe struct {
	keepQuery bool

	objs  bpf.HTTPObjects
	links []link.Link
	ring  *RingReader
	table *formats.TableWriter[formats.HTTPRequest]
	s     *Session

	// Touched only by the ring reader goroutine, then by Stop after it.
	conns    map[uint64]*httpConn
	counters map[string]uint64
}

type httpConn struct {
	pid, tid uint32 // learned from egress in the owner's context
	pending  []pendingRequest
}

type pendingRequest struct {
	row formats.HTTPRequest
}

var httpDropNames = []string{"http.ringbuf_full"}

func (*httpProbe) Name() string  { return "http" }
func (*httpProbe) Default() bool { return true }

func (h *httpProbe) BindFlags(fs *pflag.FlagSet) {
	fs.BoolVar(&h.keepQuery, "keep-query", false, "http: keep URL query strings in the archive (they may hold personal data or secrets)")
}

func (h *httpProbe) Start(s *Session) (map[string]string, error) {
	h.s = s
	h.conns = map[uint64]*httpConn{}
	h.counters = map[string]uint64{}
	root := s.Cgroups().Root()
	details := map[string]string{"hook": "cgroup_skb ingress+egress on " + root, "keep_query": strconv.FormatBool(h.keepQuery), "max_path": strconv.Itoa(httpparse.MaxPath)}
	if root == "" {
		return details, errors.New("no cgroup v2 hierarchy is mounted (needed to attach cgroup_skb programs)")
	}
	spec, err := bpf.LoadHTTP()
	if err != nil {
		return details, err
	}
	if err := s.LoadObjects(spec, &h.objs); err != nil {
		return details, err
	}
	h.table = formats.NewTable[formats.HTTPRequest](s.Writer(), formats.TableHTTPRequests)
	if h.ring, err = s.ReadRing(h.objs.HttpEvents, h.handle); err != nil {
		return details, err
	}
	for _, p := range []struct {
		prog   *ebpf.Program
		attach ebpf.AttachType
	}{{h.objs.HttpEgress, ebpf.AttachCGroupInetEgress}, {h.objs.HttpIngress, ebpf.AttachCGroupInetIngress}} {
		l, err := link.AttachCgroup(link.CgroupOptions{Path: root, Attach: p.attach, Program: p.prog})
		if err != nil {
			return details, err
		}
		h.links = append(h.links, l)
	}
	return details, nil
}

func (h *httpProbe) count(reason string) { h.counters["http."+reason]++ }

func (h *httpProbe) handle(raw []byte) {
	if len(raw) < int(unsafe.Sizeof(bpf.HTTPHttpEvent{})) {
		return
	}
	ev := (*bpf.HTTPHttpEvent)(unsafe.Pointer(&raw[0]))
	payload := unsafe.Slice((*byte)(unsafe.Pointer(&ev.Payload[0])), min(int(ev.Copied), len(ev.Payload)))
	c := h.conn(ev.Cookie)
	// Egress runs in the sending task's context; when that task lives in
	// the socket's cgroup it is (almost surely) the socket's owner, and not
	// a softirq that happened to interrupt someone else.
	if ev.Egress == 1 && ev.CurrentCgroup == ev.SockCgroup && ev.Pid != 0 {
		c.pid, c.tid = ev.Pid, ev.Tid
	}
	local, remote := addrs(ev)
	switch ev.Kind {
	case 1:
		req, ok := httpparse.ParseRequest(payload)
		if !ok {
			h.count("unparsed")
			return
		}
		role := formats.RoleServer
		if ev.Egress == 1 {
			role = formats.RoleClient
		}
		path, cut := httpparse.CleanTarget(req.Target, h.keepQuery)
		if req.Cut {
			cut = true
		}
		if cut {
			h.count("truncated_path")
		}
		if len(c.pending) >= maxPending {
			h.count("pipeline_overflow")
			c.pending = c.pending[1:]
		}
		c.pending = append(c.pending, pendingRequest{row: formats.HTTPRequest{
			RequestNs: ev.TimeNs, CgroupID: ev.SockCgroup, Role: role, Method: req.Method, Path: path, PathTruncated: cut,
			LocalAddr: local, RemoteAddr: remote, Connection: ev.Cookie, RequestBytes: httpparse.ContentLength(payload), ResponseBytes: -1,
		}})
	case 2:
		status, ok := httpparse.ParseStatus(payload)
		if !ok {
			h.count("unparsed")
			return
		}
		if status < 200 {
			return // 100 Continue and friends: the final response follows
		}
		role := formats.RoleClient
		if ev.Egress == 1 {
			role = formats.RoleServer
		}
		i := firstPending(c.pending, role)
		if i < 0 {
			// The request came before the window (or its head was not
			// seen): do not invent one.
			h.count("response_without_request")
			return
		}
		row := c.pending[i].row
		c.pending = append(c.pending[:i], c.pending[i+1:]...)
		row.ResponseNs, row.Status, row.ResponseBytes = ev.TimeNs, uint32(status), httpparse.ContentLength(payload)
		h.emit(row, c)
	}
}

func firstPending(p []pendingRequest, role string) int {
	for i := range p {
		if p[i].row.Role == role {
			return i
		}
	}
	return -1
}

// emit writes a row attributed to the connection's process, if the capture
// targets it.
func (h *httpProbe) emit(row formats.HTTPRequest, c *httpConn) {
	row.PID, row.TID = c.pid, c.tid
	if h.s.Filtered() && !h.s.IsTarget(row.PID) {
		return
	}
	_ = h.table.Write(row)
}

func (h *httpProbe) conn(cookie uint64) *httpConn {
	c := h.conns[cookie]
	if c == nil {
		if len(h.conns) >= maxConnections {
			// Evict idle connections first; a map has no order, so this is
			// approximate, and counted.
			for k, v := range h.conns {
				if len(v.pending) == 0 {
					delete(h.conns, k)
					h.count("state_evicted")
					if len(h.conns) < maxConnections*9/10 {
						break
					}
				}
			}
		}
		c = &httpConn{}
		h.conns[cookie] = c
	}
	return c
}

func addrs(ev *bpf.HTTPHttpEvent) (local, remote string) {
	src, dst := ipOf(ev.Family, ev.Saddr), ipOf(ev.Family, ev.Daddr)
	s := netip.AddrPortFrom(src, ev.Sport).String()
	d := netip.AddrPortFrom(dst, ev.Dport).String()
	if ev.Egress == 1 {
		return s, d
	}
	return d, s
}

func ipOf(family uint8, b [16]uint8) netip.Addr {
	if family == 4 {
		return netip.AddrFrom4([4]byte(b[:4]))
	}
	return netip.AddrFrom16(b)
}

func (h *httpProbe) Drops() map[string]uint64 {
	// The pairing counters belong to the reader goroutine; they are copied
	// into the manifest after Stop (see Stop), the kernel's counters live.
	return SumPerCPU(h.objs.Drops, httpDropNames)
}

func (h *httpProbe) Stop(s *Session) error {
	for _, l := range h.links {
		l.Close()
	}
	h.ring.Stop()
	// Requests still waiting for a response at the end of the window are
	// kept (response_ns = 0) and counted.
	if h.conns != nil {
		for _, c := range h.conns {
			for _, p := range c.pending {
				h.count("no_response")
				h.emit(p.row, c)
			}
		}
		counters := h.counters
		s.Writer().UpdateManifest(func(m *formats.Manifest) {
			for k, v := range counters {
				m.Drops[k] = v
			}
		})
	}
	return h.objs.Close()
}
