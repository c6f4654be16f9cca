//go:build ignore

// HTTP/1.x at the socket layer: cgroup_skb programs see every TCP segment
// of the sockets below the cgroup they are attached to, egress in the
// sending task's context. No syscall tracepoint is enabled (that would slow
// every syscall of every task).
//
// Each direction of a socket is framed in the kernel, message by message:
// the head of a message (request or status line and header lines, up to
// HEAD_MAX bytes) is scanned for its end, Content-Length and
// Transfer-Encoding: chunked; its body is then skipped by TCP sequence
// number (Content-Length), walked chunk by chunk (chunked), or runs to the
// connection's end (a response with neither). So the kernel knows where the
// next message starts (pipelined requests in one segment are each seen,
// bytes inside a body are never taken for a message) and when a response's
// last byte passes, which is when the exchange is sent to user space: one
// ring record per request/response pair, with the request line and the
// times of the request's first byte and the response's first and last.
// Where framing is lost (a segment missing, a head too long) a counter says
// why, and the direction waits for a segment that starts a message.
#include "common.h"
#include <bpf/bpf_endian.h>

char LICENSE[] SEC("license") = "Dual BSD/GPL";

#define ETH_P_IP 0x0800
#define ETH_P_IPV6 0x86DD
#define IPPROTO_TCP_ 6
#define TCP_FIN 0x01
#define TCP_RST 0x04

#define LINE_MAX 256        // request line bytes kept (user space keeps 200 of the path)
#define HEAD_MAX 2048       // head bytes scanned at a message start (a power of two)
#define MAX_MESSAGES 32     // messages framed in one segment
#define MAX_CHUNK_STEPS 1024 // bytes of chunk-size lines read (and chunks skipped) in one segment

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
	HTTP_DROP_MAX = 12,
};
// Kept in BTF for bpf2go's -type: the Go constants come from here.
const enum http_drop *unused_http_drop __attribute__((unused));

DECLARE_DROPS(HTTP_DROP_MAX);

enum http_kind {
	HTTP_PAIR = 1,     // a request with its response
	HTTP_REQUEST = 2,  // a request on its own (pipelined, released or held at the end)
	HTTP_RESPONSE = 3, // a response on its own (its socket pipelines)
};
const enum http_kind *unused_http_kind __attribute__((unused));

