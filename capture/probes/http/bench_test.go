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
// record of the http probe set — decoding, parsing, pairing and writing the
// row — on records shaped like those nginx under wrk produces (the kernel
// paired them). `go test -bench HTTPRecord ./capture/`.
func BenchmarkHTTPRecord(b *testing.B) {
	w, err := formats.Create(filepath.Join(b.TempDir(), "b.bpfsnap"), formats.Manifest{}, formats.CreateOptions{})
	if err != nil {
		b.Fatal(err)
	}
	h := &httpProbe{s: recorder.NewDetachedSession(w, recorder.Options{}), conns: map[uint64]*httpConn{}, counters: map[string]uint64{}}
	h.table = formats.NewTable[formats.HTTPRequest](w, formats.TableHTTPRequests)
	var ev bpfHttpEvent
	ev.Kind, ev.Family, ev.SockCgroup = kindPair, 4, 7
	ev.Saddr = [16]uint8{127, 0, 0, 1}
	ev.Daddr = [16]uint8{127, 0, 0, 1}
	ev.Sport, ev.Dport = 8080, 40000
	put := func(m *bpfHttpMsg, s string) {
		for i := range len(s) {
			m.Payload[i] = int8(s[i])
		}
		m.Copied, m.SegLen = uint32(len(s)), uint32(len(s))
	}
	put(&ev.Req, "GET /index.html HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n")
	put(&ev.Msg, "HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nDate: Tue, 01 Dec 2026 19:59:02 GMT\r\nContent-Type: text/html\r\nContent-Length: 17\r\nLast-Modified: Tue, 01 Dec 2026 19:40:00 GMT\r\nConnection: keep-alive\r\nETag: \"6745b1a0-11\"\r\nAccept-Ranges: bytes\r\n\r\n")
	ev.Msg.SegLen += 17
	ev.Msg.Egress, ev.Msg.CurrentCgroup, ev.Msg.Pid, ev.Msg.Tid = 1, 7, 100, 100
	raw := unsafe.Slice((*byte)(unsafe.Pointer(&ev)), unsafe.Sizeof(ev))
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		ev.Cookie = uint64(i % 64) // 64 keep-alive connections
		ev.Req.Seq, ev.Msg.Seq = uint32(i), uint32(i)
		ev.Req.TimeNs, ev.Msg.TimeNs = uint64(i)*1000, uint64(i)*1000+50000
		h.handle(raw)
	}
	if err := w.Seal(); err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	w.Abort()
}
