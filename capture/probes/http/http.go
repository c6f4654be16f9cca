//go:build linux

package http

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/spf13/pflag"
	"golang.org/x/sys/unix"

	"github.com/bpfsnap/bpfsnap/capture/recorder"
	"github.com/bpfsnap/bpfsnap/formats"
	"github.com/bpfsnap/bpfsnap/internal/h2"
	"github.com/bpfsnap/bpfsnap/internal/httpparse"
)

// New returns the http probe set; its flags are bound by BindFlags.
func New() recorder.ProbeSet { return &httpProbe{tlsOn: true, goH2: true} }

// maxConnections bounds the per-connection pairing state; beyond it the
// oldest-looking entries are evicted and counted.
const maxConnections = 100_000

// maxPending bounds queued requests per connection (pipelining depth).
const maxPending = 64

// httpProbe sees HTTP/1.x and HTTP/2 on every TCP socket through
// cgroup_skb programs on the cgroup v2 root, and the same protocols inside
// TLS through uprobes on the TLS libraries of the processes (tls.go). See
// docs/architecture.md for why these hooks and not syscall tracepoints.
type httpProbe struct {
	drops     recorder.DropCounters
	keepQuery bool
	floor     bool // --http-floor (hidden): empty programs, for the bench
	tlsOn     bool // --http-tls
	goH2      bool // --http-go-h2

	objs     bpfObjects
	progs    []hookProgram // what attachAt attaches
	linkMu   sync.Mutex    // attachments grow when a new pod or target cgroup is found
	attached []attachment  // where the programs are attached (attach.go)
	scoped   bool          // attached to the selected pods' cgroups, not the root
	// rescanTargets runs until rescanDone closes, then closes rescanStopped.
	rescanDone, rescanStopped chan struct{}
	// handed holds the pairs of learnHanded (written by the rescan, read
	// by the ring reader).
	handed atomic.Pointer[map[handedPair]bool]
	empty  []*ebpf.Program // --http-floor's programs
	ring   *recorder.RingReader
	table  *formats.TableWriter[formats.HTTPRequest]
	s      *recorder.Session
	tls    *tlsAttacher // nil without --http-tls and --http-go-h2

	// Touched only by the ring reader goroutine, then by Stop after it.
	// Connections: sockets by their cookie (a uint64 key takes Go's fast
	// map path; the struct key this replaced was a tenth of the recorder's
	// CPU per request), a TLS library's connection objects apart.
	wire     map[uint64]*httpConn
	tlsConns map[tlsKey]*httpConn
	closing  []closedSock // released sockets, oldest first (sockClosed)
	counters map[string]uint64
	names    nameBook // HTTP/2 header fields read by the Go uprobes
	// Sockets carrying TLS records that no TLS probe's connection is tied
	// to yet, while they are open (cookie -> owner pid); and per process,
	// those that closed untied (or found no room above).
	tlsSeen   map[uint64]uint32
	tlsUntied map[uint32]uint64
}

// tlsKey names a TLS library's connection object: by process and address.
type tlsKey struct {
	pid uint32
	ptr uint64
}

type httpConn struct {
	pid, tid uint32 // learned from egress in the owner's context
	votes    int    // majority vote for pid (see learnOwner)
	// pending holds requests sent to user space on their own (the socket
	// pipelines, or they were still waiting at the end), oldest first.
	pending []formats.HTTPRequest
	// local and remote address strings, formatted once per connection:
	// the addresses of a socket never change, and formatting them per
	// message was a visible share of the recorder's CPU.
	local, remote string
	h2            *h2.Conn // an HTTP/2 connection's streams
	// TLS: the socket the connection writes to, once an egress inside one
	// of its writes was seen (bound); rows wait for it in unbound.
	tls     bool
	bound   bool
	cookie  uint64
	cgroup  uint64
	unbound []formats.HTTPRequest
	closed  bool // the socket was released: its state goes after closeGrace
}

// httpDropNames names the kernel counters in the order of enum http_drop
// (a test checks the count against the C enum).
var httpDropNames = formats.DropNames("http", "ringbuf_full", "no_storage", "framing_gap", "head_too_long",
	"head_split", "chunks_overflow", "messages_overflow", "unexpected_bytes", "bad_chunk", "joined_midstream",
	"retransmitted", "upgraded", "h2_bad_frame", "h2_frames_overflow", "h2_block_cut", "h2_streams_full",
	"h2_joined", "tls_state_full", "tls_read_fault", "h2_upgraded")

