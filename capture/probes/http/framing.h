// HTTP framing shared by the two sources of bytes the http probe set reads:
// TCP segments seen by the cgroup_skb programs (the wire), and plaintext
// handed to a TLS library, seen by uprobes. Everything here works on the
// state of one connection (struct http_sock) and the per-CPU scratch; the
// functions that read the bytes themselves are in walk.h, which http.bpf.c
// includes once per source (bpf_skb_load_bytes or bpf_probe_read_user).
#pragma once

#include "common.h"

#define LINE_MAX 256        // request line bytes kept (user space keeps 200 of the path)
#define HEAD_MAX 2048       // head bytes scanned at a message start (a power of two)
#define MAX_MESSAGES 32     // messages framed in one segment
#define MAX_CHUNK_STEPS 1024 // bytes of chunk-size lines read (and chunks skipped) in one segment
#define H2_MAX_FRAMES 256   // HTTP/2 frames walked in one segment
#define H2_FRAG_MAX 4096    // header block bytes copied per record (a power of two)
#define H2_STREAMS 16       // streams whose DATA bytes a direction sums at once
#define H2_CHAIN_MAX 16     // frame headers checked to recognise HTTP/2 mid-connection
#define H2_PREFACE_LEN 24   // "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

enum http_drop {
	HTTP_DROP_RINGBUF = 0,
	HTTP_DROP_NO_STORAGE = 1,      // no memory for a socket's state: the socket is not followed
	HTTP_DROP_FRAMING_GAP = 2,     // a segment began past where the next message was due
	HTTP_DROP_HEAD_TOO_LONG = 3,   // a head longer than HEAD_MAX
	HTTP_DROP_HEAD_SPLIT = 4,      // a head continued in the next segment inside a framing header
	HTTP_DROP_CHUNKS_OVERFLOW = 5, // more chunks in one segment than the walk allows
	HTTP_DROP_MESSAGES_OVERFLOW = 6, // more messages in one segment than the walk allows
	HTTP_DROP_UNEXPECTED = 7,      // where a message was due, bytes that start none
	HTTP_DROP_BAD_CHUNK = 8,       // a malformed chunk-size line
	HTTP_DROP_JOINED = 9,          // a socket first seen in the middle of a message (noted)
	HTTP_DROP_RETRANSMITTED = 10,  // segments seen again (TCP retransmission), framed once (noted)
	HTTP_DROP_UPGRADED = 11,       // connections that left HTTP/1.x (101, CONNECT): not followed (noted)
	HTTP_DROP_H2_BAD_FRAME = 12,   // an HTTP/2 frame header that cannot be one: the direction waits for frames at a segment start
	HTTP_DROP_H2_FRAMES_OVERFLOW = 13, // more HTTP/2 frames in one segment than the walk allows
	HTTP_DROP_H2_BLOCK_CUT = 14,   // a header block fragment longer than the copy: HPACK state of the direction lost
	HTTP_DROP_H2_STREAMS_FULL = 15, // DATA of more concurrent streams than a direction sums: their sizes unknown
	HTTP_DROP_H2_JOINED = 16,      // HTTP/2 connections recognised mid-connection by their frames (noted)
	HTTP_DROP_TLS_STATE_FULL = 17, // no room for a TLS connection's state: its plaintext is not framed
	HTTP_DROP_TLS_READ_FAULT = 18, // plaintext that could not be read from the application's buffer
	HTTP_DROP_UPGRADED_H2 = 19,    // h2c upgrades (101) followed as HTTP/2 (noted)
	HTTP_DROP_MAX = 20,
};
// Kept in BTF for bpf2go's -type: the Go constants come from here.
const enum http_drop *unused_http_drop __attribute__((unused));

DECLARE_DROPS(HTTP_DROP_MAX);

// Every ring record starts with a struct rec_head whose first byte is the
// kind.
enum http_kind {
	HTTP_PAIR = 1,     // http_event: a request with its response
	HTTP_REQUEST = 2,  // http_event: a request on its own (pipelined, released or held at the end)
	HTTP_RESPONSE = 3, // http_event: a response on its own (its socket pipelines)
	HTTP_H2_FRAME = 4, // h2_event: an HTTP/2 frame (header block bytes, end of stream, reset)
	HTTP_TLS_SEEN = 5, // rec_head: a socket carrying TLS records, sent from its owner's context
	HTTP_TLS_BIND = 6, // rec_head: a TLS connection (conn_key) and the socket it writes to
	HTTP_H2_NAMES = 7, // go_h2_event: header fields read in a Go program's HTTP/2 code
	HTTP_H2_RESYNC = 8, // h2_event: a direction's HTTP/2 framing was lost and found again (HPACK blocks missed)
	HTTP_TLS_CLOSE = 9, // rec_head: a TLS connection was freed by its library (its object may be reused)
	HTTP_SOCK_CLOSE = 10, // rec_head: a socket whose messages went to user space was released
};
const enum http_kind *unused_http_kind __attribute__((unused));

enum http_flag {
	HTTP_F_REQ_EGRESS = 1,  // the request was sent by this socket: a client
	HTTP_F_RELEASED = 2,    // sent when the socket was released; ctx is the closing task
	HTTP_F_CTX = 4,         // ctx_* hold the task an egress message of the record was sent from
	HTTP_F_END_UNKNOWN = 8, // the response's last byte was not seen (window ended, framing lost)
	HTTP_F_TLS = 16,        // read from a TLS library's plaintext; conn_key names the connection
	HTTP_F_EGRESS = 32,     // h2_event: the frame was sent by this end
	HTTP_F_BOUND = 64,      // TLS: cookie and addresses are those of the connection's socket
	HTTP_F_H2_PREFACE = 128, // h2_event: the connection's client sent its preface in this direction
};
const enum http_flag *unused_http_flag __attribute__((unused));

