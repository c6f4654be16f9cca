//go:build linux

package http

import (
	"strings"
	"unsafe"

	"github.com/bpfsnap/bpfsnap/formats"
	"github.com/bpfsnap/bpfsnap/internal/h2"
	"github.com/bpfsnap/bpfsnap/internal/httpparse"
)

// handleH2 feeds an HTTP/2 frame record to its connection's decoder
// (internal/h2) and writes the exchanges it completes.
func (h *httpProbe) handleH2(raw []byte) {
	if len(raw) < h2Offset {
		return
	}
	ev := (*bpfH2Event)(unsafe.Pointer(&raw[0]))
	c := h.conn(&ev.H)
	h.learnOwner(c, &ev.H)
	if c.h2 == nil {
		c.h2 = h2.NewConn()
	}
	egress := ev.H.Flags&flagEgress != 0
	if ev.H.Kind == kindH2Resync {
		c.h2.Resync(egress)
		return
	}
	n := min(int(ev.N), len(raw)-h2Offset)
	f := h2.Fragment{
		TimeNs: ev.TimeNs, FrameNs: ev.FrameNs, Egress: egress, Preface: ev.H.Flags&flagPreface != 0,
		Type: ev.Ftype, Flags: ev.Fflags, Stream: ev.Stream, FrameLen: ev.FrameLen, Offset: ev.FragOff,
		Data: raw[h2Offset : h2Offset+n], Last: ev.Last != 0, Cut: ev.Cut != 0, DataBytes: ev.DataBytes, RSTCode: ev.RstCode,
	}
	for _, x := range c.h2.Add(f) {
		h.h2Row(c, x)
	}
	if len(h.names.waiting) > 0 {
		h.flushNames(ev.TimeNs)
	}
}

// countH2 moves what a connection's decoder counted to the drop counters.
func (h *httpProbe) countH2(c *httpConn) {
	n := c.h2.Counts
	h.countNFor(c, "h2_block_broken", n.BlocksBroken)
	h.countNFor(c, "h2_decoder_reset", n.DecodeResets)
	h.countNFor(c, "h2_streams_overflow", n.StreamsOverflow)
	h.countNFor(c, "response_without_request", n.ResponseWithoutRequest)
	c.h2.Counts = h2.Counts{}
}

// h2Row makes an exchange a row. A stream whose name or status the
// decoder could not read waits for the Go uprobes' fields (nameBook).
func (h *httpProbe) h2Row(c *httpConn, x h2.Exchange) {
	row := formats.HTTPRequest{
		RequestNs: x.RequestNs, ResponseNs: x.ResponseNs, ResponseEndNs: x.ResponseEndNs, CgroupID: c.cgroup,
		Role: formats.RoleClient, Method: x.Method, Status: x.Status, LocalAddr: c.local, RemoteAddr: c.remote,
		Connection: c.cookie, RequestBytes: x.RequestBytes, ResponseBytes: x.ResponseBytes, Protocol: formats.ProtocolHTTP2,
		TLS: c.tls, Stream: x.Stream, GRPCStatus: x.GRPCStatus,
	}
	if x.Server {
		row.Role = formats.RoleServer
	}
	if x.GRPC() {
		row.Protocol = formats.ProtocolGRPC
	}
	if !x.NameUnknown {
		h.setPath(&row, c, x.Path)
	}
	w := waitingRow{row: row, c: c, nameUnknown: x.NameUnknown, statusUnknown: x.StatusUnknown}
	if w.nameUnknown || w.statusUnknown {
		if h.tls != nil && h.tls.goNames(c.pid) {
			h.names.wait(w)
			return
		}
	}
	h.finishH2(w)
}

// setPath cleans an HTTP/2 :path as the HTTP/1.x request target is
// cleaned (query string and userinfo cut unless --keep-query).
func (h *httpProbe) setPath(row *formats.HTTPRequest, c *httpConn, p string) {
	path, cut := httpparse.CleanTarget(p, h.keepQuery)
	if cut {
		h.countFor(c, "truncated_path")
	}
	row.Path, row.PathTruncated = path, cut
}

// finishH2 writes an HTTP/2 row, counting what stayed unknown.
func (h *httpProbe) finishH2(w waitingRow) {
	row := w.row
	if w.nameUnknown {
		row.Path = formats.PathNameUnknown
		h.countFor(w.c, "h2_name_unknown")
	}
	if w.statusUnknown {
		h.countFor(w.c, "h2_status_unknown")
	}
	if row.ResponseNs == 0 {
		h.countFor(w.c, "no_response")
	} else if row.ResponseEndNs == 0 {
		h.countFor(w.c, "response_end_unknown")
	}
	h.emit(row, w.c)
}

// ---- Names of streams from the Go uprobes -----------------------------------------

// goFields is what one go_h2_names record holds.
type goFields struct {
	timeNs     uint64
	incoming   bool // read from the peer (else about to be written)
	server     bool // the function is a server's (known for incoming only)
	endStream  bool
	method     string
	ctype      string
	path       string
	hasPath    bool
	status     uint32
	grpcStatus int32
}

type nameKey struct {
	pid    uint32
	stream uint32
}

// waitingRow is an HTTP/2 row whose name or status is unknown, waiting
// for the fields a Go uprobe reads.
type waitingRow struct {
	row                        formats.HTTPRequest
	c                          *httpConn
	nameUnknown, statusUnknown bool
}

// nameBook matches the header fields the Go uprobes read to the streams
// the wire showed without them, by process, stream id and time. The
// uprobe of an incoming block fires just after the kernel saw it on the
// wire; that of an outgoing block just before. Rows wait up to
// namesWaitNs (on the records' clock) for their fields.
type nameBook struct {
	fields  map[nameKey][]goFields
	waiting []waitingRow
	lastNs  uint64
	flushed uint64
}

