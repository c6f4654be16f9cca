//go:build linux

package http

import (
	"encoding/json"
	"errors"
	"net/netip"
	"path/filepath"
	"strconv"
	"sync"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/spf13/pflag"

	"github.com/bpfsnap/bpfsnap/capture/recorder"
	"github.com/bpfsnap/bpfsnap/formats"
	"github.com/bpfsnap/bpfsnap/internal/httpparse"
)

// New returns the http probe set; its flags are bound by BindFlags.
func New() recorder.ProbeSet { return &httpProbe{} }

// maxConnections bounds the per-connection pairing state; beyond it the
// oldest-looking entries are evicted and counted.
const maxConnections = 100_000

// maxPending bounds queued requests per connection (pipelining depth).
const maxPending = 64

// httpProbe sees HTTP/1.x on every TCP socket through cgroup_skb programs
// on the cgroup v2 root and pairs requests with responses per socket. See
// docs/architecture.md for why this hook and not syscall tracepoints.
type httpProbe struct {
	drops     recorder.DropCounters
	keepQuery bool
	floor     bool // --http-floor (hidden): empty programs, for the bench

	objs   bpfObjects
	progs  []hookProgram // what attachAt attaches
	linkMu sync.Mutex    // links grow when a new pod is selected
	links  []link.Link
	scoped bool            // attached to the selected pods' cgroups, not the root
	empty  []*ebpf.Program // --http-floor's programs
	ring   *recorder.RingReader
	table  *formats.TableWriter[formats.HTTPRequest]
	s      *recorder.Session

	// Touched only by the ring reader goroutine, then by Stop after it.
	conns    map[uint64]*httpConn
	counters map[string]uint64
}

type httpConn struct {
	pid, tid uint32 // learned from egress in the owner's context
	votes    int    // majority vote for pid (see learnOwner)
	pending  []pendingRequest
	// Sequence number of the last message seen per direction (index:
	// egress), to skip TCP retransmissions of a message already seen.
	lastSeq [2]uint32
	seqSeen [2]bool
	// local and remote address strings, formatted once per connection:
	// the addresses of a socket never change, and formatting them per
	// message was a visible share of the recorder's CPU.
	local, remote string
}

type pendingRequest struct {
	row formats.HTTPRequest
}

// Indexed like enum http_drop in bpf/http.bpf.c. pending_full is not a
// loss: the request went to user space on its own and is paired there.
// httpDropNames names the kernel counters in the order of enum http_drop.
var httpDropNames = formats.DropNames("http", "ringbuf_full", "pending_full")

func (*httpProbe) Name() string  { return "http" }
func (*httpProbe) Default() bool { return true }

// Validate has nothing to check: http's flags are booleans.
func (*httpProbe) Validate() error { return nil }

func (h *httpProbe) BindFlags(fs *pflag.FlagSet) {
	fs.BoolVar(&h.keepQuery, "keep-query", false, "http: keep URL query strings in the archive (they may hold personal data or secrets)")
	fs.BoolVar(&h.floor, "http-floor", false, "http: attach empty programs at the same hooks (benchmark floor)")
	_ = fs.MarkHidden("http-floor")
}