// A direction's framing state.
enum frame_mode {
	MODE_NEW = 0,  // nothing seen yet in this direction
	MODE_IDLE,     // next_seq is where the next message starts
	MODE_HEAD,     // inside a head that continues in the next segment
	MODE_BODY,     // inside a Content-Length body ending at body_end
	MODE_CHUNKED,  // inside a chunked body (chunk_state)
	MODE_CLOSE,    // inside a body that ends with the connection
	MODE_LOST,     // framing unknown: waiting for a segment that starts a message
	MODE_OFF,      // not HTTP any more (upgraded to another protocol, tunnel)
	MODE_H2,       // HTTP/2: the next frame header is at body_end (h2_* describe the frame before it)
	MODE_H2_SYNC,  // HTTP/2: the next segment starts with a frame header
	MODE_H2_LOST,  // HTTP/2 framing unknown: waiting for a segment that starts with frames
	MODE_TLS,      // the wire carries TLS records: read by the TLS probes, if any covers it
};

enum chunk_state {
	CH_SIZE = 0,     // reading the hex size
	CH_EXT,          // in a chunk extension, up to the LF
	CH_LF,           // after the size line's CR
	CH_DATA,         // in chunk data (+ CRLF) ending at body_end
	CH_TRAILER_LINE, // at the start of a trailer line (or the final CRLF)
	CH_TRAILER,      // inside a trailer line
	CH_END_LF,       // after the final CR
};

// What carries over from one segment to the next in MODE_HEAD.
enum head_carry {
	CARRY_MID_LINE = 0, // the segment ended inside a header line
	CARRY_LINE_START,   // the segment ended right after a LF
	CARRY_CR,           // the segment ended after a LF and a CR
};

// HTTP/2 frame types and flags (RFC 9113).
enum {
	H2_DATA = 0,
	H2_HEADERS = 1,
	H2_PRIORITY = 2,
	H2_RST_STREAM = 3,
	H2_SETTINGS = 4,
	H2_PUSH_PROMISE = 5,
	H2_PING = 6,
	H2_GOAWAY = 7,
	H2_WINDOW_UPDATE = 8,
	H2_CONTINUATION = 9,
	H2_TYPE_MAX = 0x10, // higher types are taken for framing noise (extensions this far are unknown)
};
#define H2_END_STREAM 0x1
#define H2_END_HEADERS 0x4
#define H2_PADDED 0x8
#define H2_PRIORITY_FLAG 0x20

// DATA bytes of one stream, summed until its end.
struct h2_stream {
	__u32 id;
	__u32 pad;
	__u64 bytes;
};

struct http_dir {
	__u64 msg_ns;     // first byte of the message in progress
	__u64 body;       // body bytes declared (Content-Length) or walked (chunked)
	__u64 chunk_size; // CH_SIZE: the size read so far
	__u64 ctx_cgroup; // the task that sent the message's head (egress)
	__u64 last_ns;    // MODE_CLOSE: the last segment of the body
	__u64 written_ns; // the last segment of the message its writer sent itself (see http_event)
	__u32 writer_tid; // the thread that sent the message's head
	__u32 pad_w;
	__s64 head_clen;  // MODE_HEAD: Content-Length found so far (-1: none)
	__u32 ctx_pid, ctx_tid;
	__u32 next_seq;   // sequence number of the first byte not yet framed
	__u32 body_end;   // MODE_BODY: end of the body; CH_DATA: start of the next size line; MODE_H2: next frame header
	__u16 status;     // the response in progress
	__u8 mode;
	__u8 chunk_state;
	__u8 is_response; // the message in progress is a final response
	__u8 carry;       // MODE_HEAD: enum head_carry
	__u8 ctx;         // ctx_* are set
	__u8 head_chunked; // MODE_HEAD: Transfer-Encoding chunked found so far
	__u8 no_body;     // MODE_HEAD: the message has no body whatever its headers say
	// HTTP/2: the frame whose payload ends at body_end.
	__u8 h2_type;
	__u8 h2_flags;
	__u8 h2_in_frame; // the frame's end has not been handled yet
	__u8 h2_hn;       // bytes of the next frame header carried in h2_hdr
	__u8 h2_preface;  // this direction sent the connection preface (the client's)
	__u8 stash_n;     // bytes in stash
	__u8 pad;
	__u32 h2_stream;
	__u32 h2_len;
	__u64 h2_frame_ns; // when the frame's header began to pass
	__u8 h2_hdr[16] __attribute__((aligned(8)));
	// The first bytes of a message, when fewer than 16 came before the
	// segment (or TLS read) ended: too few to tell what they start. Go's
	// HTTP server reads one byte ahead on its TLS connections.
	__u64 stash_ns;
	char stash[16] __attribute__((aligned(8)));
	struct h2_stream streams[H2_STREAMS];
};

// The connection as the segment's headers give it.
struct conn_head {
	__u8 saddr[16] __attribute__((aligned(8)));
	__u8 daddr[16] __attribute__((aligned(8)));
	__u16 sport, dport;
	__u8 family;
	__u8 pad[3];
};

// The request waiting for its response.
struct http_req {
	__u64 time_ns;
	__u64 body; // Content-Length, or -1
	__u64 sock_cgroup;
	__u64 ctx_cgroup;
	__u32 ctx_pid, ctx_tid;
	__u16 line_len;
	__u8 egress;
	__u8 ctx;
	__u8 pad[4];
	struct conn_head conn; // as this socket sees it: source = local
	char line[LINE_MAX] __attribute__((aligned(8)));
};

