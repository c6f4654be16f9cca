//go:build linux

package http

import (
	"path/filepath"
	"testing"
	"time"
	"unsafe"

	"github.com/bpfsnap/bpfsnap/capture/recorder"
	"github.com/bpfsnap/bpfsnap/formats"
)

// A released socket's connection state ends closeGrace after the kernel's
// close record, not before (a late record still finds its owner), and a
// request it still queued is written without response.
func TestReleasedSocketStateEnds(t *testing.T) {
	h := detachedProbe(t)

	message := func(kind uint8, cookie uint64, pid uint32) {
		var ev bpfHttpEvent
		ev.H.Kind, ev.H.Family, ev.H.Cookie, ev.H.SockCgroup = kind, 4, cookie, 7
		if pid != 0 {
			ev.H.Flags, ev.H.CtxCgroup, ev.H.CtxPid, ev.H.CtxTid = flagCtx, 7, pid, pid
		}
		line := "GET /x HTTP/1.1\r"
		for i := range len(line) {
			ev.Line[i] = int8(line[i])
		}
		ev.LineLen = uint16(len(line))
		ev.ReqNs, ev.RespNs, ev.RespEndNs, ev.Status, ev.ReqBody, ev.RespBody = 1000, 2000, 3000, 200, -1, 2
		h.handle(unsafe.Slice((*byte)(unsafe.Pointer(&ev)), lineOffset+len(line)))
	}
	closed := func(cookie uint64) {
		head := bpfRecHead{Kind: kindClose, Cookie: cookie}
		h.handle(unsafe.Slice((*byte)(unsafe.Pointer(&head)), headSize))
	}

	message(kindPair, 1, 100)  // socket 1: its owner is 100
	message(kindRequest, 1, 0) // then a request left unanswered
	message(kindPair, 2, 200)  // socket 2 stays open
	closed(1)
	closed(3) // a socket never seen: nothing to end
	if len(h.wire) != 2 || !h.wire[1].closed || h.wire[2].closed {
		t.Fatalf("right after the close: %d connections, want both kept (socket 1 marked closed)", len(h.wire))
	}
	message(kindPair, 1, 0) // late, sent from a softirq: no owner context
	if c := h.wire[1]; c == nil || c.pid != 100 {
		t.Fatalf("a record within the grace lost socket 1's owner: %+v", c)
	}
	h.expireClosed(time.Now().Add(closeGrace))
	if len(h.wire) != 1 || h.wire[2] == nil {
		t.Fatalf("after the grace: connections %v, want socket 2's only", h.wire)
	}
	if n := h.counters["http.no_response"]; n != 1 {
		t.Fatalf("http.no_response = %d, want 1 (socket 1's queued request)", n)
	}
	if len(h.closing) != 0 {
		t.Fatalf("%d sockets still waiting to close", len(h.closing))
	}
}

// A socket that carried TLS no probe tied to its connection is settled at
// its release: counted for its process at the end, its entry gone, so the
// sockets waiting for a tie are only the open ones. A socket tied later
// is not counted.
func TestReleasedTLSSocketsSettle(t *testing.T) {
	h := detachedProbe(t)
	record := func(head bpfRecHead) {
		h.handle(unsafe.Slice((*byte)(unsafe.Pointer(&head)), headSize))
	}
	seen := func(cookie uint64, pid uint32) {
		record(bpfRecHead{Kind: kindTLSSeen, Family: 4, Cookie: cookie, Flags: flagCtx, CtxPid: pid, CtxTid: pid})
	}
	seen(10, 100)
	seen(11, 100)
	seen(12, 200)
	seen(10, 100) // reported again: one socket still
	// Socket 11 gets tied to a TLS probe's connection of process 100.
	record(bpfRecHead{Kind: kindTLSBind, Family: 4, Cookie: 11, Flags: flagTLS | flagBound | flagCtx, CtxPid: 100, CtxTid: 100, ConnKey: 0x1234})
	for _, cookie := range []uint64{10, 11, 13} {
		record(bpfRecHead{Kind: kindClose, Cookie: cookie})
	}
	if len(h.tlsSeen) != 1 || h.tlsSeen[12] != 200 {
		t.Fatalf("sockets waiting for a tie: %v, want only socket 12 (process 200)", h.tlsSeen)
	}
	if h.tlsUntied[100] != 1 {
		t.Fatalf("process 100's sockets closed untied: %d, want 1 (socket 10)", h.tlsUntied[100])
	}
	h.endTLS()
	if n := h.counters["http.tls_undecoded"]; n != 2 {
		t.Fatalf("http.tls_undecoded = %d, want 2 (socket 10 closed, socket 12 still open; 11 was tied)", n)
	}
}

// detachedProbe is an http probe set writing to a new archive with no
// kernel behind it: records are handed to it as the ring reader would.
func detachedProbe(t *testing.T) *httpProbe {
	w, err := formats.Create(filepath.Join(t.TempDir(), "c.bpfsnap"), formats.Manifest{}, formats.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Abort() })
	h := &httpProbe{}
	h.reset(recorder.NewDetachedSession(w, recorder.Options{}))
	h.table = formats.NewTable[formats.HTTPRequest](w, formats.TableHTTPRequests)
	return h
}