func (h *httpProbe) Start(s *recorder.Session) (map[string]string, error) {
	h.s = s
	h.conns = map[uint64]*httpConn{}
	h.counters = map[string]uint64{}
	root := s.Cgroups().Root()
	details := map[string]string{"keep_query": strconv.FormatBool(h.keepQuery), "max_path": strconv.Itoa(httpparse.MaxPath)}
	if root == "" {
		return details, errors.New("no cgroup v2 hierarchy is mounted (needed to attach cgroup_skb programs)")
	}
	// Where the programs attach. A Kubernetes selector's pods own their
	// sockets (a socket belongs to the cgroup of the task that created
	// it, an accepted one to its listener's), so the programs attach to
	// the pod cgroups, and the rest of the node's traffic costs nothing,
	// not even the hook's own dispatch. Anything else attaches to the
	// root: a --pid target may serve a listener created in another cgroup
	// (systemd socket activation), which a narrower attach would miss
	// without a trace.
	at := []string{"/"}
	if sel := s.K8s(); !sel.Empty() {
		if paths := s.TargetCgroups(); len(paths) > 0 || sel.FollowsNewPods() {
			at, h.scoped = append([]string{}, paths...), true // [] not null in the details
		}
	}
	spec, err := loadBpf()
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
	h.progs = []hookProgram{{h.objs.HttpEgress, ebpf.CGroupSKB, ebpf.AttachCGroupInetEgress},
		{h.objs.HttpIngress, ebpf.CGroupSKB, ebpf.AttachCGroupInetIngress},
		{h.objs.HttpRelease, ebpf.CGroupSock, ebpf.AttachCgroupInetSockRelease}}
	if h.floor {
		details["floor"] = "empty programs at the same hooks (benchmark)"
		for i, p := range h.progs {
			// Returning 1 lets every packet through, as ours do.
			empty, err := recorder.EmptyProgram(p.typ, p.attach, 1)
			if err != nil {
				return details, err
			}
			h.empty = append(h.empty, empty)
			h.progs[i].prog = empty
		}
	}
	for _, cg := range at {
		if err := h.attachAt(root, cg); err != nil {
			return details, err
		}
	}
	if h.scoped {
		// Pods the selector matches later get the programs too (the
		// session's rescan); their first second of traffic is not seen.
		s.OnTargetCgroup(func(cg string) {
			if err := h.attachAt(root, cg); err != nil {
				s.Warnf("http: attaching to the new pod cgroup %s: %v (its HTTP is not captured)", cg, err)
			}
		})
		b, _ := json.Marshal(at)
		details["hook"] = "cgroup_skb ingress+egress on the selected pods' cgroups " + string(b) + " (and on pods selected later)"
	} else {
		details["hook"] = "cgroup_skb ingress+egress on " + root
	}
	return details, nil
}

type hookProgram struct {
	prog   *ebpf.Program
	typ    ebpf.ProgramType // for --http-floor's empty stand-in
	attach ebpf.AttachType
}

// attachAt attaches the three programs to cgroup cg (a path below root).
func (h *httpProbe) attachAt(root, cg string) error {
	h.linkMu.Lock()
	defer h.linkMu.Unlock()
	for _, p := range h.progs {
		l, err := link.AttachCgroup(link.CgroupOptions{Path: filepath.Join(root, cg), Attach: p.attach, Program: p.prog})
		if err != nil {
			return err
		}
		h.links = append(h.links, l)
	}
	return nil
}

func (h *httpProbe) count(reason string) { h.counters["http."+reason]++ }

// countFor counts reason for connection c unless the capture targets
// processes and c's owner is not known to be one: other processes'
// traffic is not this capture's business. (Rows whose owner is unknown
// are counted as unattributed where they are left out, in emit.)
func (h *httpProbe) countFor(c *httpConn, reason string) {
	if h.s.Filtered() && !h.s.IsTarget(c.pid) {
		return
	}
	h.count(reason)
}

// singleSize is the size of a one-message ring record (kinds 1 and 2):
// the record without its trailing request half.
var singleSize = int(unsafe.Offsetof(bpfHttpEvent{}.Req))

// The record kinds of enum http_kind, through bpf2go.
const (
	kindRequest  = uint8(bpfHttpKindHTTP_REQUEST)
	kindResponse = uint8(bpfHttpKindHTTP_RESPONSE)
	kindPair     = uint8(bpfHttpKindHTTP_PAIR)
)