// Per connection: in socket-local storage for the wire (freed with the
// socket, no table to fill up, found from the socket without a hash
// lookup), in the tls_conns hash for a TLS library's connection object. At
// the end of the capture user space reads the sockets' state through their
// file descriptors (the map cannot be iterated otherwise on kernels that
// refuse iterator programs, as this project's does), for requests still
// waiting; tls_conns it iterates.
struct http_sock {
	struct http_dir dir[2]; // [0] received, [1] sent
	struct http_req req;
	__u32 head_fifo; // bit i: the i-th outstanding request is a HEAD
	__u8 head_n;     // outstanding requests in head_fifo
	__u8 held;       // req is valid
	__u8 pipelined;  // a second request came before the first was answered: every message goes to user space
	__u8 mark;       // enum sock_mark
	// A socket carrying TLS: whether a TLS probe's connection writes to it
	// (bound), and whether it was reported (tls_seen). A TLS connection:
	// the socket it writes to, once an egress in its write saw it.
	__u8 bound;
	__u8 tls_seen;
	__u8 pad[2];
	__u32 tls_tgid;  // a socket: the TLS connection bound to it
	__u64 tls_ptr;
	__u64 b_cookie;
	__u64 b_cgroup;
	__u64 rx_ns;     // a TLS connection: when its socket last received a segment
	// A TLS connection: plaintext bytes written to the library, and bytes
	// its socket sent since, until all have left (tx_sent >= tx_plain,
	// ciphertext being longer, and the socket's queue empty).
	__u64 tx_plain;
	__u64 tx_sent;
	__u64 drain_ns;  // a TLS connection: when its socket last sent all it was given (see send_response)
	__u64 tx_first_ns; // a TLS connection: its socket's first segment out since the write in progress began
	__u8 tx_drained;
	__u8 pad2[7];
	struct conn_head b_conn;
	__u64 sk_cgroup; // a socket: its cgroup (0 until its first segment with state)
};

// The head of every ring record.
struct rec_head {
	__u8 kind;    // enum http_kind
	__u8 flags;   // enum http_flag
	__u8 family;  // 4 or 6; 0 when the addresses are unknown
	__u8 pad;
	__u16 sport, dport; // as this end sees them: source = local
	__u32 ctx_pid, ctx_tid;
	__u32 pad2;
	__u64 cookie;      // socket cookie: the connection, per socket (0: unknown)
	__u64 sock_cgroup; // cgroup of the socket's owner
	__u64 ctx_cgroup;  // see HTTP_F_CTX
	__u64 conn_key;    // TLS: the library's connection object (SSL*, *tls.Conn); 0 on the wire
	__u8 saddr[16];    // local
	__u8 daddr[16];    // remote
};

// An HTTP/1.x record. Only the first line_len bytes of line are sent.
struct http_event {
	struct rec_head h;
	__u64 req_ns;      // the request's first byte (PAIR, REQUEST)
	__u64 resp_ns;     // the response's first byte (PAIR, RESPONSE)
	__u64 resp_end_ns; // the response's last byte (PAIR, RESPONSE)
	// resp_written_ns is when the last segment of the response left in
	// the context of the thread that sent its head (TLS: the writer's last
	// write of it): about when a server finished writing it. A segment
	// held back (Nagle, corking) leaves later, from the softirq of the
	// peer's ACK on top of whatever task runs, and does not count; 0 when
	// none was seen so.
	__u64 resp_written_ns;
	__s64 req_body;    // request body bytes declared, or -1
	__s64 resp_body;   // response body bytes (declared or walked), or -1
	__u16 status;
	__u16 line_len;
	__u8 pad[4];
	char line[LINE_MAX];
};

#define HTTP_EVENT_FIXED __builtin_offsetof(struct http_event, line)

// An HTTP/2 frame. HEADERS and CONTINUATION frames carry the part of their
// payload (a header block fragment) that passed in one segment: bytes
// [frag_off, frag_off+n) of the payload; one record per segment the
// payload spans. DATA frames are sent only when they end a stream (with
// the stream's DATA bytes), RST_STREAM always.
struct h2_event {
	struct rec_head h;
	__u64 time_ns;    // when the segment passed
	__u64 frame_ns;   // when the frame's header began to pass
	__s64 data_bytes; // END_STREAM (DATA, HEADERS), RST_STREAM: the stream's DATA bytes in this direction; -1 unknown
	__u32 stream;
	__u32 frame_len;  // payload length
	__u32 frag_off;   // offset of data[0] in the payload
	__u32 rst_code;   // RST_STREAM's error code
	__u16 n;          // bytes in data
	__u8 ftype, fflags;
	__u8 last;        // the frame's last byte passed in this segment
	__u8 cut;         // payload bytes of this segment were left out (more than H2_FRAG_MAX)
	__u8 pad[2];
	char data[H2_FRAG_MAX];
};

#define H2_EVENT_FIXED __builtin_offsetof(struct h2_event, data)

// Header fields a Go program's HTTP/2 code read (incoming) or encoded
// (outgoing), by uprobe: the names of streams on connections whose HPACK
// state began before the window. Only these fields are kept.
struct go_h2_event {
	struct rec_head h; // kind, ctx_pid, ctx_tid
	__u64 time_ns;
	__u32 stream;
	__s32 grpc_status; // -1: none
	__u16 status;      // :status, 0: none
	__u16 method_len, path_len, ctype_len;
	__u8 fn;           // enum go_h2_fn
	__u8 end_stream;   // outgoing: the block ends the stream
	__u8 pad[6];
	char method[16];
	char ctype[32];
	char path[LINE_MAX];
};

const struct http_event *unused_http_event __attribute__((unused));
const struct h2_event *unused_h2_event __attribute__((unused));
const struct go_h2_event *unused_go_h2_event __attribute__((unused));
const struct http_sock *unused_http_sock __attribute__((unused));

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 8 * 1024 * 1024);
} http_events SEC(".maps");

// A TLS library's connection: the process and its connection object.
struct tls_key {
	__u32 tgid;
	__u32 pad;
	__u64 ptr;
};