func (*httpProbe) Name() string  { return "http" }
func (*httpProbe) Default() bool { return true }

// Validate has nothing to check: http's flags are booleans.
func (*httpProbe) Validate() error { return nil }

func (h *httpProbe) BindFlags(fs *pflag.FlagSet) {
	fs.BoolVar(&h.keepQuery, "keep-query", false, "http: keep URL query strings in the archive (they may hold personal data or secrets)")
	fs.BoolVar(&h.tlsOn, "http-tls", true, "http: read HTTPS as the plaintext processes hand their TLS library (uprobes on OpenSSL's SSL_read/SSL_write and Go's crypto/tls)")
	fs.BoolVar(&h.goH2, "http-go-h2", true, "http: name HTTP/2 and gRPC calls of Go programs on connections opened before the window (uprobes on grpc-go's and net/http's header handling)")
	fs.BoolVar(&h.floor, "http-floor", false, "http: attach empty programs at the same hooks (benchmark floor)")
	_ = fs.MarkHidden("http-floor")
}

// reset gives the probe set's user-space half its empty state for a
// session.
func (h *httpProbe) reset(s *recorder.Session) {
	h.s = s
	h.wire, h.tlsConns, h.closing = map[uint64]*httpConn{}, map[tlsKey]*httpConn{}, nil
	h.counters = map[string]uint64{}
	h.names = nameBook{}
	h.tlsSeen, h.tlsUntied = map[uint64]uint32{}, map[uint32]uint64{}
}

