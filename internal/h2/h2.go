// Package h2 turns the HTTP/2 frames the kernel reports for one connection
// into exchanges: it assembles header blocks, decodes them with one HPACK
// decoder per direction (golang.org/x/net/http2/hpack), and pairs each
// stream's request with its response. Pure Go and portable: it sees only
// frame records (capture/probes/http sends them), so it is tested with
// frames written by x/net's own framer.
//
// Only :method, :path, :status, content-type and grpc-status are kept from
// the header fields; every other value is dropped as it is decoded.
//
// Connections that began before the window have an HPACK dynamic table
// this decoder never saw. Decoding with an empty table is still right for
// every index it resolves: the encoder's newest entries are the ones the
// decoder inserted since it started, at the same indices. An index it
// cannot resolve ends the block (the fields before it are kept) and the
// direction's decoder starts afresh, so that insertions later in the
// failed block, which it missed, can never shift an index: names are
// unknown, never wrong.
package h2

import (
	"strconv"
	"strings"

	"golang.org/x/net/http2/hpack"
)

// Frame types and flags (RFC 9113).
const (
	TypeData         = 0x0
	TypeHeaders      = 0x1
	TypeRSTStream    = 0x3
	TypeContinuation = 0x9

	FlagEndStream  = 0x1
	FlagEndHeaders = 0x4
	FlagPadded     = 0x8
	FlagPriority   = 0x20
)

// Limits on what one connection may hold (hostile peers, long windows).
const (
	maxBlock       = 64 << 10 // bytes of one header block
	maxStreams     = 4096     // open streams per connection
	maxString      = 16 << 10 // bytes of one decoded header string
	dynamicTable   = 4096     // the initial HPACK table size (RFC 9113 SETTINGS_HEADER_TABLE_SIZE default)
	maxDynamicSize = 1 << 24  // table size updates up to this are followed
)

// Fragment is one kernel record: part of a frame's payload as it passed in
// one TCP segment (or one TLS read or write), or a frame that ends or
// resets a stream.
type Fragment struct {
	TimeNs  uint64 // when the segment passed
	FrameNs uint64 // when the frame's header began to pass
	Egress  bool   // sent by the end the records are about
	Preface bool   // this direction began with the client connection preface
	Type    uint8
	Flags   uint8
	Stream  uint32
	// FrameLen is the frame's payload length; Data holds payload bytes
	// [Offset, Offset+len(Data)).
	FrameLen uint32
	Offset   uint32
	Data     []byte
	Last     bool // the frame's last byte is in this fragment
	Cut      bool // bytes of this fragment were left out
	// DataBytes is the stream's DATA payload bytes in this direction, on
	// the frame that ends or resets it; -1 when unknown.
	DataBytes int64
	RSTCode   uint32
}

// Exchange is one stream: a request and its response.
type Exchange struct {
	Stream uint32
	// Server is true when this end answered (the request came in).
	Server      bool
	Method      string
	Path        string
	ContentType string
	Status      uint32 // :status of the final response; 0 when unknown or none
	GRPCStatus  int32  // grpc-status; -1 when none was read
	// Times of the request's first byte, the final response's first and
	// last bytes (0: not seen).
	RequestNs, ResponseNs, ResponseEndNs uint64
	RequestBytes, ResponseBytes          int64 // DATA payload bytes; -1 unknown
	Reset                                bool  // ended by RST_STREAM
	ResetCode                            uint32
	// NameUnknown: the request's :path could not be decoded (its HPACK
	// context began before the window, or its block was cut).
	NameUnknown bool
	// StatusUnknown: a response (or trailers) came whose :status or
	// grpc-status could not be decoded.
	StatusUnknown bool
}

// GRPC reports whether the exchange is a gRPC call.
func (e *Exchange) GRPC() bool { return strings.HasPrefix(e.ContentType, "application/grpc") }

// Counts are what a connection could not decode, for the drop counters.
type Counts struct {
	BlocksBroken           uint64 // header blocks cut short or out of order
	DecodeResets           uint64 // HPACK decoders started afresh (unknown index, bad block)
	StreamsOverflow        uint64 // streams dropped: more open than maxStreams
	ResponseWithoutRequest uint64 // responses to streams whose request was not seen
}