// The last response of each TLS connection, while its bytes wait in the
// socket (Nagle holds a write until the peer's ACK; Go's Write is seen at
// its entry): sent when the socket's queue drains (tls_wire), with that
// time as its end.
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 16384);
	__type(key, struct tls_key);
	__type(value, struct http_event);
} tls_deferred SEC(".maps");

enum sock_mark {
	SOCK_UNKNOWN = 0,
	SOCK_TARGET = 1,
	SOCK_OTHER = 2,
};

// A head being scanned: 8 bytes at a time for line feeds; only the lines
// that start a blank line, "content-length:" or "transfer-encoding:" are
// looked at further, and the two values are read once the end is found.
struct head_scan {
	__u32 n;         // bytes in scratch.head
	__u32 end;       // head length, 0 while not found
	__u32 first_lf;  // offset of the first LF + 1 (0: none)
	__u32 clen_at;   // Content-Length value [clen_at, clen_end)
	__u32 clen_end;
	__u32 te_at;     // Transfer-Encoding value [te_at, te_end)
	__u32 te_end;
	__u32 pos;       // next byte to look at
	__u8 in_line;    // the line being scanned is LINE_CLEN or LINE_TE
	__u8 carry;      // enum head_carry at the end of the bytes
	__u8 pad[2];
};

// The bytes being framed (a TCP segment's payload, or a TLS library's
// plaintext) and where the walk is in them.
struct walk_state {
	__u64 now;
	__u64 cookie;
	__u64 sock_cgroup; // cgroup of the socket's owner
	__u64 conn_key;    // TLS: the library's connection object
	__u64 ubuf;        // TLS: the plaintext's address in the application
	__u64 wrote_ns;    // egress: when the writer was done with these bytes (a TLS library's write returned)
	__u32 base;   // skb offset of payload byte 0
	__u32 len;    // payload bytes in the segment
	__u32 seq;    // sequence number of payload byte 0 (TLS: bytes before it in this direction)
	__u32 pos;    // payload offset being framed
	__u32 cb_pos; // payload offset of cb[0]
	__u8 cb_n;    // bytes in cb
	__u8 egress;
	__u8 done;    // 1: the segment is consumed; 2: a chunked body ended; 3: a chunk line was malformed
	__u8 proc;    // the program runs in the task that reads or writes the bytes (TLS)
	__u8 flags;   // HTTP_F_TLS, HTTP_F_BOUND for the records
	__u8 chain_ok; // h2_chain's answer
	__u8 owner;    // egress bytes sent by a task of the socket's owner cgroup (TLS: the writer itself)
	__u8 pad;
	__u32 chain_pos; // h2_chain: the next frame header
	__u32 chain_n;   // h2_chain: complete headers seen
	struct conn_head conn; // as this end sees it: source = local
	char cb[16];  // bytes of a chunked body being read
	__u8 hb[32] __attribute__((aligned(8))); // an HTTP/2 frame header being assembled, or the preface
};

// A Content-Length value being read.
struct digits {
	__u32 at, end;
	__s64 v; // -1 until a digit
};

// scratch holds, per CPU, everything the programs build or track while
// framing: the head and its scan, the walk, the records. Keeping it in a
// map rather than on the 512-byte stack also keeps the verifier fast: it
// does not track the contents of map values, so the loops' states converge
// at once instead of once per value. The head buffer has room for 8-byte
// reads past its end. There are three per CPU (SCRATCH_*): a softirq's
// ingress program may interrupt an egress or uprobe program on its CPU,
// and each must find its own.
struct scratch {
	char head[HEAD_MAX + 16] __attribute__((aligned(8)));
	struct head_scan hs;
	struct walk_state ws;
	struct digits dg;
	struct http_event ev;
	struct h2_event h2;
};

enum { SCRATCH_INGRESS = 0, SCRATCH_EGRESS = 1, SCRATCH_UPROBE = 2, SCRATCH_N = 3 };

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, SCRATCH_N);
	__type(key, __u32);
	__type(value, struct scratch);
} scratch SEC(".maps");

// A direction's state: the one the bytes travel.
#define DIR(st, sc) (&(st)->dir[(sc)->ws.egress & 1])

// counted counts reason for connections this capture is about.
static __always_inline void counted(struct http_sock *st, __u32 reason)
{
	if (st->mark != SOCK_OTHER)
		count_drop(reason);
}

// classify recognises the first four bytes of an HTTP/1.x message.
static __always_inline __u8 classify(const char *p)
{
	if (p[0] == 'H' && p[1] == 'T' && p[2] == 'T' && p[3] == 'P')
		return HTTP_RESPONSE;
	if ((p[0] == 'G' && p[1] == 'E' && p[2] == 'T' && p[3] == ' ') ||
	    (p[0] == 'P' && p[1] == 'O' && p[2] == 'S' && p[3] == 'T') ||
	    (p[0] == 'P' && p[1] == 'U' && p[2] == 'T' && p[3] == ' ') ||
	    (p[0] == 'H' && p[1] == 'E' && p[2] == 'A' && p[3] == 'D') ||
	    (p[0] == 'D' && p[1] == 'E' && p[2] == 'L' && p[3] == 'E') ||
	    (p[0] == 'P' && p[1] == 'A' && p[2] == 'T' && p[3] == 'C') ||
	    (p[0] == 'O' && p[1] == 'P' && p[2] == 'T' && p[3] == 'I') ||
	    (p[0] == 'C' && p[1] == 'O' && p[2] == 'N' && p[3] == 'N') ||
	    (p[0] == 'T' && p[1] == 'R' && p[2] == 'A' && p[3] == 'C'))
		return HTTP_REQUEST;
	return 0;
}