func (h *httpProbe) handle(raw []byte) {
	if len(raw) < singleSize {
		return
	}
	// A pair record is the full struct; a single one stops before Req,
	// which this code then never reads.
	ev := (*bpfHttpEvent)(unsafe.Pointer(&raw[0]))
	if ev.Kind == kindPair && len(raw) < int(unsafe.Sizeof(*ev)) {
		return
	}
	c := h.conn(ev)
	if !c.fresh(&ev.Msg) || (ev.Kind == kindPair && !c.fresh(&ev.Req)) {
		h.countFor(c, "retransmitted")
		return
	}
	switch ev.Kind {
	case kindRequest:
		h.learnOwner(c, ev, &ev.Msg)
		row, ok := h.requestRow(ev, &ev.Msg, c)
		if !ok {
			return
		}
		if len(c.pending) >= maxPending {
			h.countFor(c, "pipeline_overflow")
			c.pending = c.pending[1:]
		}
		c.pending = append(c.pending, pendingRequest{row: row})
	case kindResponse:
		h.learnOwner(c, ev, &ev.Msg)
		resp, ok := h.response(c, &ev.Msg)
		if !ok {
			return
		}
		role := formats.RoleClient
		if ev.Msg.Egress == 1 {
			role = formats.RoleServer
		}
		i := firstPending(c.pending, role)
		if i < 0 {
			// The request came before the window (or its head was not
			// seen): do not invent one.
			h.countFor(c, "response_without_request")
			return
		}
		row := c.pending[i].row
		c.pending = append(c.pending[:i], c.pending[i+1:]...)
		respond(&row, resp)
		h.emit(row, c)
	case kindPair:
		// The kernel paired them (see `pending` in bpf/http.bpf.c).
		h.learnOwner(c, ev, &ev.Req)
		h.learnOwner(c, ev, &ev.Msg)
		row, ok := h.requestRow(ev, &ev.Req, c)
		if !ok {
			return
		}
		resp, ok := h.response(c, &ev.Msg)
		if !ok {
			// Kept, as a request without its response.
			h.countFor(c, "no_response")
			h.emit(row, c)
			return
		}
		respond(&row, resp)
		h.emit(row, c)
	}
}

// fresh reports whether m is new data on its direction of the connection,
// not a retransmission of a segment already seen, and remembers it.
func (c *httpConn) fresh(m *bpfHttpMsg) bool {
	d := m.Egress & 1
	if c.seqSeen[d] && int32(m.Seq-c.lastSeq[d]) <= 0 {
		return false
	}
	c.lastSeq[d], c.seqSeen[d] = m.Seq, true
	return true
}

// learnOwner votes for the connection's process. Egress runs in the
// sending task's context, which is the socket's owner when the send comes
// from its write: a task in another cgroup is surely not the owner. But a
// segment held back (Nagle, autocorking) leaves when the peer's ACK
// arrives, in a softirq running on top of whatever task was current, on
// loopback often the peer itself, possibly in the same cgroup. Those are
// the minority, so the owner is the majority vote (Boyer-Moore) of the
// candidates, not the last one seen.
func (h *httpProbe) learnOwner(c *httpConn, ev *bpfHttpEvent, m *bpfHttpMsg) {
	if (m.Egress == 0 && m.Released == 0) || m.CurrentCgroup != ev.SockCgroup || m.Pid == 0 {
		return
	}
	switch {
	case m.Pid == c.pid:
		c.votes++
		c.tid = m.Tid
	case c.votes == 0:
		c.pid, c.tid, c.votes = m.Pid, m.Tid, 1
	default:
		c.votes--
	}
}

func payloadOf(m *bpfHttpMsg) []byte {
	return unsafe.Slice((*byte)(unsafe.Pointer(&m.Payload[0])), min(int(m.Copied), len(m.Payload)))
}

// requestRow parses a request head into a row waiting for its response.
func (h *httpProbe) requestRow(ev *bpfHttpEvent, m *bpfHttpMsg, c *httpConn) (formats.HTTPRequest, bool) {
	payload := payloadOf(m)
	req, ok := httpparse.ParseRequest(payload)
	if !ok {
		h.countFor(c, "unparsed")
		return formats.HTTPRequest{}, false
	}
	role := formats.RoleServer
	if m.Egress == 1 {
		role = formats.RoleClient
	}
	head := httpparse.ScanHead(payload)
	h.checkCoalesced(c, head, m, true)
	path, cut := httpparse.CleanTarget(req.Target, h.keepQuery)
	if req.Cut {
		cut = true
	}
	if cut {
		h.countFor(c, "truncated_path")
	}
	return formats.HTTPRequest{
		RequestNs: m.TimeNs, CgroupID: ev.SockCgroup, Role: role, Method: req.Method, Path: path, PathTruncated: cut,
		LocalAddr: c.local, RemoteAddr: c.remote, Connection: ev.Cookie, RequestBytes: head.ContentLength, ResponseBytes: -1,
	}, true
}