// Conn is one HTTP/2 connection seen from one end.
type Conn struct {
	dirs      [2]direction // [0] received, [1] sent
	clientDir int          // the direction requests travel: 0, 1, or -1 unknown
	streams   map[uint32]*stream
	Counts    Counts
}

type direction struct {
	dec   *hpack.Decoder
	block block
	// fields collects the decoded fields of the block being decoded.
	fields fields
}

// block is a header block being assembled from HEADERS and CONTINUATION
// fragments.
type block struct {
	active    bool
	broken    bool
	stream    uint32
	flags     uint8 // the HEADERS frame's
	startNs   uint64
	endNs     uint64
	dataBytes int64
	frameBuf  []byte // the HEADERS frame's payload (padding and priority stripped at its end)
	buf       []byte // the block so far
	expect    uint32 // offset expected next in the frame in progress
	inHeaders bool   // the frame in progress is the HEADERS frame
}

type fields struct {
	method, path, status, ctype, grpcStatus string
	has                                     uint8 // bits: hasMethod...
	first                                   bool  // a field was decoded
}

const (
	hasMethod = 1 << iota
	hasPath
	hasStatus
	hasCType
	hasGRPCStatus
)

type stream struct {
	reqDir     int
	ex         Exchange
	responded  bool // final response headers seen
	reqEnded   bool
	respEnded  bool
	nameTried  bool
	interimSet bool
}

// NewConn returns the state of a new connection.
func NewConn() *Conn {
	c := &Conn{clientDir: -1, streams: map[uint32]*stream{}}
	for i := range c.dirs {
		c.dirs[i].reset()
	}
	return c
}

func (d *direction) reset() {
	d.dec = hpack.NewDecoder(dynamicTable, d.emit)
	d.dec.SetAllowedMaxDynamicTableSize(maxDynamicSize)
	d.dec.SetMaxStringLength(maxString)
}

// emit keeps the fields bpfsnap records and drops every other value.
func (d *direction) emit(f hpack.HeaderField) {
	fs := &d.fields
	fs.first = true
	switch f.Name {
	case ":method":
		fs.method, fs.has = f.Value, fs.has|hasMethod
	case ":path":
		fs.path, fs.has = f.Value, fs.has|hasPath
	case ":status":
		fs.status, fs.has = f.Value, fs.has|hasStatus
	case "content-type":
		fs.ctype, fs.has = f.Value, fs.has|hasCType
	case "grpc-status":
		fs.grpcStatus, fs.has = f.Value, fs.has|hasGRPCStatus
	}
}

func dirOf(egress bool) int {
	if egress {
		return 1
	}
	return 0
}

// Resync tells the connection that a direction's framing was lost and
// found again: header blocks were missed, so its decoder starts afresh.
func (c *Conn) Resync(egress bool) {
	d := &c.dirs[dirOf(egress)]
	if d.block.active {
		c.Counts.BlocksBroken++
	}
	d.block = block{}
	d.reset()
	c.Counts.DecodeResets++
}

// Add takes one fragment and returns the exchanges it completed.
func (c *Conn) Add(f Fragment) []Exchange {
	di := dirOf(f.Egress)
	if f.Preface {
		c.clientDir = di
	}
	switch f.Type {
	case TypeHeaders, TypeContinuation:
		return c.addBlock(di, f)
	case TypeData:
		if f.Flags&FlagEndStream != 0 && f.Last {
			return c.endStream(di, f.Stream, f.TimeNs, f.DataBytes)
		}
	case TypeRSTStream:
		if f.Last {
			return c.reset(f)
		}
	}
	return nil
}