// is_preface recognises the HTTP/2 client connection preface,
// "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", in 24 bytes at p (8-byte aligned).
static __always_inline int is_preface(const __u64 *w)
{
	return w[0] == 0x5448202a20495250ULL && w[1] == 0x0a0d302e322f5054ULL && w[2] == 0x0a0d0a0d4d530a0dULL;
}

// is_tls_record recognises a TLS record header (handshake, alert, change
// cipher spec or application data, TLS 1.0-1.3 versions on the wire).
static __always_inline int is_tls_record(const __u8 *p)
{
	return p[0] >= 0x14 && p[0] <= 0x17 && p[1] == 0x03 && p[2] <= 0x04;
}

// h2_header_ok tells whether 9 bytes can be an HTTP/2 frame header, for
// recognising a connection mid-stream: strict rules of RFC 9113 on the
// type's stream, length and flags, and a length within the default
// maximum frame size.
static __always_inline int h2_header_ok(const __u8 *b, __u32 *len)
{
	__u32 l = ((__u32)b[0] << 16) | ((__u32)b[1] << 8) | b[2];
	__u8 type = b[3], flags = b[4];
	__u32 sid = ((__u32)b[5] << 24) | ((__u32)b[6] << 16) | ((__u32)b[7] << 8) | b[8];
	*len = l;
	if (l > 16384 || (sid & 0x80000000))
		return 0;
	switch (type) {
	case H2_DATA:
		return sid != 0 && (flags & ~(H2_END_STREAM | H2_PADDED)) == 0;
	case H2_HEADERS:
		return sid != 0 && (flags & ~(H2_END_STREAM | H2_END_HEADERS | H2_PADDED | H2_PRIORITY_FLAG)) == 0;
	case H2_PRIORITY:
		return sid != 0 && l == 5 && flags == 0;
	case H2_RST_STREAM:
		return sid != 0 && l == 4 && flags == 0;
	case H2_SETTINGS:
		return sid == 0 && (flags == 0 ? l % 6 == 0 : flags == 1 && l == 0);
	case H2_PING:
		return sid == 0 && l == 8 && (flags & ~1) == 0;
	case H2_GOAWAY:
		return sid == 0 && l >= 8 && flags == 0;
	case H2_WINDOW_UPDATE:
		return l == 4 && flags == 0;
	case H2_CONTINUATION:
		return sid != 0 && (flags & ~H2_END_HEADERS) == 0;
	}
	return 0;
}

// ---- Head scanning ----------------------------------------------------

enum { LINE_OTHER = 0, LINE_CLEN, LINE_TE };

#define LOWER8 0x2020202020202020ULL
#define LOW7 0x00ffffffffffffffULL

static __always_inline __u64 load8(const char *buf, __u32 off)
{
	return *(const __u64 *)(buf + (off & (HEAD_MAX - 1)));
}

// "content-" "length:", "transfer" "-encodin" "g:", "chunked", as
// little-endian words.
#define W_CONTENT_ 0x2d746e65746e6f63ULL
#define W_LENGTH_ 0x003a6874676e656cULL // 7 bytes
#define W_TRANSFER 0x726566736e617274ULL
#define W_ENCODIN 0x6e69646f636e652dULL
#define W_G_ 0x3a67U
#define W_CHUNKED 0x0064656b6e756863ULL // 7 bytes

// line_at looks at the line starting at s (just after a LF, which ends the
// line before it); it returns 1 when the head ends there.
static __always_inline int line_at(struct scratch *sc, __u32 s)
{
	struct head_scan *hs = &sc->hs;
	const char *buf = sc->head;
	__u32 e = s > 0 ? s - 1 : 0; // the LF
	if (e > 0 && buf[(e - 1) & (HEAD_MAX - 1)] == '\r')
		e--;
	if (hs->in_line == LINE_CLEN)
		hs->clen_end = e;
	else if (hs->in_line == LINE_TE)
		hs->te_end = e;
	hs->in_line = LINE_OTHER;
	if (s >= hs->n) {
		hs->carry = CARRY_LINE_START;
		return 0;
	}
	char c = buf[s & (HEAD_MAX - 1)];
	if (c == '\n') {
		hs->end = s + 1;
		return 1;
	}
	if (c == '\r') {
		if (s + 1 >= hs->n) {
			hs->carry = CARRY_CR;
			return 0;
		}
		if (buf[(s + 1) & (HEAD_MAX - 1)] == '\n') {
			hs->end = s + 2;
			return 1;
		}
		return 0;
	}
	c |= 0x20;
	if (c == 'c') {
		if (s + 16 > hs->n) {
			hs->in_line = LINE_CLEN; // cannot tell: treated as cut short
			return 0;
		}
		if ((load8(buf, s) | LOWER8) == W_CONTENT_ &&
		    ((load8(buf, s + 8) | LOWER8) & LOW7) == W_LENGTH_) {
			hs->clen_at = s + 15;
			hs->clen_end = 0;
			hs->in_line = LINE_CLEN;
		}
		return 0;
	}
	if (c == 't') {
		if (s + 18 > hs->n) {
			hs->in_line = LINE_TE;
			return 0;
		}
		if ((load8(buf, s) | LOWER8) == W_TRANSFER && (load8(buf, s + 8) | LOWER8) == W_ENCODIN &&
		    ((__u16)load8(buf, s + 16) | 0x2020) == W_G_) {
			hs->te_at = s + 18;
			hs->te_end = 0;
			hs->in_line = LINE_TE;
		}
	}
	return 0;
}