func (h *httpProbe) Start(s *recorder.Session) (map[string]string, error) {
	h.reset(s)
	root := s.Cgroups().Root()
	details := map[string]string{"keep_query": strconv.FormatBool(h.keepQuery), "max_path": strconv.Itoa(httpparse.MaxPath)}
	if root == "" {
		return details, errors.New("no cgroup v2 hierarchy is mounted (needed to attach cgroup_skb programs)")
	}
	// Where the programs attach: see attach.go.
	var at []string
	if sel := s.K8s(); !sel.Empty() {
		if paths := s.TargetCgroups(); len(paths) > 0 || sel.FollowsNewPods() {
			at, h.scoped = append([]string{}, paths...), true // [] not null in the details
		}
	}
	spec, err := loadBpf()
	if err != nil {
		return details, err
	}
	// Without task storage in cgroup_skb programs the TLS write marker is
	// left out: OpenSSL connections whose socket no SSL_set_fd names
	// (memory BIOs: node) stay undecoded, and counted so.
	details["tls_marker"] = "on"
	if problem := recorder.FeatureSKBTaskStorage.Problem(); problem != "" {
		if err := spec.Variables["tls_marker"].Set(false); err != nil {
			return details, fmt.Errorf("setting tls_marker: %w", err)
		}
		details["tls_marker"] = "off: " + problem
		s.Warnf("http: TLS connections are tied to their socket by descriptor only, not by their writes' sizes: %s; OpenSSL over memory BIOs (node) is counted as not decoded", problem)
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
	switch {
	case h.scoped:
		for _, cg := range at {
			if err := h.attachAt(root, cg); err != nil {
				return details, err
			}
		}
		// Pods the selector matches later get the programs too (the
		// session's rescan); their first second of traffic is not seen.
		s.OnTargetCgroup(func(cg string) {
			if err := h.attachAt(root, cg); err != nil {
				s.Warnf("http: attaching to the new pod cgroup %s: %v (its HTTP is not captured)", cg, err)
			}
		})
		b, _ := json.Marshal(at)
		details["hook"] = "cgroup_skb ingress+egress on the selected pods' cgroups " + string(b) + " (and on pods selected later)"
	case s.Filtered():
		hook, err := h.placeTargets(root)
		if err != nil {
			return details, err
		}
		details["hook"] = hook
	default:
		if err := h.attachAt(root, "/"); err != nil {
			return details, err
		}
		details["hook"] = "cgroup_skb ingress+egress on " + root
	}
	if h.tlsOn || h.goH2 {
		h.tls = newTLSAttacher(h, details)
		h.tls.start()
	}
	return details, nil
}

type hookProgram struct {
	prog   *ebpf.Program
	typ    ebpf.ProgramType // for --http-floor's empty stand-in
	attach ebpf.AttachType
}

func (h *httpProbe) count(reason string) { h.counters["http."+reason]++ }

// countFor counts reason for connection c unless the capture targets
// processes and c's owner is not known to be one: other processes'
// traffic is not this capture's business. (Rows whose owner is unknown
// are counted as unattributed where they are left out, in emit.)
func (h *httpProbe) countFor(c *httpConn, reason string) {
	h.countNFor(c, reason, 1)
}

func (h *httpProbe) countNFor(c *httpConn, reason string, n uint64) {
	if n == 0 || (h.s.Filtered() && !h.s.IsTarget(c.pid)) {
		return
	}
	h.counters["http."+reason] += n
}

// Offsets of the variable parts of the records: the kernel sends only
// their filled length.
var (
	lineOffset = int(unsafe.Offsetof(bpfHttpEvent{}.Line))
	h2Offset   = int(unsafe.Offsetof(bpfH2Event{}.Data))
	namesFixed = int(unsafe.Offsetof(bpfGoH2Event{}.Path))
	headSize   = int(unsafe.Sizeof(bpfRecHead{}))
)

// The record kinds and flags of enum http_kind and enum http_flag, through
// bpf2go.
const (
	kindPair     = uint8(bpfHttpKindHTTP_PAIR)
	kindRequest  = uint8(bpfHttpKindHTTP_REQUEST)
	kindResponse = uint8(bpfHttpKindHTTP_RESPONSE)
	kindH2Frame  = uint8(bpfHttpKindHTTP_H2FRAME)
	kindH2Resync = uint8(bpfHttpKindHTTP_H2RESYNC)
	kindTLSSeen  = uint8(bpfHttpKindHTTP_TLS_SEEN)
	kindTLSBind  = uint8(bpfHttpKindHTTP_TLS_BIND)
	kindH2Names  = uint8(bpfHttpKindHTTP_H2NAMES)
	kindTLSClose = uint8(bpfHttpKindHTTP_TLS_CLOSE)
	kindClose    = uint8(bpfHttpKindHTTP_SOCK_CLOSE)

	flagClient     = uint8(bpfHttpFlagHTTP_F_REQ_EGRESS)
	flagReleased   = uint8(bpfHttpFlagHTTP_F_RELEASED)
	flagCtx        = uint8(bpfHttpFlagHTTP_F_CTX)
	flagEndUnknown = uint8(bpfHttpFlagHTTP_F_END_UNKNOWN)
	flagTLS        = uint8(bpfHttpFlagHTTP_F_TLS)
	flagEgress     = uint8(bpfHttpFlagHTTP_F_EGRESS)
	flagBound      = uint8(bpfHttpFlagHTTP_F_BOUND)
	flagPreface    = uint8(bpfHttpFlagHTTP_F_H2PREFACE)
)

// record returns an HTTP/1.x ring record's fixed part and request line; ok
// is false for a record too short to hold them.
func record(raw []byte) (ev *bpfHttpEvent, line []byte, ok bool) {
	if len(raw) < lineOffset {
		return nil, nil, false
	}
	// Only the fields before Line are read through ev: the record stops
	// after the line's line_len bytes.
	ev = (*bpfHttpEvent)(unsafe.Pointer(&raw[0]))
	n := min(int(ev.LineLen), len(raw)-lineOffset)
	return ev, raw[lineOffset : lineOffset+n], true
}

// handle dispatches a ring record by its kind (its first byte).
func (h *httpProbe) handle(raw []byte) {
	if len(raw) < headSize {
		return
	}
	switch raw[0] {
	case kindPair, kindRequest, kindResponse:
		if ev, line, ok := record(raw); ok {
			h.handleRecord(ev, line)
		}
	case kindH2Frame, kindH2Resync:
		h.handleH2(raw)
	case kindTLSSeen, kindTLSBind, kindTLSClose:
		h.handleTLSWire((*bpfRecHead)(unsafe.Pointer(&raw[0])))
	case kindH2Names:
		h.handleNames(raw)
	case kindClose:
		cookie := (*bpfRecHead)(unsafe.Pointer(&raw[0])).Cookie
		h.tlsClosed(cookie)
		h.sockClosed(cookie, time.Now())
	}
}

// closeGrace is how long a released socket's connection state outlives
// the release: a segment held back (Nagle) may leave after the close, in
// the softirq of the peer's ACK, and its record must still find the
// connection's owner.
const closeGrace = 2 * time.Second

type closedSock struct {
	cookie uint64
	at     time.Time
}

// sockClosed schedules the end of a released socket's connection state,
// which the kernel reports once per socket whose messages came here:
// without it, every connection of a server that closes them would stay
// until maxConnections evicted it.
func (h *httpProbe) sockClosed(cookie uint64, now time.Time) {
	if c := h.wire[cookie]; c != nil && !c.closed {
		c.closed = true
		h.closing = append(h.closing, closedSock{cookie, now})
	}
	h.expireClosed(now)
}

// expireClosed ends the connections released closeGrace before now or
// earlier: requests still queued become rows without response (as at the
// end of the window), HTTP/2 streams still open are written.
func (h *httpProbe) expireClosed(now time.Time) {
	for len(h.closing) > 0 && now.Sub(h.closing[0].at) >= closeGrace {
		cookie := h.closing[0].cookie
		h.closing = h.closing[1:]
		if c := h.wire[cookie]; c != nil && c.closed {
			h.closeConn(c)
			delete(h.wire, cookie)
		}
	}
}

// handleRecord turns a record into a row: a pair is complete; a request on
// its own waits in its connection's queue for a response on its own.
func (h *httpProbe) handleRecord(ev *bpfHttpEvent, line []byte) {
	c := h.conn(&ev.H)
	h.learnOwner(c, &ev.H)
	switch ev.H.Kind {
	case kindPair:
		row, ok := h.requestRow(ev, line, c)
		if !ok {
			return
		}
		h.respond(&row, ev, c)
		h.emit(row, c)
	case kindRequest:
		row, ok := h.requestRow(ev, line, c)
		if !ok {
			return
		}
		if len(c.pending) >= maxPending {
			h.countFor(c, "pipeline_overflow")
			c.pending = c.pending[1:]
		}
		c.pending = append(c.pending, row)
	case kindResponse:
		role := formats.RoleServer
		if ev.H.Flags&flagClient != 0 {
			role = formats.RoleClient
		}
		i := firstPending(c.pending, role)
		if i < 0 {
			// The request came before the window (or its head was not
			// seen): do not invent one.
			h.countFor(c, "response_without_request")
			return
		}
		row := c.pending[i]
		c.pending = append(c.pending[:i], c.pending[i+1:]...)
		h.respond(&row, ev, c)
		h.emit(row, c)
	}
}

// learnOwner votes for the connection's process. Egress runs in the
// sending task's context, which is the socket's owner when the send comes
// from its write: a task of another cgroup than the socket's (or than the
// target's it was handed to: ownerSends) is surely not the owner. But a
// segment held back (Nagle, autocorking) leaves when the peer's ACK
// arrives, in a softirq running on top of whatever task was current, on
// loopback often the peer itself, possibly in the same cgroup. Those are
// the minority, so the owner is the majority vote (Boyer-Moore) of the
// candidates, not the last one seen. A release is voted like a send: the
// task closing a socket is almost always its owner. A TLS connection's
// records all come from its process (uprobes): its pid is known from the
// first.
func (h *httpProbe) learnOwner(c *httpConn, ev *bpfRecHead) {
	if c.tls {
		if ev.Flags&flagCtx != 0 && ev.CtxTid != 0 {
			c.tid = ev.CtxTid
		}
		return
	}
	if ev.Flags&flagCtx == 0 || !h.ownerSends(ev.CtxCgroup, ev.SockCgroup) || ev.CtxPid == 0 {
		return
	}
	switch {
	case ev.CtxPid == c.pid:
		c.votes++
		c.tid = ev.CtxTid
	case c.votes == 0:
		c.pid, c.tid, c.votes = ev.CtxPid, ev.CtxTid, 1
	default:
		c.votes--
	}
}

// requestRow parses a request line into a row waiting for its response.
func (h *httpProbe) requestRow(ev *bpfHttpEvent, line []byte, c *httpConn) (formats.HTTPRequest, bool) {
	req, ok := httpparse.ParseRequest(line)
	if !ok {
		h.countFor(c, "unparsed")
		return formats.HTTPRequest{}, false
	}
	role := formats.RoleServer
	if ev.H.Flags&flagClient != 0 {
		role = formats.RoleClient
	}
	path, cut := httpparse.CleanTarget(req.Target, h.keepQuery)
	if req.Cut {
		cut = true
	}
	if cut {
		h.countFor(c, "truncated_path")
	}
	row := formats.HTTPRequest{
		RequestNs: ev.ReqNs, CgroupID: ev.H.SockCgroup, Role: role, Method: req.Method, Path: path, PathTruncated: cut,
		LocalAddr: c.local, RemoteAddr: c.remote, Connection: c.cookie, RequestBytes: ev.ReqBody, ResponseBytes: -1,
		Protocol: formats.ProtocolHTTP1, TLS: c.tls, GRPCStatus: -1,
	}
	if c.tls {
		row.CgroupID = c.cgroup
	}
	if role == formats.RoleClient && h.ownerCtx(c, &ev.H) {
		row.RequestTID = ev.H.CtxTid
	}
	return row, true
}

// ownerCtx reports whether the record's context is a task of the socket's
// owner cgroup (see learnOwner), or of a TLS connection's process.
func (h *httpProbe) ownerCtx(c *httpConn, ev *bpfRecHead) bool {
	if ev.Flags&flagCtx == 0 || ev.Flags&flagReleased != 0 || ev.CtxPid == 0 {
		return false
	}
	return c.tls || h.ownerSends(ev.CtxCgroup, ev.SockCgroup)
}

// respond completes a row with the record's response.
func (h *httpProbe) respond(row *formats.HTTPRequest, ev *bpfHttpEvent, c *httpConn) {
	if ev.RespNs == 0 {
		// A request held at the end, its response not begun.
		h.countFor(c, "no_response")
		return
	}
	row.ResponseNs, row.Status, row.ResponseBytes = ev.RespNs, uint32(ev.Status), ev.RespBody
	row.ResponseWrittenNs = ev.RespWrittenNs
	if ev.H.Flags&flagEndUnknown == 0 {
		row.ResponseEndNs = ev.RespEndNs
	} else {
		h.countFor(c, "response_end_unknown")
	}
	if row.Role == formats.RoleServer && h.ownerCtx(c, &ev.H) {
		row.ResponseTID = ev.H.CtxTid
	}
}

func firstPending(p []formats.HTTPRequest, role string) int {
	for i := range p {
		if p[i].Role == role {
			return i
		}
	}
	return -1
}

// maxUnbound bounds the rows of a TLS connection waiting for its socket.
const maxUnbound = 256

// emit writes a row attributed to the connection's process, if the capture
// targets it. A TLS connection's rows wait until its socket is known (its
// addresses), which is at most one write away.
func (h *httpProbe) emit(row formats.HTTPRequest, c *httpConn) {
	if c.tls && !c.bound && len(c.unbound) < maxUnbound {
		c.unbound = append(c.unbound, row)
		return
	}
	h.write(row, c)
}

func (h *httpProbe) write(row formats.HTTPRequest, c *httpConn) {
	row.PID, row.TID = c.pid, c.tid
	if c.tls {
		// The socket may have become known since the row was made.
		row.LocalAddr, row.RemoteAddr, row.Connection, row.CgroupID = c.local, c.remote, c.cookie, c.cgroup
	}
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
func (h *httpProbe) conn(ev *bpfRecHead) *httpConn {
	if ev.Flags&flagTLS != 0 {
		key := tlsKey{pid: ev.CtxPid, ptr: ev.ConnKey}
		c := h.tlsConns[key]
		if c == nil {
			h.makeRoom()
			c = &httpConn{tls: true, pid: ev.CtxPid}
			h.tlsConns[key] = c
		}
		if !c.bound && ev.Flags&flagBound != 0 {
			h.bind(c, ev)
		}
		return c
	}
	c := h.wire[ev.Cookie]
	if c == nil {
		h.makeRoom()
		c = &httpConn{cookie: ev.Cookie}
		c.local, c.remote = addrs(ev)
		h.wire[ev.Cookie] = c
	}
	return c
}

// makeRoom evicts idle connections when the state is full: a map has no
// order, so this is approximate, and counted.
func (h *httpProbe) makeRoom() {
	if h.connCount() >= maxConnections {
		evictIdle(h, h.wire)
		evictIdle(h, h.tlsConns)
	}
}

// allConns lists the sockets' and the TLS libraries' connections.
func (h *httpProbe) allConns() []*httpConn {
	all := make([]*httpConn, 0, h.connCount())
	for _, c := range h.wire {
		all = append(all, c)
	}
	for _, c := range h.tlsConns {
		all = append(all, c)
	}
	return all
}

func (h *httpProbe) connCount() int { return len(h.wire) + len(h.tlsConns) }

func evictIdle[K comparable](h *httpProbe, m map[K]*httpConn) {
	for k, c := range m {
		if h.connCount() < maxConnections*9/10 {
			return
		}
		if len(c.pending) == 0 && len(c.unbound) == 0 && (c.h2 == nil || c.h2.Open() == 0) {
			h.forget(c)
			delete(m, k)
			h.count("state_evicted")
		}
	}
}

// forget keeps what a connection's HTTP/2 decoder counted before its
// state goes.
func (h *httpProbe) forget(c *httpConn) {
	if c.h2 != nil {
		h.countH2(c)
	}
}

// addrs formats the record's addresses (the kernel orients them: source is
// the socket's own end).
func addrs(ev *bpfRecHead) (local, remote string) {
	if ev.Family != 4 && ev.Family != 6 {
		return "", ""
	}
	return netip.AddrPortFrom(ipOf(ev.Family, ev.Saddr), ev.Sport).String(),
		netip.AddrPortFrom(ipOf(ev.Family, ev.Daddr), ev.Dport).String()
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
	if h.tls != nil {
		h.tls.stop()
	}
	h.stopRescan()
	h.detachAll()
	if h.tls != nil {
		h.tls.wait()
	}
	h.ring.Stop()
	// Requests still waiting for a response at the end of the window are
	// kept (response_ns = 0, or the response's first byte when it had
	// begun) and counted: first those the kernel holds, then those queued
	// here.
	if h.objs.Socks != nil && h.wire != nil {
		if err := h.readHeld(); err != nil {
			s.Warnf("http: reading the requests still held in the kernel: %v (they are not in the archive)", err)
		}
		h.readHeldTLS()
	}
	if h.wire != nil {
		h.flushNames(^uint64(0))
		for _, c := range h.allConns() {
			for _, row := range c.pending {
				h.countFor(c, "no_response")
				h.emit(row, c)
			}
			if c.h2 != nil {
				for _, x := range c.h2.Close() {
					h.h2Row(c, x)
				}
			}
		}
		h.flushNames(^uint64(0))
		for _, c := range h.allConns() {
			h.flushUnbound(c)
			h.forget(c)
		}
		h.endTLS()
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

// readHeld finds the requests the kernel still holds at the end of the
// window (and the responses still being sent) in the socket-local storage
// of the sockets that are open. Such a map cannot be iterated from user
// space, and iterator programs are refused on locked-down kernels like
// this project's, so its entries are looked up by socket: every socket
// file descriptor of the processes the capture is about is duplicated with
// pidfd_getfd and used as the key.
func (h *httpProbe) readHeld() error {
	procs, err := os.ReadDir("/proc")
	if err != nil {
		return err
	}
	seen := map[string]bool{} // socket inodes already looked up
	for _, p := range procs {
		pid, err := strconv.Atoi(p.Name())
		if err != nil || pid <= 0 || (h.s.Filtered() && !h.s.IsTarget(uint32(pid))) {
			continue
		}
		h.readHeldOf(pid, seen)
	}
	return nil
}

// readHeldOf looks up the state of every socket pid holds.
func (h *httpProbe) readHeldOf(pid int, seen map[string]bool) {
	dir := "/proc/" + strconv.Itoa(pid) + "/fd"
	fds, err := os.ReadDir(dir)
	if err != nil {
		return // exited, or not ours to read
	}
	pidfd := -1
	defer func() {
		if pidfd >= 0 {
			unix.Close(pidfd)
		}
	}()
	for _, f := range fds {
		target, err := os.Readlink(dir + "/" + f.Name())
		if err != nil || !strings.HasPrefix(target, "socket:[") || seen[target] {
			continue
		}
		seen[target] = true
		n, err := strconv.Atoi(f.Name())
		if err != nil {
			continue
		}
		if pidfd < 0 {
			if pidfd, err = unix.PidfdOpen(pid, 0); err != nil {
				return
			}
		}
		fd, err := unix.PidfdGetfd(pidfd, n, 0)
		if err != nil {
			continue
		}
		var st bpfHttpSock
		if h.objs.Socks.Lookup(uint32(fd), &st) == nil {
			if cookie, err := unix.GetsockoptUint64(fd, unix.SOL_SOCKET, unix.SO_COOKIE); err == nil {
				h.handleHeld(&st, bpfRecHead{Cookie: cookie})
			}
		}
		unix.Close(fd)
	}
}

// readHeldTLS reads what the TLS connections' states still hold (a hash
// map: it can be iterated).
func (h *httpProbe) readHeldTLS() {
	if h.objs.TlsConns == nil {
		return
	}
	var k bpfTlsKey
	var st bpfHttpSock
	// Responses whose socket never drained: their end is their write.
	var ev bpfHttpEvent
	for it := h.objs.TlsDeferred.Iterate(); it.Next(&k, &ev); {
		n := min(int(ev.LineLen), len(ev.Line))
		h.handleRecord(&ev, unsafe.Slice((*byte)(unsafe.Pointer(&ev.Line[0])), n))
	}
	it := h.objs.TlsConns.Iterate()
	for it.Next(&k, &st) {
		h.handleHeld(&st, bpfRecHead{Flags: flagTLS | flagCtx, CtxPid: k.Tgid, ConnKey: k.Ptr})
	}
}

// handleHeld turns a connection's state at the end into the record the
// kernel would have sent: its held request, with the response's first
// byte when the response had begun; or, on a connection whose messages go
// to user space one by one, the response still being sent. head names the
// connection.
func (h *httpProbe) handleHeld(st *bpfHttpSock, head bpfRecHead) {
	if st.Held == 0 && st.Pipelined == 0 {
		return
	}
	r := &st.Req
	var ev bpfHttpEvent
	ev.H = head
	ev.H.SockCgroup = r.SockCgroup
	ev.H.Family, ev.H.Saddr, ev.H.Daddr, ev.H.Sport, ev.H.Dport = r.Conn.Family, r.Conn.Saddr, r.Conn.Daddr, r.Conn.Sport, r.Conn.Dport
	ev.ReqBody, ev.RespBody = int64(r.Body), -1
	respDir := &st.Dir[1] // a server sends the response
	if r.Egress != 0 {
		ev.H.Flags |= flagClient
		respDir = &st.Dir[0]
	}
	var line []byte
	if st.Held != 0 && st.Pipelined == 0 {
		ev.H.Kind, ev.ReqNs = kindRequest, r.TimeNs
		if r.Ctx != 0 {
			ev.H.Flags |= flagCtx
			ev.H.CtxCgroup, ev.H.CtxPid, ev.H.CtxTid = r.CtxCgroup, r.CtxPid, r.CtxTid
		}
		n := min(int(r.LineLen), len(r.Line))
		line = unsafe.Slice((*byte)(unsafe.Pointer(&r.Line[0])), n)
	}
	if respDir.IsResponse != 0 {
		if ev.H.Kind == kindRequest {
			ev.H.Kind = kindPair
		} else {
			ev.H.Kind = kindResponse
		}
		ev.RespNs, ev.Status, ev.RespBody = respDir.MsgNs, respDir.Status, int64(respDir.Body)
		ev.H.Flags |= flagEndUnknown
		if respDir.Ctx != 0 {
			ev.H.Flags |= flagCtx
			ev.H.CtxCgroup, ev.H.CtxPid, ev.H.CtxTid = respDir.CtxCgroup, respDir.CtxPid, respDir.CtxTid
		}
	}
	if ev.H.Kind != 0 {
		h.handleRecord(&ev, line)
	}
}