// addBlock appends a header block fragment; a complete block is decoded.
func (c *Conn) addBlock(di int, f Fragment) []Exchange {
	d := &c.dirs[di]
	b := &d.block
	var out []Exchange
	if f.Type == TypeHeaders && f.Offset == 0 && !(b.active && b.inHeaders && b.stream == f.Stream && b.expect == 0) {
		if b.active {
			// A HEADERS frame before the last block ended: the
			// CONTINUATION frames ending it were missed.
			c.Counts.BlocksBroken++
			b.broken = true
			out = c.decodeBlock(di)
		}
		*b = block{active: true, stream: f.Stream, flags: f.Flags, startNs: f.FrameNs, inHeaders: true,
			buf: b.buf[:0], frameBuf: b.frameBuf[:0], dataBytes: -1}
	}
	if !b.active || f.Stream != b.stream {
		// Bytes of a block whose beginning was not seen.
		if !b.active {
			c.Counts.BlocksBroken++
		}
		return out
	}
	if f.Type == TypeContinuation && f.Offset == 0 {
		if b.inHeaders {
			// The HEADERS frame ended without END_HEADERS: CONTINUATION
			// frames follow.
			b.inHeaders = false
		}
		b.expect = 0
	}
	if f.Cut || f.Offset != b.expect || len(b.buf)+len(b.frameBuf)+len(f.Data) > maxBlock {
		b.broken = true
	}
	b.expect = f.Offset + uint32(len(f.Data))
	if !b.broken {
		if b.inHeaders {
			b.frameBuf = append(b.frameBuf, f.Data...)
		} else {
			b.buf = append(b.buf, f.Data...)
		}
	}
	b.endNs = f.TimeNs
	if !f.Last {
		return out
	}
	if b.inHeaders {
		// The HEADERS frame's payload is complete: strip its padding
		// and priority fields.
		b.dataBytes = f.DataBytes
		frag, ok := headersFragment(b.frameBuf, b.flags)
		if !ok {
			b.broken = true
		}
		b.buf = append(b.buf, frag...)
		b.inHeaders = false
	}
	if f.Flags&FlagEndHeaders == 0 {
		return out // CONTINUATION frames follow
	}
	return append(out, c.decodeBlock(di)...)
}

// headersFragment is the header block fragment of a HEADERS frame's
// payload.
func headersFragment(p []byte, flags uint8) ([]byte, bool) {
	pad := 0
	if flags&FlagPadded != 0 {
		if len(p) < 1 {
			return nil, false
		}
		pad = int(p[0])
		p = p[1:]
	}
	if flags&FlagPriority != 0 {
		if len(p) < 5 {
			return nil, false
		}
		p = p[5:]
	}
	if pad > len(p) {
		return nil, false
	}
	return p[:len(p)-pad], true
}

// decodeBlock decodes the direction's complete (or broken) block and
// applies it to its stream.
func (c *Conn) decodeBlock(di int) []Exchange {
	d := &c.dirs[di]
	b := &d.block
	b.active = false
	d.fields = fields{}
	complete := false
	if b.broken {
		// What a cut block held cannot be trusted past the cut, and its
		// insertions into the table are lost: start afresh.
		d.reset()
		c.Counts.DecodeResets++
	} else if _, err := d.dec.Write(b.buf); err != nil {
		d.reset()
		c.Counts.DecodeResets++
	} else if err := d.dec.Close(); err != nil {
		d.reset()
		c.Counts.DecodeResets++
	} else {
		complete = true
	}
	return c.applyBlock(di, b, d.fields, complete)
}