// response parses a response head; ok is false for unparsable and for
// interim (1xx) responses.
func (h *httpProbe) response(c *httpConn, m *bpfHttpMsg) (r parsedResponse, ok bool) {
	payload := payloadOf(m)
	status, ok := httpparse.ParseStatus(payload)
	if !ok {
		h.countFor(c, "unparsed")
		return r, false
	}
	head := httpparse.ScanHead(payload)
	h.checkCoalesced(c, head, m, false)
	// 100 Continue and friends: the final response follows. (The kernel
	// skips them for requests it holds; this covers the rest.)
	return parsedResponse{time: m.TimeNs, status: uint32(status), bytes: head.ContentLength}, status >= 200
}

type parsedResponse struct {
	time   uint64
	status uint32
	bytes  int64
}

// checkCoalesced counts segments that carry more than the message whose
// head they start with: the kernel sees the head of each segment only, so
// a second message in it (pipelined requests, or responses a server
// batched) is not seen, and pairing on that connection may be off.
func (h *httpProbe) checkCoalesced(c *httpConn, head httpparse.Head, m *bpfHttpMsg, request bool) {
	if n, ok := head.MessageLen(request); ok && int64(m.SegLen) > n {
		h.countFor(c, "coalesced")
	}
}

func respond(row *formats.HTTPRequest, r parsedResponse) {
	row.ResponseNs, row.Status, row.ResponseBytes = r.time, r.status, r.bytes
}

// handleHeld queues a request the kernel still held at the end.
func (h *httpProbe) handleHeld(ev *bpfHttpEvent) {
	c := h.conn(ev)
	h.learnOwner(c, ev, &ev.Msg)
	if row, ok := h.requestRow(ev, &ev.Msg, c); ok {
		c.pending = append(c.pending, pendingRequest{row: row})
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
	if row.PID == 0 {
		// No message of this connection was seen in its owner's context
		// (e.g. a request on a fresh connection still unanswered at the
		// end). A whole-host capture keeps the row with pid 0; a targeted
		// one cannot tell whether it belongs to a target.
		h.count("unattributed")
	}
	if h.s.Filtered() && !h.s.IsTarget(row.PID) {
		return
	}
	_ = h.table.Write(row)
}

// conn returns the state of ev's connection, made on its first record
// (with the addresses, which never change for a socket).
func (h *httpProbe) conn(ev *bpfHttpEvent) *httpConn {
	cookie := ev.Cookie
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
		c.local, c.remote = addrs(ev)
		h.conns[cookie] = c
	}
	return c
}

// addrs orders the record's addresses as the socket sees them.
func addrs(ev *bpfHttpEvent) (local, remote string) {
	src, dst := ipOf(ev.Family, ev.Saddr), ipOf(ev.Family, ev.Daddr)
	s := netip.AddrPortFrom(src, ev.Sport).String()
	d := netip.AddrPortFrom(dst, ev.Dport).String()
	if ev.Msg.Egress == 1 {
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
	return h.drops.Read(h.objs.Drops, httpDropNames)
}

func (h *httpProbe) Stop(s *recorder.Session) error {
	h.linkMu.Lock()
	for _, l := range h.links {
		l.Close()
	}
	h.links = nil
	h.linkMu.Unlock()
	h.ring.Stop()
	// Requests still waiting for a response at the end of the window are
	// kept (response_ns = 0) and counted: first those the kernel holds,
	// then those queued here.
	if h.objs.Pending != nil && h.conns != nil {
		var cookie uint64
		// Values are single-message records: the event up to Req.
		var held bpfHttpEvent
		value := unsafe.Slice((*byte)(unsafe.Pointer(&held)), singleSize)
		it := h.objs.Pending.Iterate()
		for it.Next(&cookie, value) {
			if held.Pipelined == 0 {
				h.handleHeld(&held)
			}
		}
	}
	if h.conns != nil {
		for _, c := range h.conns {
			for _, p := range c.pending {
				h.countFor(c, "no_response")
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
	for _, p := range h.empty {
		p.Close()
	}
	h.drops.Freeze(h.objs.Drops, httpDropNames)
	return h.objs.Close()
}