// scan_step finds the next line feed from hs->pos: one 8-byte word when
// it holds none, else the first one, whose next line it looks at.
static long scan_step(__u32 i, void *ctx)
{
	struct scratch *sc = *(struct scratch **)ctx;
	struct head_scan *hs = &sc->hs;
	__u32 off = hs->pos;
	if (off >= hs->n || off > HEAD_MAX)
		return 1;
	__u64 v = load8(sc->head, off);
	__u32 left = hs->n - off;
	if (left < 8)
		v &= (1ULL << (left * 8)) - 1;
	// A byte of x is zero where v holds a LF; t has 0x80 exactly there.
	__u64 x = v ^ 0x0a0a0a0a0a0a0a0aULL;
	__u64 t = ~(((x & 0x7f7f7f7f7f7f7f7fULL) + 0x7f7f7f7f7f7f7f7fULL) | x | 0x7f7f7f7f7f7f7f7fULL);
	if (!t) {
		hs->pos = off + 8;
		return 0;
	}
	// The lowest 0x80 is at byte k: (t & -t) >> 7 is 1 << 8k, and the
	// product with a word whose byte j holds 7-j has k in its top byte.
	__u64 lowest = (t & -t) >> 7;
	__u32 k = (lowest * 0x0001020304050607ULL) >> 56;
	__u32 lf = off + (k & 7);
	hs->pos = lf + 1;
	hs->carry = CARRY_MID_LINE;
	if (!hs->first_lf)
		hs->first_lf = lf + 1;
	return line_at(sc, lf + 1);
}

// scan_head finds the end of the head in sc->head (sc->hs.n bytes),
// starting after a carry from the last segment.
__noinline int scan_head(struct scratch *sc, __u8 carry)
{
	if (!sc)
		return 0;
	struct head_scan *hs = &sc->hs;
	hs->end = 0;
	hs->pos = 0;
	hs->carry = CARRY_MID_LINE;
	if (carry == CARRY_CR) {
		if (hs->n > 0 && sc->head[0] == '\n') {
			hs->end = 1;
			return 0;
		}
	} else if (carry == CARRY_LINE_START) {
		if (line_at(sc, 0))
			return 0;
	}
	bpf_loop(HEAD_MAX + HEAD_MAX / 8, scan_step, &sc, 0);
	return 0;
}

// digit_step reads one character of a Content-Length value.
static long digit_step(__u32 i, void *ctx)
{
	struct scratch *sc = *(struct scratch **)ctx;
	struct digits *d = &sc->dg;
	__u32 p = d->at + i;
	if (p >= d->end)
		return 1;
	char c = sc->head[p & (HEAD_MAX - 1)];
	if (c == ' ' || c == '\t') {
		if (d->v >= 0)
			return 1;
		return 0;
	}
	if (c < '0' || c > '9' || d->v > (1LL << 50)) {
		d->v = -1;
		return 1;
	}
	d->v = (d->v < 0 ? 0 : d->v * 10) + (c - '0');
	return 0;
}

// head_framing reads what frames the body: *clen is Content-Length (kept
// when the head has none) and *chunked whether the last transfer coding
// is chunked; it returns -1 when a value was cut short by the end of the
// bytes.
static __always_inline int head_framing(struct scratch *sc, __s64 *clen, __u8 *chunked)
{
	struct head_scan *hs = &sc->hs;
	if (hs->in_line != LINE_OTHER)
		return -1;
	if (hs->clen_at && hs->clen_end > hs->clen_at) {
		sc->dg.at = hs->clen_at;
		sc->dg.end = hs->clen_end;
		sc->dg.v = -1;
		bpf_loop(24, digit_step, &sc, 0);
		*clen = sc->dg.v;
	}
	if (hs->te_at && hs->te_end >= hs->te_at + 7) {
		__u32 p = hs->te_end - 7;
		*chunked = ((load8(sc->head, p) | LOWER8) & LOW7) == W_CHUNKED;
	} else if (hs->te_at) {
		*chunked = 0;
	}
	return 0;
}

// ---- Records ------------------------------------------------------------

static __always_inline void copy_conn(struct rec_head *h, const struct conn_head *c)
{
	h->family = c->family;
	h->sport = c->sport;
	h->dport = c->dport;
	__builtin_memcpy(h->saddr, c->saddr, 16);
	__builtin_memcpy(h->daddr, c->daddr, 16);
}

// new_head starts a record of the walk's connection.
static __always_inline void new_head(struct rec_head *h, struct walk_state *ws, __u8 kind)
{
	__builtin_memset(h, 0, sizeof(*h));
	copy_conn(h, &ws->conn);
	h->kind = kind;
	h->flags = ws->flags;
	h->cookie = ws->cookie;
	h->sock_cgroup = ws->sock_cgroup;
	h->conn_key = ws->conn_key;
}

static __always_inline void set_ctx(__u64 *cgroup, __u32 *pid, __u32 *tid, __u8 *valid)
{
	__u64 id = bpf_get_current_pid_tgid();
	*cgroup = bpf_get_current_cgroup_id();
	*pid = id >> 32;
	*tid = (__u32)id;
	*valid = 1;
}

// head_ctx puts the current task in a record's head.
static __always_inline void head_ctx(struct rec_head *h)
{
	__u8 valid;
	set_ctx(&h->ctx_cgroup, &h->ctx_pid, &h->ctx_tid, &valid);
	h->flags |= HTTP_F_CTX;
}

static __always_inline void fill_req(struct http_event *e, const struct http_req *r)
{
	copy_conn(&e->h, &r->conn);
	e->h.sock_cgroup = r->sock_cgroup;
	e->req_ns = r->time_ns;
	e->req_body = r->body;
	e->line_len = r->line_len;
	if (r->egress)
		e->h.flags |= HTTP_F_REQ_EGRESS;
	if (r->ctx) {
		e->h.flags |= HTTP_F_CTX;
		e->h.ctx_cgroup = r->ctx_cgroup;
		e->h.ctx_pid = r->ctx_pid;
		e->h.ctx_tid = r->ctx_tid;
	}
	__builtin_memcpy(e->line, r->line, LINE_MAX);
}