// applyBlock makes a decoded block the request, the response or the
// trailers of its stream; complete says whether every field of it was
// decoded.
func (c *Conn) applyBlock(di int, b *block, fs fields, complete bool) []Exchange {
	s := c.streams[b.stream]
	isRequest := fs.has&(hasMethod|hasPath) != 0
	isResponse := fs.has&hasStatus != 0
	switch {
	case s == nil && !isResponse && (isRequest || c.clientDir != 1-di) && b.stream&1 == 1:
		// A new stream: this direction is the client's.
		if len(c.streams) >= maxStreams {
			c.Counts.StreamsOverflow++
			return nil
		}
		c.clientDir = di
		s = &stream{reqDir: di, ex: Exchange{Stream: b.stream, GRPCStatus: -1, RequestBytes: -1, ResponseBytes: -1,
			RequestNs: b.startNs, Method: fs.method, Path: fs.path, ContentType: fs.ctype, Server: di == 0}}
		s.ex.NameUnknown = fs.has&hasPath == 0
		c.streams[b.stream] = s
		if b.flags&FlagEndStream != 0 {
			s.reqEnded = true
			s.ex.RequestBytes = b.dataBytes
		}
		return nil
	case s == nil:
		if isResponse || c.clientDir == 1-di {
			c.Counts.ResponseWithoutRequest++
		}
		return nil
	case di == s.reqDir:
		// Request trailers: their END_STREAM ends the request.
		if b.flags&FlagEndStream != 0 {
			s.reqEnded = true
			s.ex.RequestBytes = b.dataBytes
		}
		return nil
	}
	// From the server.
	if !s.responded {
		if st, err := strconv.Atoi(fs.status); err == nil && st >= 100 && st < 200 {
			return nil // interim (100 Continue, 103 Early Hints): the final response follows
		}
		s.responded = true
		s.ex.ResponseNs = b.startNs
		if fs.has&hasStatus == 0 {
			s.ex.StatusUnknown = true
		} else if st, err := strconv.ParseUint(fs.status, 10, 16); err == nil {
			s.ex.Status = uint32(st)
		}
		if fs.has&hasCType != 0 && s.ex.ContentType == "" {
			s.ex.ContentType = fs.ctype
		}
		if !complete && b.flags&FlagEndStream != 0 && fs.has&hasGRPCStatus == 0 {
			// A response in one block ("trailers-only" in gRPC) whose
			// grpc-status, if it had one, could not be read.
			s.ex.StatusUnknown = true
		}
	} else if fs.has&hasGRPCStatus == 0 && !complete {
		s.ex.StatusUnknown = true // trailers whose grpc-status could not be read
	}
	if fs.has&hasGRPCStatus != 0 {
		if v, err := strconv.ParseInt(fs.grpcStatus, 10, 32); err == nil {
			s.ex.GRPCStatus = int32(v)
		}
	}
	if b.flags&FlagEndStream != 0 {
		return c.endStream(di, b.stream, b.endNs, b.dataBytes)
	}
	return nil
}

// endStream handles END_STREAM from direction di.
func (c *Conn) endStream(di int, id uint32, ns uint64, bytes int64) []Exchange {
	s := c.streams[id]
	if s == nil {
		return nil
	}
	if di == s.reqDir {
		s.reqEnded = true
		s.ex.RequestBytes = bytes
		return nil
	}
	s.respEnded = true
	s.ex.ResponseEndNs = ns
	s.ex.ResponseBytes = bytes
	if s.ex.ResponseNs == 0 {
		// Ended without response headers (should not happen; a reset
		// stream is handled by reset).
		s.ex.ResponseNs = ns
		s.ex.StatusUnknown = true
	}
	delete(c.streams, id)
	return []Exchange{s.ex}
}

// reset ends a stream by RST_STREAM from either side.
func (c *Conn) reset(f Fragment) []Exchange {
	s := c.streams[f.Stream]
	if s == nil {
		return nil
	}
	delete(c.streams, f.Stream)
	s.ex.Reset, s.ex.ResetCode = true, f.RSTCode
	if s.ex.ResponseNs != 0 {
		// A response had begun: its end is the reset.
		s.ex.ResponseEndNs = f.TimeNs
		if dirOf(f.Egress) != s.reqDir {
			s.ex.ResponseBytes = f.DataBytes
		}
	}
	return []Exchange{s.ex}
}

// Close returns the streams still open at the end of the window: requests
// without response (ResponseNs 0), or responses whose end was not seen
// (ResponseEndNs 0).
func (c *Conn) Close() []Exchange {
	var out []Exchange
	for id, s := range c.streams {
		out = append(out, s.ex)
		delete(c.streams, id)
	}
	return out
}

// Open is the number of streams in progress.
func (c *Conn) Open() int { return len(c.streams) }
