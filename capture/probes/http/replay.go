//go:build linux

package http

import (
	"unsafe"

	"github.com/bpfsnap/bpfsnap/capture/recorder"
	"github.com/bpfsnap/bpfsnap/formats"
)

// Replay returns a function that feeds the probe set's own decoder, with
// no kernel, the i-th of a stream of ring records shaped like those nginx
// under wrk produces (the kernel framed and paired each exchange: one
// record per request, on 64 keep-alive connections). Benchmarks of the
// recorder's user-space half (bench/, BenchmarkHTTPRecord) run the real
// decoding through it rather than a copy of it.
func Replay(s *recorder.Session) func(i int) error {
	h := &httpProbe{}
	h.reset(s)
	h.table = formats.NewTable[formats.HTTPRequest](s.Writer(), formats.TableHTTPRequests)
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
	return func(i int) error {
		ev.H.Cookie = uint64(i % 64)
		ev.ReqNs = uint64(i) * 1000
		ev.RespNs, ev.RespEndNs, ev.RespWrittenNs = ev.ReqNs+50000, ev.ReqNs+60000, ev.ReqNs+60000
		h.handle(raw)
		return s.Writer().Err()
	}
}