static __always_inline void fill_resp(struct http_event *e, const struct http_dir *d, __u64 end_ns)
{
	e->resp_ns = d->msg_ns;
	e->resp_end_ns = end_ns;
	e->resp_written_ns = d->written_ns;
	e->resp_body = d->body;
	e->status = d->status;
	if (!end_ns)
		e->h.flags |= HTTP_F_END_UNKNOWN;
	if (d->ctx) {
		// The response's sender wins: for a server it is the thread
		// that wrote the response.
		e->h.flags |= HTTP_F_CTX;
		e->h.ctx_cgroup = d->ctx_cgroup;
		e->h.ctx_pid = d->ctx_pid;
		e->h.ctx_tid = d->ctx_tid;
	}
}

// new_event starts an HTTP/1.x record of the walk's connection in scratch.
static __always_inline struct http_event *new_event(struct scratch *sc, __u8 kind)
{
	struct http_event *e = &sc->ev;
	new_head(&e->h, &sc->ws, kind);
	e->req_ns = 0;
	e->resp_ns = 0;
	e->resp_end_ns = 0;
	e->resp_written_ns = 0;
	e->status = 0;
	e->line_len = 0;
	e->req_body = -1;
	e->resp_body = -1;
	return e;
}

static __always_inline void send(struct http_event *e)
{
	__u64 n = HTTP_EVENT_FIXED + e->line_len;
	if (n > sizeof(*e))
		n = sizeof(*e);
	if (bpf_ringbuf_output(&http_events, e, n, submit_flags(&http_events)))
		count_drop(HTTP_DROP_RINGBUF);
}

static __always_inline void send_head(struct rec_head *h)
{
	if (bpf_ringbuf_output(&http_events, h, sizeof(*h), submit_flags(&http_events)))
		count_drop(HTTP_DROP_RINGBUF);
}

// send_response sends a response's record, or, for a TLS response written
// whose bytes have not all left the socket, keeps it until they have.
static __always_inline void send_response(struct http_sock *st, struct scratch *sc, struct http_event *e)
{
	if ((sc->ws.flags & HTTP_F_TLS) && sc->ws.egress && st->bound) {
		if (st->tx_drained && st->tx_sent >= st->tx_plain) {
			// Its bytes left inside the library's write (a socket
			// BIO), before the write returned: it ended then.
			// (The drain came after this write began: the bytes
			// counted at its entry had to leave.)
			if (e->resp_end_ns && st->drain_ns > e->resp_end_ns)
				e->resp_end_ns = st->drain_ns;
			send(e);
			return;
		}
		struct tls_key k = {.tgid = bpf_get_current_pid_tgid() >> 32, .ptr = sc->ws.conn_key};
		struct http_event *old = bpf_map_lookup_elem(&tls_deferred, &k);
		if (old)
			send(old); // its socket never drained since: its end is its write
		if (!bpf_map_update_elem(&tls_deferred, &k, e, BPF_ANY))
			return;
	}
	send(e);
}

// ---- HTTP/1.x message events ------------------------------------------------

// on_request holds the request whose head starts at the walk position
// (scanned into sc->hs and sc->head) until its response ends.
static __always_inline void on_request(struct http_sock *st, struct scratch *sc, __s64 clen, __u64 t)
{
	if (st->mark == SOCK_OTHER)
		return;
	// HEAD answers carry no body whatever their headers say.
	__u8 is_head = sc->head[0] == 'H';
	if (st->head_n < 32) {
		if (is_head)
			st->head_fifo |= 1U << st->head_n;
		st->head_n++;
	}
	if (st->held && !st->pipelined) {
		// A second request before the first was answered: hand both to
		// user space, which keeps a queue per socket, and keep the
		// socket marked so its responses go there too.
		struct http_event *e = new_event(sc, HTTP_REQUEST);
		fill_req(e, &st->req);
		send(e);
		st->pipelined = 1;
		st->held = 0;
	}
	struct http_req *r = &st->req;
	r->time_ns = t;
	r->body = clen;
	r->sock_cgroup = sc->ws.sock_cgroup;
	__builtin_memcpy(&r->conn, &sc->ws.conn, sizeof(r->conn));
	r->egress = sc->ws.egress;
	r->ctx = 0;
	if (sc->ws.egress || sc->ws.proc)
		set_ctx(&r->ctx_cgroup, &r->ctx_pid, &r->ctx_tid, &r->ctx);
	__u32 line = sc->hs.first_lf ? sc->hs.first_lf - 1 : sc->hs.n;
	if (line >= LINE_MAX)
		line = LINE_MAX - 1;
	r->line_len = line;
	__builtin_memcpy(r->line, sc->head, LINE_MAX);
	if (st->pipelined) {
		struct http_event *e = new_event(sc, HTTP_REQUEST);
		fill_req(e, r);
		send(e);
		return;
	}
	st->held = 1;
}

// response_end sends the response of the walk's direction, ended at
// end_ns (0: unknown), paired with the held request when there is one.
__noinline int response_end(struct http_sock *st, struct scratch *sc, __u64 end_ns)
{
	if (!st || !sc)
		return 0;
	struct http_dir *d = DIR(st, sc);
	d->is_response = 0;
	if (st->held && !st->pipelined && st->mark != SOCK_TARGET && filter_targets) {
		// Another process's exchange: forget it without a record, and
		// its socket's next ones too.
		st->held = 0;
		st->mark = SOCK_OTHER;
		return 0;
	}
	if (st->mark == SOCK_OTHER)
		return 0;
	if (st->held && !st->pipelined) {
		struct http_event *e = new_event(sc, HTTP_PAIR);
		fill_req(e, &st->req);
		fill_resp(e, d, end_ns);
		send_response(st, sc, e);
		st->held = 0;
		return 0;
	}
	struct http_event *e = new_event(sc, HTTP_RESPONSE);
	fill_resp(e, d, end_ns);
	if (!sc->ws.egress)
		e->h.flags |= HTTP_F_REQ_EGRESS; // received a response: a client
	send_response(st, sc, e);
	return 0;
}