enum http_flag {
	HTTP_F_REQ_EGRESS = 1, // the request was sent by this socket: a client
	HTTP_F_RELEASED = 2,   // sent when the socket was released; ctx is the closing task
	HTTP_F_CTX = 4,        // ctx_* hold the task an egress message of the record was sent from
	HTTP_F_END_UNKNOWN = 8, // the response's last byte was not seen (window ended, framing lost)
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
	MODE_OFF,      // not HTTP/1.x any more (upgraded, tunnel)
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

struct http_dir {
	__u64 msg_ns;     // first byte of the message in progress
	__u64 body;       // body bytes declared (Content-Length) or walked (chunked)
	__u64 chunk_size; // CH_SIZE: the size read so far
	__u64 ctx_cgroup; // the task that sent the message's head (egress)
	__u64 last_ns;    // MODE_CLOSE: the last segment of the body
	__u64 written_ns; // the last segment of the message its writer sent itself (see http_event)
	__u32 writer_tid; // the thread that sent the message's head
	__s64 head_clen;  // MODE_HEAD: Content-Length found so far (-1: none)
	__u32 ctx_pid, ctx_tid;
	__u32 next_seq;   // sequence number of the first byte not yet framed
	__u32 body_end;   // MODE_BODY: end of the body; CH_DATA: start of the next size line
	__u16 status;     // the response in progress
	__u8 mode;
	__u8 chunk_state;
	__u8 is_response; // the message in progress is a final response
	__u8 carry;       // MODE_HEAD: enum head_carry
	__u8 ctx;         // ctx_* are set
	__u8 head_chunked; // MODE_HEAD: Transfer-Encoding chunked found so far
	__u8 no_body;     // MODE_HEAD: the message has no body whatever its headers say
	__u8 pad[7];
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

// Per socket, in socket-local storage: freed with the socket, no table to
// fill up, and found from the socket without a hash lookup. At the end of
// the capture user space reads it through the sockets' file descriptors
// (the map cannot be iterated otherwise on kernels that refuse iterator
// programs, as this project's does), for requests still waiting.
struct http_sock {
	struct http_dir dir[2]; // [0] received, [1] sent
	struct http_req req;
	__u32 head_fifo; // bit i: the i-th outstanding request is a HEAD
	__u8 head_n;     // outstanding requests in head_fifo
	__u8 held;       // req is valid
	__u8 pipelined;  // a second request came before the first was answered: every message goes to user space
	__u8 mark;       // enum sock_mark
};

// A ring record. Only the first line_len bytes of line are sent.
struct http_event {
	__u64 cookie;       // socket cookie: the connection, per socket
	__u64 sock_cgroup;  // cgroup of the socket's owner
	__u64 req_ns;       // the request's first byte (PAIR, REQUEST)
	__u64 resp_ns;      // the response's first byte (PAIR, RESPONSE)
	__u64 resp_end_ns;  // the response's last byte (PAIR, RESPONSE)
	// resp_written_ns is when the last segment of the response left in
	// the context of the thread that sent its head: about when a server
	// finished writing it. A segment held back (Nagle, corking) leaves
	// later, from the softirq of the peer's ACK on top of whatever task
	// runs, and does not count; 0 when none was seen so.
	__u64 resp_written_ns;
	__s64 req_body;     // request body bytes declared, or -1
	__s64 resp_body;    // response body bytes (declared or walked), or -1
	__u64 ctx_cgroup;   // see HTTP_F_CTX
	__u8 saddr[16];     // local
	__u8 daddr[16];     // remote
	__u32 ctx_pid, ctx_tid;
	__u16 status;
	__u16 line_len;
	__u16 sport, dport; // as this socket sees them: source = local
	__u8 family;        // 4 or 6
	__u8 kind;
	__u8 flags;
	__u8 pad[5];
	char line[LINE_MAX];
};

#define HTTP_EVENT_FIXED __builtin_offsetof(struct http_event, line)

const struct http_event *unused_http_event __attribute__((unused));
const struct http_sock *unused_http_sock __attribute__((unused));

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 8 * 1024 * 1024);
} http_events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct http_sock);
} socks SEC(".maps");

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

// The segment being framed and where the walk is in it.
struct walk_state {
	__u64 now;
	__u64 cookie;
	__u64 sock_cgroup; // cgroup of the socket's owner
	__u32 base;   // skb offset of payload byte 0
	__u32 len;    // payload bytes in the segment
	__u32 seq;    // sequence number of payload byte 0
	__u32 pos;    // payload offset being framed
	__u32 cb_pos; // payload offset of cb[0]
	__u8 cb_n;    // bytes in cb
	__u8 owner;   // an egress segment sent by a task of the socket's owner cgroup
	__u8 egress;
	__u8 done;    // 1: the segment is consumed; 2: a chunked body ended; 3: a chunk line was malformed
	__u8 pad;
	struct conn_head conn; // as this socket sees it: source = local
	char cb[16];  // bytes of a chunked body being read
};

// A Content-Length value being read.
struct digits {
	__u32 at, end;
	__s64 v; // -1 until a digit
};

// scratch holds, per CPU, everything the programs build or track while
// framing a segment: the head and its scan, the walk, a record. Keeping it
// in a map rather than on the 512-byte stack also keeps the verifier fast:
// it does not track the contents of map values, so the loops' states
// converge at once instead of once per value. The head buffer has room for
// 8-byte reads past its end.
struct scratch {
	char head[HEAD_MAX + 16] __attribute__((aligned(8)));
	struct head_scan hs;
	struct walk_state ws;
	struct digits dg;
	struct http_event ev;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct scratch);
} scratch SEC(".maps");

// Callbacks of bpf_loop get this; the framing functions are global
// (verified once each, whatever their callers' states) and take the same
// three pointers.
struct frame_ctx {
	struct __sk_buff *skb;
	struct http_sock *st;
	struct scratch *sc;
};

