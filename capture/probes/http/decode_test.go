//go:build linux

package http

import (
	"path/filepath"
	"testing"
	"unsafe"

	"github.com/bpfsnap/bpfsnap/capture/recorder"
	"github.com/bpfsnap/bpfsnap/formats"
)

// BenchmarkHTTPRecord measures the recorder's user-space work per ring
// record of the http probe set — decoding, parsing and writing the row —
// on records shaped like those nginx under wrk produces (the kernel paired
// and framed them). `go test -bench HTTPRecord ./capture/`.
func BenchmarkHTTPRecord(b *testing.B) {
	w, err := formats.Create(filepath.Join(b.TempDir(), "b.bpfsnap"), formats.Manifest{}, formats.CreateOptions{})
	if err != nil {
		b.Fatal(err)
	}
	h := &httpProbe{s: recorder.NewDetachedSession(w, recorder.Options{}), conns: map[connKey]*httpConn{}, counters: map[string]uint64{}}
	h.table = formats.NewTable[formats.HTTPRequest](w, formats.TableHTTPRequests)
	var ev bpfHttpEvent
	ev.H.Kind, ev.H.Family, ev.H.SockCgroup = kindPair, 4, 7
	ev.H.Saddr = [16]uint8{127, 0, 0, 1}
	ev.H.Daddr = [16]uint8{127, 0, 0, 1}
	ev.H.Sport, ev.H.Dport = 8080, 40000
	line := "GET /index.html HTTP/1.1\r"
	for i := range len(line) {
		ev.Line[i] = int8(line[i])
	}
	ev.LineLen = uint16(len(line))
	ev.Status, ev.ReqBody, ev.RespBody = 200, -1, 17
	ev.H.Flags, ev.H.CtxCgroup, ev.H.CtxPid, ev.H.CtxTid = flagCtx, 7, 100, 100
	raw := unsafe.Slice((*byte)(unsafe.Pointer(&ev)), lineOffset+len(line))
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		ev.H.Cookie = uint64(i % 64) // 64 keep-alive connections
		ev.ReqNs = uint64(i) * 1000
		ev.RespNs, ev.RespEndNs = ev.ReqNs+50000, ev.ReqNs+50000
		h.handle(raw)
	}
	if err := w.Seal(); err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	w.Abort()
}

// The kernel's drop counters are named from formats' catalog in the order
// of enum http_drop: one name per counter.
func TestDropNamesMatchEnum(t *testing.T) {
	if len(httpDropNames) != int(bpfHttpDropHTTP_DROP_MAX) {
		t.Fatalf("%d names for %d kernel counters", len(httpDropNames), bpfHttpDropHTTP_DROP_MAX)
	}
}