// start_body frames what follows a head: the body that Content-Length or
// chunked encoding delimits, a response body that ends with the
// connection, or nothing (the message ended with its head).
static __always_inline int start_body(struct http_sock *st, struct scratch *sc, __s64 clen, __u8 chunked)
{
	struct http_dir *d = DIR(st, sc);
	d->body = 0;
	if (chunked) {
		d->mode = MODE_CHUNKED;
		d->chunk_state = CH_SIZE;
		d->chunk_size = 0;
		return 0;
	}
	if (clen > 0) {
		d->mode = MODE_BODY;
		d->body = clen;
		d->body_end = sc->ws.seq + sc->ws.pos + (__u32)clen;
		return 0;
	}
	if (clen < 0 && d->is_response) {
		d->mode = MODE_CLOSE;
		d->last_ns = sc->ws.now;
		return 0;
	}
	d->mode = MODE_IDLE;
	if (d->is_response)
		response_end(st, sc, sc->ws.now);
	return 0;
}

// lost gives up framing the direction until a segment starts a message.
static __always_inline int lost(struct http_sock *st, struct http_dir *d, __u32 reason)
{
	counted(st, reason);
	d->mode = MODE_LOST;
	d->stash_n = 0;
	return 1;
}

static __always_inline int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	c |= 0x20;
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

// ---- HTTP/2 ------------------------------------------------------------------

// h2_start makes a direction HTTP/2 with a frame header due at seq; its
// peer, not yet HTTP/2, starts with frames at its next segment (a server's
// SETTINGS after the client's preface or an h2c upgrade's 101).
static __always_inline void h2_start(struct http_sock *st, struct http_dir *d, __u32 seq)
{
	d->mode = MODE_H2;
	d->body_end = seq;
	d->h2_in_frame = 0;
	d->h2_hn = 0;
	struct http_dir *peer = d == &st->dir[0] ? &st->dir[1] : &st->dir[0];
	if (peer->mode < MODE_H2)
		peer->mode = MODE_H2_SYNC;
}

// h2_stream_sum adds n DATA bytes to a stream (n < 0: reads and frees its
// sum). It returns the stream's bytes, or -1 when the table had no room
// for it (counted once when its first DATA found none).
__noinline __s64 h2_stream_sum(struct http_sock *st, struct http_dir *d, __u32 id, __s64 n)
{
	if (!st || !d)
		return -1;
	int free = -1;
	for (int i = 0; i < H2_STREAMS; i++) {
		struct h2_stream *s = &d->streams[i];
		if (s->id == id) {
			if (n < 0) {
				__s64 v = s->bytes;
				s->id = 0;
				s->bytes = 0;
				return v;
			}
			s->bytes += n;
			return s->bytes;
		}
		if (s->id == 0 && free < 0)
			free = i;
	}
	if (n < 0)
		return 0; // no DATA in this direction
	if (free < 0) {
		counted(st, HTTP_DROP_H2_STREAMS_FULL);
		return -1;
	}
	struct h2_stream *s = &d->streams[free & (H2_STREAMS - 1)];
	s->id = id;
	s->bytes = n;
	return n;
}

// h2_record starts an HTTP/2 record of the frame in progress.
static __always_inline struct h2_event *h2_record(struct scratch *sc, struct http_dir *d, __u8 kind)
{
	struct h2_event *e = &sc->h2;
	new_head(&e->h, &sc->ws, kind);
	if (sc->ws.egress)
		e->h.flags |= HTTP_F_EGRESS;
	if (d->h2_preface)
		e->h.flags |= HTTP_F_H2_PREFACE;
	if (sc->ws.egress || sc->ws.proc)
		head_ctx(&e->h);
	e->time_ns = sc->ws.now;
	e->frame_ns = d->h2_frame_ns;
	e->data_bytes = -1;
	e->stream = d->h2_stream;
	e->frame_len = d->h2_len;
	e->frag_off = 0;
	e->rst_code = 0;
	e->n = 0;
	e->ftype = d->h2_type;
	e->fflags = d->h2_flags;
	e->last = 0;
	e->cut = 0;
	return e;
}

static __always_inline void h2_send(struct h2_event *e)
{
	__u64 n = H2_EVENT_FIXED + (e->n & (H2_FRAG_MAX - 1 + H2_FRAG_MAX));
	if (n > sizeof(*e))
		n = sizeof(*e);
	if (bpf_ringbuf_output(&http_events, e, n, submit_flags(&http_events)))
		count_drop(HTTP_DROP_RINGBUF);
}

// h2_frame_end handles the end of the frame in progress, whose last byte
// passed in this segment: a DATA frame ending its stream is sent with the
// stream's bytes. (Header block records were sent with their bytes; a
// RST_STREAM is sent by the walk, which reads its code.)
static __always_inline void h2_frame_end(struct http_sock *st, struct scratch *sc, struct http_dir *d)
{
	d->h2_in_frame = 0;
	if (st->mark == SOCK_OTHER)
		return;
	if (d->h2_type == H2_DATA && (d->h2_flags & H2_END_STREAM)) {
		struct h2_event *e = h2_record(sc, d, HTTP_H2_FRAME);
		e->data_bytes = h2_stream_sum(st, d, d->h2_stream, -1);
		e->last = 1;
		h2_send(e);
	}
}

// h2_lost gives up a direction's HTTP/2 framing until a segment starts
// with frames.
static __always_inline int h2_lost(struct http_sock *st, struct http_dir *d, __u32 reason)
{
	counted(st, reason);
	d->mode = MODE_H2_LOST;
	return 1;
}
