package h2

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math/rand"
	"testing"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// wire is one direction of a connection written by x/net's framer, cut
// into segments and turned into fragments the way the kernel walk does
// (capture/probes/http/walk.h): header block bytes per segment, DATA
// summed per stream and reported with the frame that ends the stream.
type wire struct {
	buf     bytes.Buffer
	fr      *http2.Framer
	enc     *hpack.Encoder
	hbuf    bytes.Buffer
	egress  bool
	preface bool
}

func newWire(egress, preface bool) *wire {
	w := &wire{egress: egress, preface: preface}
	w.fr = http2.NewFramer(&w.buf, nil)
	w.enc = hpack.NewEncoder(&w.hbuf)
	return w
}

func (w *wire) headers(t *testing.T, stream uint32, end bool, kv ...string) {
	t.Helper()
	w.hbuf.Reset()
	for i := 0; i < len(kv); i += 2 {
		if err := w.enc.WriteField(hpack.HeaderField{Name: kv[i], Value: kv[i+1]}); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: stream, BlockFragment: w.hbuf.Bytes(), EndStream: end, EndHeaders: true}); err != nil {
		t.Fatal(err)
	}
}

func (w *wire) data(t *testing.T, stream uint32, end bool, n int) {
	t.Helper()
	if err := w.fr.WriteData(stream, end, make([]byte, n)); err != nil {
		t.Fatal(err)
	}
}

// fragments cuts the bytes written so far at the given segment lengths
// (the rest in one segment) and returns the kernel's records; the segment
// times are 1000, 2000, ...
func (w *wire) fragments(t *testing.T, cuts ...int) []Fragment {
	t.Helper()
	b := w.buf.Bytes()
	w.buf.Reset()
	var segs [][2]int
	at := 0
	for _, c := range cuts {
		if at+c >= len(b) {
			break
		}
		segs = append(segs, [2]int{at, at + c})
		at += c
	}
	segs = append(segs, [2]int{at, len(b)})
	timeOf := func(off int) uint64 {
		for i, s := range segs {
			if off < s[1] {
				return uint64(i+1) * 1000
			}
		}
		return uint64(len(segs)) * 1000
	}
	var out []Fragment
	sums := map[uint32]int64{}
	for p := 0; p < len(b); {
		hdr := b[p : p+9]
		l := int(hdr[0])<<16 | int(hdr[1])<<8 | int(hdr[2])
		typ, flags := hdr[3], hdr[4]
		sid := binary.BigEndian.Uint32(hdr[5:]) & 0x7fffffff
		start, end := p+9, p+9+l
		base := Fragment{FrameNs: timeOf(p), Egress: w.egress, Preface: w.preface, Type: typ, Flags: flags, Stream: sid, FrameLen: uint32(l), DataBytes: -1}
		switch typ {
		case TypeData:
			n := int64(l)
			if flags&FlagPadded != 0 {
				n -= 1 + int64(b[start])
			}
			sums[sid] += n
			if flags&FlagEndStream != 0 {
				f := base
				f.TimeNs, f.Last, f.DataBytes = timeOf(end-1), true, sums[sid]
				delete(sums, sid)
				out = append(out, f)
			}
		case TypeHeaders, TypeContinuation:
			if l == 0 {
				f := base
				f.TimeNs, f.Last = timeOf(start-1), true
				out = append(out, f)
			}
			for _, s := range segs {
				lo, hi := max(s[0], start), min(s[1], end)
				if lo >= hi {
					continue
				}
				f := base
				f.TimeNs, f.Offset, f.Data, f.Last = timeOf(lo), uint32(lo-start), b[lo:hi], hi == end
				if f.Last && typ == TypeHeaders && flags&FlagEndStream != 0 {
					f.DataBytes = sums[sid]
					delete(sums, sid)
				}
				out = append(out, f)
			}
		case TypeRSTStream:
			f := base
			f.TimeNs, f.Last, f.RSTCode, f.DataBytes = timeOf(end-1), true, binary.BigEndian.Uint32(b[start:end]), sums[sid]
			delete(sums, sid)
			out = append(out, f)
		}
		p = end
	}
	return out
}

func feed(c *Conn, frags ...[]Fragment) []Exchange {
	var out []Exchange
	for _, fs := range frags {
		for _, f := range fs {
			out = append(out, c.Add(f)...)
		}
	}
	return out
}