const (
	namesWaitNs   = 500_000_000
	namesKeepNs   = 5_000_000_000
	maxNameFields = 100_000
	// namesWindowNs bounds how far from a stream's request its fields may be.
	namesWindowNs = 2_000_000_000
)

func (b *nameBook) wait(w waitingRow) { b.waiting = append(b.waiting, w) }

// handleNames takes a go_h2_names record.
func (h *httpProbe) handleNames(raw []byte) {
	if len(raw) < namesFixed {
		return
	}
	ev := (*bpfGoH2Event)(unsafe.Pointer(&raw[0]))
	fn := uint32(ev.Fn)
	f := goFields{timeNs: ev.TimeNs, incoming: fn&uint32(bpfGoH2FnGO_H2INCOMING) != 0, server: fn&uint32(bpfGoH2FnGO_H2SERVER) != 0,
		endStream: ev.EndStream != 0, status: uint32(ev.Status), grpcStatus: ev.GrpcStatus}
	f.method = string(bytesOf(ev.Method[:min(int(ev.MethodLen), len(ev.Method))]))
	f.ctype = string(bytesOf(ev.Ctype[:min(int(ev.CtypeLen), len(ev.Ctype))]))
	if n := min(int(ev.PathLen), len(raw)-namesFixed, len(ev.Path)); n > 0 {
		f.path, f.hasPath = string(raw[namesFixed:namesFixed+n]), true
	}
	b := &h.names
	if b.fields == nil {
		b.fields = map[nameKey][]goFields{}
	}
	k := nameKey{ev.H.CtxPid, ev.Stream}
	if len(b.fields) < maxNameFields {
		b.fields[k] = append(b.fields[k], f)
	}
	b.lastNs = max(b.lastNs, ev.TimeNs)
	h.flushNames(b.lastNs)
}

func bytesOf(s []int8) []byte {
	return unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(s))), len(s))
}

// flushNames completes the waiting rows whose fields came, writes those
// that waited long enough (or all, at the end: now = max) and forgets old
// fields.
func (h *httpProbe) flushNames(now uint64) {
	b := &h.names
	if now != ^uint64(0) && now < b.flushed+namesWaitNs/10 {
		return
	}
	b.flushed = now
	kept := b.waiting[:0]
	for _, w := range b.waiting {
		h.nameRow(&w)
		done := !w.nameUnknown && !w.statusUnknown
		if done || now == ^uint64(0) || now > w.row.RequestNs+namesWaitNs && now > w.row.ResponseEndNs+namesWaitNs {
			h.finishH2(w)
			continue
		}
		kept = append(kept, w)
	}
	b.waiting = kept
	for k, fs := range b.fields {
		i := 0
		for i < len(fs) && (now == ^uint64(0) || fs[i].timeNs+namesKeepNs < now) {
			i++
		}
		if i > 0 {
			if i == len(fs) {
				delete(b.fields, k)
			} else {
				b.fields[k] = fs[i:]
			}
		}
	}
}

// nameRow fills a waiting row from the fields of its process and stream:
// the request's fields (an incoming block at a server, an outgoing one at
// a client) nearest its first byte; the response's status and grpc-status
// from the blocks after it.
func (h *httpProbe) nameRow(w *waitingRow) {
	k := nameKey{w.c.pid, w.row.Stream}
	fs := h.names.fields[k]
	if len(fs) == 0 {
		return
	}
	server := w.row.Role == formats.RoleServer
	near := func(t uint64) bool {
		return t+namesWindowNs > w.row.RequestNs && t < w.row.RequestNs+namesWindowNs
	}
	used := map[int]bool{}
	if w.nameUnknown {
		best, bestD := -1, uint64(0)
		for i, f := range fs {
			// At a server the request is read (incoming); at a client it
			// is written (outgoing).
			if !f.hasPath || f.incoming != server || !near(f.timeNs) {
				continue
			}
			d := absDiff(f.timeNs, w.row.RequestNs)
			if best < 0 || d < bestD {
				best, bestD = i, d
			}
		}
		if best >= 0 {
			f := fs[best]
			h.setPath(&w.row, w.c, f.path)
			if w.row.Method == "" {
				w.row.Method = f.method
			}
			if strings.HasPrefix(f.ctype, "application/grpc") {
				w.row.Protocol = formats.ProtocolGRPC
			}
			w.nameUnknown = false
			used[best] = true
		}
	}
	if w.statusUnknown {
		for i, f := range fs {
			// The response's blocks: written by a server, read by a client.
			if f.hasPath || f.incoming == server || f.timeNs+namesWindowNs < w.row.RequestNs || !near(f.timeNs) {
				continue
			}
			if f.status != 0 && w.row.Status == 0 {
				w.row.Status = f.status
				used[i] = true
			}
			if f.grpcStatus >= 0 {
				w.row.GRPCStatus = f.grpcStatus
				w.statusUnknown = false
				used[i] = true
			}
		}
		if w.row.Protocol != formats.ProtocolGRPC && w.row.Status != 0 {
			w.statusUnknown = false
		}
	}
	if len(used) > 0 {
		kept := fs[:0]
		for i, f := range fs {
			if !used[i] {
				kept = append(kept, f)
			}
		}
		if len(kept) == 0 {
			delete(h.names.fields, k)
		} else {
			h.names.fields[k] = kept
		}
	}
}

func absDiff(a, b uint64) uint64 {
	if a > b {
		return a - b
	}
	return b - a
}