// A direction's state: the one the segment travels.
#define DIR(st, sc) (&(st)->dir[(sc)->ws.egress & 1])

// sock_mark decides, in a capture restricted to target processes, whether
// a socket is a target's: egress runs in the sender's context when it is a
// write (a softirq may also send on top of another task, so a mark can be
// wrong, never missing for a socket its owner writes to). A pair on a
// socket not marked costs no ring record; a socket found to be another
// process's (SOCK_OTHER) costs nothing more until a target writes on it.
static __always_inline __u8 sock_mark(struct __sk_buff *skb, struct http_sock *st, __u8 egress)
{
	if (!filter_targets)
		return SOCK_TARGET;
	if (st->mark == SOCK_TARGET)
		return SOCK_TARGET;
	if (!egress || bpf_get_current_cgroup_id() != bpf_skb_cgroup_id(skb) ||
	    !is_target(bpf_get_current_pid_tgid() >> 32))
		return st->mark;
	st->mark = SOCK_TARGET;
	return SOCK_TARGET;
}

// counted counts reason for sockets this capture is about.
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
	} else if (c == 't') {
		if (s + 19 > hs->n) {
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

static __always_inline void copy_conn(struct http_event *e, const struct conn_head *c)
{
	e->family = c->family;
	e->sport = c->sport;
	e->dport = c->dport;
	__builtin_memcpy(e->saddr, c->saddr, 16);
	__builtin_memcpy(e->daddr, c->daddr, 16);
}

static __always_inline void fill_req(struct http_event *e, const struct http_req *r)
{
	copy_conn(e, &r->conn);
	e->sock_cgroup = r->sock_cgroup;
	e->req_ns = r->time_ns;
	e->req_body = r->body;
	e->line_len = r->line_len;
	if (r->egress)
		e->flags |= HTTP_F_REQ_EGRESS;
	if (r->ctx) {
		e->flags |= HTTP_F_CTX;
		e->ctx_cgroup = r->ctx_cgroup;
		e->ctx_pid = r->ctx_pid;
		e->ctx_tid = r->ctx_tid;
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
		e->flags |= HTTP_F_END_UNKNOWN;
	if (d->ctx) {
		// The response's sender wins: for a server it is the thread
		// that wrote the response.
		e->flags |= HTTP_F_CTX;
		e->ctx_cgroup = d->ctx_cgroup;
		e->ctx_pid = d->ctx_pid;
		e->ctx_tid = d->ctx_tid;
	}
}

// new_event starts a record of the segment's connection in scratch.
static __always_inline struct http_event *new_event(struct scratch *sc, __u8 kind)
{
	struct http_event *e = &sc->ev;
	__builtin_memset(e, 0, HTTP_EVENT_FIXED);
	copy_conn(e, &sc->ws.conn);
	e->cookie = sc->ws.cookie;
	e->sock_cgroup = sc->ws.sock_cgroup;
	e->kind = kind;
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

static __always_inline void set_ctx(__u64 *cgroup, __u32 *pid, __u32 *tid, __u8 *valid)
{
	__u64 id = bpf_get_current_pid_tgid();
	*cgroup = bpf_get_current_cgroup_id();
	*pid = id >> 32;
	*tid = (__u32)id;
	*valid = 1;
}

// ---- Message events -------------------------------------------------------

// on_request holds the request whose head starts at the walk position
// (scanned into sc->hs and sc->head) until its response ends.
static __always_inline void on_request(struct http_sock *st, struct scratch *sc, __s64 clen)
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
	r->time_ns = sc->ws.now;
	r->body = clen;
	r->sock_cgroup = sc->ws.sock_cgroup;
	__builtin_memcpy(&r->conn, &sc->ws.conn, sizeof(r->conn));
	r->egress = sc->ws.egress;
	r->ctx = 0;
	if (sc->ws.egress)
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

// response_end sends the response of the segment's direction, ended at
// end_ns (0: unknown), paired with the held request when there is one.
__noinline int response_end(struct __sk_buff *skb, struct http_sock *st, struct scratch *sc, __u64 end_ns)
{
	if (!skb || !st || !sc)
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
		send(e);
		st->held = 0;
		return 0;
	}
	struct http_event *e = new_event(sc, HTTP_RESPONSE);
	fill_resp(e, d, end_ns);
	if (!sc->ws.egress)
		e->flags |= HTTP_F_REQ_EGRESS; // received a response: a client
	send(e);
	return 0;
}

// start_body frames what follows a head: the body that Content-Length or
// chunked encoding delimits, a response body that ends with the
// connection, or nothing (the message ended with its head).
static __always_inline int start_body(struct __sk_buff *skb, struct http_sock *st, struct scratch *sc, __s64 clen, __u8 chunked)
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
		response_end(skb, st, sc, sc->ws.now);
	return 0;
}

// lost gives up framing the direction until a segment starts a message.
static __always_inline int lost(struct http_sock *st, struct http_dir *d, __u32 reason)
{
	counted(st, reason);
	d->mode = MODE_LOST;
	return 1;
}

// load_head copies up to HEAD_MAX bytes of the segment from the walk
// position into sc->head; it returns how many, 0 on failure.
static __always_inline __u32 load_head(struct __sk_buff *skb, struct scratch *sc)
{
	__u32 pos = sc->ws.pos;
	if (pos >= sc->ws.len)
		return 0;
	__u32 n = sc->ws.len - pos;
	if (n > HEAD_MAX)
		n = HEAD_MAX;
	// n is 1..HEAD_MAX; the mask, opaque to the compiler, makes the
	// verifier see those bounds on the very register passed as the size.
	n -= 1;
	asm volatile("%[n] &= 0x7ff" : [n] "+r"(n));
	n += 1;
	if (bpf_skb_load_bytes(skb, sc->ws.base + pos, sc->head, n))
		return 0;
	return n;
}

// begin_message frames the message whose head starts at the walk
// position; it returns 0 when the walk goes on in this segment.
__noinline int begin_message(struct __sk_buff *skb, struct http_sock *st, struct scratch *sc)
{
	if (!skb || !st || !sc)
		return 1;
	struct http_dir *d = DIR(st, sc);
	char first[4];
	if (sc->ws.pos + 4 > sc->ws.len || bpf_skb_load_bytes(skb, sc->ws.base + sc->ws.pos, first, 4))
		return lost(st, d, HTTP_DROP_HEAD_SPLIT);
	__u8 kind = classify(first);
	if (!kind) {
		if (d->mode == MODE_NEW)
			counted(st, HTTP_DROP_JOINED);
		else if (d->mode != MODE_LOST)
			counted(st, HTTP_DROP_UNEXPECTED);
		d->mode = MODE_LOST;
		return 1;
	}
	__u32 n = load_head(skb, sc);
	if (n < 4)
		return lost(st, d, HTTP_DROP_HEAD_SPLIT);
	struct head_scan *hs = &sc->hs;
	__builtin_memset(hs, 0, sizeof(*hs));
	hs->n = n;
	scan_head(sc, CARRY_MID_LINE);
	__s64 clen = -1;
	__u8 chunked = 0, no_body = 0;
	if (hs->end && head_framing(sc, &clen, &chunked))
		return lost(st, d, HTTP_DROP_HEAD_SPLIT);
	d->msg_ns = sc->ws.now;
	d->written_ns = sc->ws.owner ? sc->ws.now : 0;
	d->writer_tid = sc->ws.owner ? (__u32)bpf_get_current_pid_tgid() : 0;
	d->ctx = 0;
	d->is_response = 0;
	if (kind == HTTP_REQUEST) {
		on_request(st, sc, clen);
	} else {
		__u16 status = 0;
		if (n >= 12) {
			char c0 = sc->head[9], c1 = sc->head[10], c2 = sc->head[11];
			if (c0 >= '1' && c0 <= '9' && c1 >= '0' && c1 <= '9' && c2 >= '0' && c2 <= '9')
				status = (c0 - '0') * 100 + (c1 - '0') * 10 + (c2 - '0');
		}
		d->status = status;
		if (status == 101) {
			// Switching protocols (WebSocket, h2c): HTTP/1.x ends here.
			counted(st, HTTP_DROP_UPGRADED);
			st->dir[0].mode = MODE_OFF;
			st->dir[1].mode = MODE_OFF;
			return 1;
		}
		if (status >= 200 || status == 0) {
			// A final response answers the oldest outstanding request.
			d->is_response = 1;
			__u8 was_head = st->head_fifo & 1;
			if (st->head_n) {
				st->head_fifo >>= 1;
				st->head_n--;
			}
			if (sc->ws.egress)
				set_ctx(&d->ctx_cgroup, &d->ctx_pid, &d->ctx_tid, &d->ctx);
			no_body = was_head || status == 204 || status == 304;
		} else {
			no_body = 1; // 1xx interim: the final response follows
		}
	}
	if (!hs->end) {
		if (n == HEAD_MAX)
			return lost(st, d, HTTP_DROP_HEAD_TOO_LONG);
		if (head_framing(sc, &clen, &chunked))
			return lost(st, d, HTTP_DROP_HEAD_SPLIT);
		// The head goes on in the next segment.
		d->mode = MODE_HEAD;
		d->carry = hs->carry;
		d->head_clen = clen;
		d->head_chunked = chunked;
		d->no_body = no_body;
		return 1;
	}
	sc->ws.pos += hs->end;
	if (no_body)
		return start_body(skb, st, sc, 0, 0);
	return start_body(skb, st, sc, clen, chunked);
}

// continue_head goes on scanning a head begun in an earlier segment.
__noinline int continue_head(struct __sk_buff *skb, struct http_sock *st, struct scratch *sc)
{
	if (!skb || !st || !sc)
		return 1;
	struct http_dir *d = DIR(st, sc);
	__u32 n = load_head(skb, sc);
	if (!n)
		return lost(st, d, HTTP_DROP_HEAD_SPLIT);
	struct head_scan *hs = &sc->hs;
	__builtin_memset(hs, 0, sizeof(*hs));
	hs->n = n;
	hs->first_lf = 1; // the start line was in the first segment
	scan_head(sc, d->carry);
	__s64 clen = d->head_clen;
	__u8 chunked = d->head_chunked;
	if ((!hs->end && n == HEAD_MAX) || head_framing(sc, &clen, &chunked))
		return lost(st, d, HTTP_DROP_HEAD_SPLIT);
	if (!hs->end) {
		d->carry = hs->carry;
		d->head_clen = clen;
		d->head_chunked = chunked;
		return 1;
	}
	sc->ws.pos += hs->end;
	if (d->no_body)
		return start_body(skb, st, sc, 0, 0);
	return start_body(skb, st, sc, clen, chunked);
}

// ---- Chunked bodies ---------------------------------------------------------

static __always_inline int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	c |= 0x20;
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

// chunk_step reads one byte of a chunked body's framing (size lines,
// trailers), or skips a chunk's data; it stops the loop when the segment
// is consumed (ws.done 0), the message ended (2) or a line is malformed (3).
static long chunk_step(__u32 i, void *ctx)
{
	struct frame_ctx *f = ctx;
	struct http_sock *st = f->st;
	struct scratch *sc = f->sc;
	struct walk_state *ws = &sc->ws;
	struct http_dir *d = DIR(st, sc);
	if (d->chunk_state == CH_DATA) {
		__s32 rel = (__s32)(d->body_end - ws->seq);
		if (rel < 0 || (__u32)rel >= ws->len) {
			ws->pos = ws->len;
			return 1;
		}
		ws->pos = rel;
		d->chunk_state = CH_SIZE;
		d->chunk_size = 0;
	}
	if (ws->pos >= ws->len)
		return 1;
	__u32 at = ws->pos - ws->cb_pos;
	if (ws->pos < ws->cb_pos || at >= ws->cb_n) {
		__u32 k = ws->len - ws->pos;
		if (k > 16)
			k = 16;
		k -= 1; // 1..16, as the verifier must see it
		asm volatile("%[k] &= 0xf" : [k] "+r"(k));
		k += 1;
		if (bpf_skb_load_bytes(f->skb, ws->base + ws->pos, ws->cb, k)) {
			ws->done = 3;
			return 1;
		}
		ws->cb_pos = ws->pos;
		ws->cb_n = k;
		at = 0;
	}
	char c = ws->cb[at & 15];
	ws->pos++;
	switch (d->chunk_state) {
	case CH_SIZE: {
		int v = hexval(c);
		if (v >= 0 && d->chunk_size < (1ULL << 40)) {
			d->chunk_size = d->chunk_size * 16 + v;
			return 0;
		}
		if (c == ';' || c == ' ' || c == '\t') {
			d->chunk_state = CH_EXT;
			return 0;
		}
		if (c == '\r') {
			d->chunk_state = CH_LF;
			return 0;
		}
		if (c == '\n')
			break;
		ws->done = 3;
		return 1;
	}
	case CH_EXT:
		if (c == '\n')
			break;
		return 0;
	case CH_LF:
		if (c == '\n')
			break;
		ws->done = 3;
		return 1;
	case CH_TRAILER_LINE:
		if (c == '\r') {
			d->chunk_state = CH_END_LF;
			return 0;
		}
		if (c == '\n') {
			ws->done = 2;
			return 1;
		}
		d->chunk_state = CH_TRAILER;
		return 0;
	case CH_TRAILER:
		if (c == '\n')
			d->chunk_state = CH_TRAILER_LINE;
		return 0;
	case CH_END_LF:
		if (c == '\n') {
			ws->done = 2;
			return 1;
		}
		d->chunk_state = CH_TRAILER;
		return 0;
	default:
		ws->done = 3;
		return 1;
	}
	// A size line ended: the last chunk (0) is followed by trailers and
	// a blank line; any other by its data and CRLF.
	if (d->chunk_size == 0) {
		d->chunk_state = CH_TRAILER_LINE;
		return 0;
	}
	d->body += d->chunk_size;
	d->body_end = ws->seq + ws->pos + (__u32)d->chunk_size + 2;
	d->chunk_state = CH_DATA;
	return 0;
}

// walk_chunks frames a chunked body from the walk position; it returns 0
// when the message ended and the walk goes on in this segment.
__noinline int walk_chunks(struct __sk_buff *skb, struct http_sock *st, struct scratch *sc)
{
	if (!skb || !st || !sc)
		return 1;
	struct http_dir *d = DIR(st, sc);
	struct frame_ctx f = {.skb = skb, .st = st, .sc = sc};
	sc->ws.done = 0;
	sc->ws.cb_n = 0;
	bpf_loop(MAX_CHUNK_STEPS, chunk_step, &f, 0);
	__u8 done = sc->ws.done;
	sc->ws.done = 0;
	if (done == 2) {
		d->mode = MODE_IDLE;
		if (d->is_response)
			response_end(skb, st, sc, sc->ws.now);
		return 0;
	}
	if (done == 3)
		return lost(st, d, HTTP_DROP_BAD_CHUNK);
	if (sc->ws.pos < sc->ws.len)
		return lost(st, d, HTTP_DROP_CHUNKS_OVERFLOW);
	return 1;
}

// ---- The walk over a segment --------------------------------------------

// frame_step frames from the walk position to the end of the next message
// (or of the segment); it stops the loop when the segment is consumed.
static long frame_step(__u32 i, void *ctx)
{
	struct frame_ctx *f = ctx;
	struct http_sock *st = f->st;
	struct scratch *sc = f->sc;
	struct walk_state *ws = &sc->ws;
	struct http_dir *d = DIR(st, sc);
	int stop = 0;
	if (ws->pos >= ws->len) {
		ws->done = 1;
		return 1;
	}
	switch (d->mode) {
	case MODE_BODY: {
		__u32 rel = d->body_end - ws->seq; // the body's end in this segment
		if ((__s32)rel < 0 || rel > ws->len) {
			stop = 1;
			break;
		}
		ws->pos = rel;
		d->mode = MODE_IDLE;
		if (d->is_response)
			response_end(f->skb, st, sc, ws->now);
		break;
	}
	case MODE_CHUNKED:
		stop = walk_chunks(f->skb, st, sc);
		break;
	case MODE_CLOSE:
		d->body += ws->len - ws->pos;
		d->last_ns = ws->now;
		stop = 1;
		break;
	case MODE_HEAD:
		stop = continue_head(f->skb, st, sc);
		break;
	case MODE_OFF:
		stop = 1;
		break;
	case MODE_LOST:
		// Only a segment that starts like a message resynchronizes.
		if (ws->pos != 0) {
			stop = 1;
			break;
		}
		stop = begin_message(f->skb, st, sc);
		break;
	default: // MODE_NEW, MODE_IDLE
		stop = begin_message(f->skb, st, sc);
	}
	if (stop) {
		ws->done = 1;
		return 1;
	}
	return 0;
}

// walk_segment frames the segment described by sc->ws.
__noinline int walk_segment(struct __sk_buff *skb, struct http_sock *st, struct scratch *sc)
{
	if (!skb || !st || !sc)
		return 0;
	struct frame_ctx f = {.skb = skb, .st = st, .sc = sc};
	bpf_loop(MAX_MESSAGES, frame_step, &f, 0);
	struct http_dir *d = DIR(st, sc);
	if (!sc->ws.done) {
		counted(st, HTTP_DROP_MESSAGES_OVERFLOW);
		d->mode = MODE_LOST;
	}
	if (d->mode == MODE_NEW)
		d->mode = MODE_LOST;
	return 0;
}

static __always_inline int handle(struct __sk_buff *skb, __u8 egress)
{
	__u32 zero = 0;
	struct scratch *sc = bpf_map_lookup_elem(&scratch, &zero);
	if (!sc)
		return 1;
	struct walk_state *ws = &sc->ws;
	struct conn_head *h = &ws->conn;
	__u8 saddr[16] = {}, daddr[16] = {};
	__u32 off;
	if (skb->protocol == bpf_htons(ETH_P_IP)) {
		struct iphdr ip;
		if (bpf_skb_load_bytes(skb, 0, &ip, sizeof(ip)))
			return 1;
		if (ip.protocol != IPPROTO_TCP_)
			return 1;
		off = ip.ihl * 4;
		__builtin_memcpy(saddr, &ip.saddr, 4);
		__builtin_memcpy(daddr, &ip.daddr, 4);
		h->family = 4;
	} else if (skb->protocol == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr ip6;
		if (bpf_skb_load_bytes(skb, 0, &ip6, sizeof(ip6)))
			return 1;
		// Extension headers are rare on TCP; such segments are skipped.
		if (ip6.nexthdr != IPPROTO_TCP_)
			return 1;
		off = sizeof(ip6);
		__builtin_memcpy(saddr, &ip6.saddr, 16);
		__builtin_memcpy(daddr, &ip6.daddr, 16);
		h->family = 6;
	} else {
		return 1;
	}
	struct tcphdr tcp;
	if (bpf_skb_load_bytes(skb, off, &tcp, sizeof(tcp)))
		return 1;
	__u32 payload = off + tcp.doff * 4;
	__u8 flags = ((__u8 *)&tcp)[13];
	__u8 closing = flags & (TCP_FIN | TCP_RST);
	if (skb->len <= payload && !closing)
		return 1; // a pure ACK
	struct bpf_sock *sk = skb->sk;
	if (!sk)
		return 1;
	sk = bpf_sk_fullsock(sk);
	if (!sk)
		return 1;
	__u32 len = skb->len > payload ? skb->len - payload : 0;
	struct http_sock *st = bpf_sk_storage_get(&socks, sk, 0, 0);
	if (!st) {
		// Only a segment that starts a message makes a socket worth
		// following.
		char first[4];
		if (len < 16 || bpf_skb_load_bytes(skb, payload, first, sizeof(first)) || !classify(first))
			return 1;
		st = bpf_sk_storage_get(&socks, sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
		if (!st) {
			count_drop(HTTP_DROP_NO_STORAGE);
			return 1;
		}
	}
	if (sock_mark(skb, st, egress) == SOCK_OTHER) {
		// Not followed: when a target writes on it again, each direction
		// resynchronizes at a segment that starts a message.
		st->dir[0].mode = MODE_LOST;
		st->dir[1].mode = MODE_LOST;
		return 1;
	}
	// The addresses as the socket sees them: local first.
	__u16 sport = bpf_ntohs(tcp.source), dport = bpf_ntohs(tcp.dest);
	if (egress) {
		h->sport = sport;
		h->dport = dport;
		__builtin_memcpy(h->saddr, saddr, 16);
		__builtin_memcpy(h->daddr, daddr, 16);
	} else {
		h->sport = dport;
		h->dport = sport;
		__builtin_memcpy(h->saddr, daddr, 16);
		__builtin_memcpy(h->daddr, saddr, 16);
	}
	ws->now = bpf_ktime_get_ns();
	ws->cookie = bpf_get_socket_cookie(skb);
	ws->sock_cgroup = bpf_skb_cgroup_id(skb);
	ws->base = payload;
	ws->len = len;
	ws->seq = bpf_ntohl(tcp.seq);
	ws->egress = egress;
	ws->owner = egress && bpf_get_current_cgroup_id() == ws->sock_cgroup;
	ws->pos = 0;
	ws->done = 0;
	ws->cb_n = 0;
	struct http_dir *d = &st->dir[egress & 1];
	if (len > 0) {
		if (d->mode != MODE_NEW) {
			__s32 ahead = (__s32)(ws->seq - d->next_seq);
			if ((__s32)(ws->seq + len - d->next_seq) <= 0) {
				// Seen before: a retransmission.
				counted(st, HTTP_DROP_RETRANSMITTED);
				return 1;
			}
			if (ahead < 0) {
				// Partly seen: frame the new bytes only.
				ws->pos = -ahead;
			} else if (ahead > 0) {
				// Bytes went by unseen. Inside a body whose end is known
				// that changes nothing; anywhere else the next message's
				// start was missed.
				__u8 m = d->mode;
				if (m == MODE_IDLE || m == MODE_HEAD || m == MODE_CHUNKED ||
				    (m == MODE_BODY && (__s32)(d->body_end - ws->seq) < 0)) {
					counted(st, HTTP_DROP_FRAMING_GAP);
					d->mode = MODE_LOST;
				}
			}
		}
		d->next_seq = ws->seq + len;
		if (ws->owner && d->is_response && d->writer_tid == (__u32)bpf_get_current_pid_tgid())
			d->written_ns = ws->now; // the body goes on from the thread that wrote the head
		walk_segment(skb, st, sc);
	}
	if (closing && d->mode == MODE_CLOSE) {
		// A body delimited by the connection's close ends at its last
		// segment.
		d->mode = MODE_IDLE;
		if (d->is_response)
			response_end(skb, st, sc, d->last_ns);
	}
	return 1;
}

SEC("cgroup_skb/egress")
int http_egress(struct __sk_buff *skb)
{
	return handle(skb, 1);
}

SEC("cgroup_skb/ingress")
int http_ingress(struct __sk_buff *skb)
{
	return handle(skb, 0);
}

// A socket closing with a request unanswered: hand the request to user
// space (kept as a request without response). The release runs in the
// context of the task closing the socket, which tells user space the owner
// of a connection it never saw write.
SEC("cgroup/sock_release")
int http_release(struct bpf_sock *sk)
{
	struct http_sock *st = bpf_sk_storage_get(&socks, sk, 0, 0);
	if (!st || !st->held || st->pipelined)
		return 1;
	__u64 id = bpf_get_current_pid_tgid();
	if (filter_targets && st->mark != SOCK_TARGET && !is_target(id >> 32))
		return 1;
	__u32 zero = 0;
	struct scratch *sc = bpf_map_lookup_elem(&scratch, &zero);
	if (!sc)
		return 1;
	struct http_event *e = &sc->ev;
	__builtin_memset(e, 0, HTTP_EVENT_FIXED);
	e->cookie = bpf_get_socket_cookie(sk);
	e->kind = HTTP_REQUEST;
	e->resp_body = -1;
	fill_req(e, &st->req);
	e->flags |= HTTP_F_RELEASED | HTTP_F_CTX;
	e->ctx_cgroup = bpf_get_current_cgroup_id();
	e->ctx_pid = id >> 32;
	e->ctx_tid = (__u32)id;
	st->held = 0;
	send(e);
	return 1;
}