// A unary gRPC call seen from the server: request headers and message in,
// response headers, message and trailers (grpc-status) out.
func TestGRPCCallFromTheServer(t *testing.T) {
	in, out := newWire(false, true), newWire(true, false)
	c := NewConn()
	in.headers(t, 1, false, ":method", "POST", ":scheme", "http", ":path", "/pkg.Svc/Get", ":authority", "x",
		"content-type", "application/grpc", "authorization", "secret-token")
	in.data(t, 1, true, 17)
	ex := feed(c, in.fragments(t, 5, 7))
	out.headers(t, 1, false, ":status", "200", "content-type", "application/grpc")
	out.data(t, 1, false, 40)
	out.data(t, 1, false, 2)
	out.headers(t, 1, true, "grpc-status", "5", "grpc-message", "not found")
	ex = append(ex, feed(c, out.fragments(t, 3, 30, 40))...)
	if len(ex) != 1 {
		t.Fatalf("exchanges: %+v", ex)
	}
	e := ex[0]
	want := Exchange{Stream: 1, Server: true, Method: "POST", Path: "/pkg.Svc/Get", ContentType: "application/grpc", Status: 200,
		GRPCStatus: 5, RequestNs: 1000, ResponseNs: 1000, ResponseEndNs: 4000, RequestBytes: 17, ResponseBytes: 42}
	if e != want {
		t.Errorf("got  %+v\nwant %+v", e, want)
	}
	if !e.GRPC() {
		t.Error("not gRPC")
	}
}

// Every cut of a direction into two segments gives the same exchanges:
// header blocks split anywhere (inside a frame header, inside the block)
// are reassembled.
func TestSplitAnywhere(t *testing.T) {
	mk := func() (*wire, *wire) {
		in, out := newWire(true, true), newWire(false, false) // a client: requests go out
		for s := uint32(1); s <= 5; s += 2 {
			in.headers(t, s, true, ":method", "GET", ":scheme", "https", ":path", fmt.Sprintf("/item/%d?q=1", s), ":authority", "example.com")
			out.headers(t, s, false, ":status", "404", "content-type", "text/html")
			out.data(t, s, true, int(s)*100)
		}
		return in, out
	}
	in, out := mk()
	total := in.buf.Len()
	for cut := 1; cut < total; cut++ {
		in, out = mk()
		c := NewConn()
		ex := feed(c, in.fragments(t, cut), out.fragments(t, cut))
		if len(ex) != 3 {
			t.Fatalf("cut %d: %d exchanges", cut, len(ex))
		}
		for _, e := range ex {
			if e.Server || e.Method != "GET" || e.Path != fmt.Sprintf("/item/%d?q=1", e.Stream) || e.Status != 404 || e.ResponseBytes != int64(e.Stream)*100 {
				t.Fatalf("cut %d: %+v", cut, e)
			}
		}
		if c.Counts != (Counts{}) {
			t.Fatalf("cut %d: counts %+v", cut, c.Counts)
		}
	}
}

// Padding and priority fields of a HEADERS frame are not header block.
func TestPaddedHeadersWithPriority(t *testing.T) {
	w := newWire(false, true)
	var hb bytes.Buffer
	enc := hpack.NewEncoder(&hb)
	enc.WriteField(hpack.HeaderField{Name: ":method", Value: "GET"})
	enc.WriteField(hpack.HeaderField{Name: ":path", Value: "/padded"})
	if err := w.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 3, BlockFragment: hb.Bytes(), EndStream: true, EndHeaders: true,
		PadLength: 9, Priority: http2.PriorityParam{StreamDep: 1, Weight: 7}}); err != nil {
		t.Fatal(err)
	}
	c := NewConn()
	feed(c, w.fragments(t, 12))
	s := c.streams[3]
	if s == nil || s.ex.Path != "/padded" || s.ex.Method != "GET" {
		t.Fatalf("stream: %+v", s)
	}
}

// A block continued in CONTINUATION frames is decoded once complete.
func TestContinuation(t *testing.T) {
	w := newWire(false, true)
	var hb bytes.Buffer
	enc := hpack.NewEncoder(&hb)
	enc.WriteField(hpack.HeaderField{Name: ":method", Value: "POST"})
	enc.WriteField(hpack.HeaderField{Name: ":path", Value: "/a/long/path/split/across/frames"})
	enc.WriteField(hpack.HeaderField{Name: "content-type", Value: "application/grpc+proto"})
	blk := hb.Bytes()
	w.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: blk[:5]})
	w.fr.WriteContinuation(1, false, blk[5:20])
	w.fr.WriteContinuation(1, true, blk[20:])
	c := NewConn()
	feed(c, w.fragments(t, 10, 10, 10))
	if s := c.streams[1]; s == nil || s.ex.Path != "/a/long/path/split/across/frames" || !s.ex.GRPC() {
		t.Fatalf("stream: %+v", s)
	}
}

// A connection joined mid-way: the encoder's table holds entries from
// before the window. Names that reference them are unknown; names are
// never wrong, whatever the sequence (random paths, some new, some
// repeated, with the decoder joining after a random number of requests).
func TestJoinedNamesUnknownNeverWrong(t *testing.T) {
	rnd := rand.New(rand.NewSource(1))
	for trial := 0; trial < 200; trial++ {
		w := newWire(false, false)
		paths := []string{}
		for i := 0; i < 1+rnd.Intn(30); i++ {
			paths = append(paths, fmt.Sprintf("/svc.S/M%d", i))
		}
		join := rnd.Intn(20)
		c := NewConn()
		known, unknown := 0, 0
		for i := 0; i < 60; i++ {
			p := paths[rnd.Intn(len(paths))]
			kv := []string{":method", "POST", ":path", p, "grpc-timeout", fmt.Sprintf("%dm", rnd.Intn(50)), "content-type", "application/grpc"}
			sid := uint32(2*i + 1)
			w.headers(t, sid, true, kv...)
			frags := w.fragments(t)
			if i < join {
				continue // before the window
			}
			feed(c, frags)
			s := c.streams[sid]
			if s == nil {
				t.Fatalf("trial %d: stream %d not opened", trial, sid)
			}
			if s.ex.NameUnknown {
				unknown++
				continue
			}
			known++
			if s.ex.Path != p {
				t.Fatalf("trial %d request %d: decoded %q, sent %q", trial, i, s.ex.Path, p)
			}
		}
		if join == 0 && unknown != 0 {
			t.Fatalf("trial %d: %d names unknown on a connection seen from its start", trial, unknown)
		}
	}
}

// A block cut short (more bytes than the kernel copies) leaves its stream
// counted, its name unknown, and the decoder afresh for the next blocks.
func TestCutBlock(t *testing.T) {
	w := newWire(false, true)
	w.headers(t, 1, true, ":method", "GET", ":path", "/first")
	frags := w.fragments(t)
	frags[0].Cut = true
	frags[0].Data = frags[0].Data[:3]
	c := NewConn()
	feed(c, frags)
	if s := c.streams[1]; s == nil || !s.ex.NameUnknown {
		t.Fatalf("stream: %+v", s)
	}
	if c.Counts.DecodeResets != 1 {
		t.Errorf("counts %+v", c.Counts)
	}
	// The encoder's table now holds /first, which the decoder lost: a
	// reference to it is unknown, a new literal is known.
	w.headers(t, 3, true, ":method", "GET", ":path", "/first")
	w.headers(t, 5, true, ":method", "GET", ":path", "/second")
	feed(c, w.fragments(t))
	if s := c.streams[3]; s == nil || !s.ex.NameUnknown {
		t.Errorf("stream 3: %+v", s)
	}
	if s := c.streams[5]; s == nil || s.ex.Path != "/second" {
		t.Errorf("stream 5: %+v", s)
	}
}

// RST_STREAM ends a stream; streams open at the end are returned by Close.
func TestResetAndClose(t *testing.T) {
	in, out := newWire(false, true), newWire(true, false)
	in.headers(t, 1, true, ":method", "GET", ":path", "/reset")
	in.headers(t, 3, true, ":method", "GET", ":path", "/open")
	c := NewConn()
	feed(c, in.fragments(t))
	out.headers(t, 1, false, ":status", "200")
	out.fr.WriteRSTStream(1, http2.ErrCodeCancel)
	ex := feed(c, out.fragments(t))
	if len(ex) != 1 || !ex[0].Reset || ex[0].ResetCode != uint32(http2.ErrCodeCancel) || ex[0].ResponseEndNs == 0 {
		t.Fatalf("reset: %+v", ex)
	}
	left := c.Close()
	if len(left) != 1 || left[0].Path != "/open" || left[0].ResponseNs != 0 {
		t.Fatalf("close: %+v", left)
	}
}
