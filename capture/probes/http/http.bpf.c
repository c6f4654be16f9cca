//go:build ignore

// HTTP at the socket layer, and inside TLS where the application hands
// plaintext to its TLS library.
//
// The wire: cgroup_skb programs see every TCP segment of the sockets below
// the cgroup they are attached to, egress in the sending task's context.
// No syscall tracepoint is enabled (that would slow every syscall of every
// task). TLS: uprobes on OpenSSL's SSL_read/SSL_write (and _ex) and on Go's
// crypto/tls (*Conn).Read/Write give the plaintext, which is framed by the
// same code (walk.h, included once per source).
//
// Each direction of a connection is framed in the kernel. HTTP/1.x message
// by message: the head of a message (request or status line and header
// lines, up to HEAD_MAX bytes) is scanned for its end, Content-Length and
// Transfer-Encoding: chunked; its body is then skipped by sequence number
// (Content-Length), walked chunk by chunk (chunked), or runs to the
// connection's end (a response with neither). So the kernel knows where
// the next message starts and when a response's last byte passes, which is
// when the exchange is sent to user space: one ring record per
// request/response pair. HTTP/2 (after the client preface, or recognised by
// its frames on a connection that began before the window) frame by frame:
// the 9-byte header, then the payload skipped by sequence number; header
// block bytes go to user space (which decodes HPACK), DATA bytes are summed
// per stream, and the frame ending a stream is reported when its last byte
// passes. Where framing is lost a counter says why, and the direction waits
// for bytes that start a message (or frames).
#include "framing.h"
#include <bpf/bpf_endian.h>

char LICENSE[] SEC("license") = "Dual BSD/GPL";

#define ETH_P_IP 0x0800
#define ETH_P_IPV6 0x86DD
#define IPPROTO_TCP_ 6
#define TCP_FIN 0x01
#define TCP_RST 0x04
#define EEXIST_ 17

// The wire's copy of the framing functions.
#define SRC_T struct __sk_buff
#define FN(x) skb_##x
#define LOAD(src, sc, off, dst, n) bpf_skb_load_bytes(src, (sc)->ws.base + (off), dst, n)
#include "walk.h"
#undef SRC_T
#undef FN
#undef LOAD

// The TLS plaintext's copy: the bytes are in the application's buffer.
#define SRC_T struct pt_regs
#define FN(x) user_##x
#define LOAD(src, sc, off, dst, n) bpf_probe_read_user(dst, n, (const void *)((sc)->ws.ubuf + (off)))
#include "walk.h"
#undef SRC_T
#undef FN
#undef LOAD

struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct http_sock);
} socks SEC(".maps");

// Sockets handed to a target by a process of another cgroup (a listener
// systemd created, and so every connection accepted from it): pairs of
// (the sockets' cgroup, the target's cgroup), filled by user space from
// http_sock_cgroups (attach.go). A send from a task of the target's cgroup
// on such a socket is its owner's, as a send from the socket's own cgroup
// is for every other socket.
struct handed_key {
	__u64 sock_cgroup;
	__u64 owner_cgroup;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, struct handed_key);
	__type(value, __u8);
} handed_cgroups SEC(".maps");

// owner_sends reports whether a task of cgroup cur sending on a socket of
// cgroup sock is taken for the socket's owner (see sock_mark).
static __always_inline bool owner_sends(__u64 cur, __u64 sock)
{
	if (cur == sock)
		return true;
	struct handed_key k = {.sock_cgroup = sock, .owner_cgroup = cur};
	return bpf_map_lookup_elem(&handed_cgroups, &k) != NULL;
}

// ---- TLS state ----------------------------------------------------------------

// The framing state of TLS connections, created at their first plaintext
// and deleted when the library frees them (SSL_free, Go's Close).
#define TLS_CONNS 16384
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, TLS_CONNS);
	__type(key, struct tls_key);
	__type(value, struct http_sock);
} tls_conns SEC(".maps");

// A zeroed state to create entries of tls_conns from (never written).
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct http_sock);
} tls_zero SEC(".maps");

// Which function a uprobe is on: its BPF cookie.
enum tls_fn {
	TLS_FN_SSL_READ = 1,     // int SSL_read(SSL *, void *buf, int num)
	TLS_FN_SSL_READ_EX = 2,  // int SSL_read_ex(SSL *, void *buf, size_t num, size_t *readbytes)
	TLS_FN_SSL_WRITE = 3,    // int SSL_write(SSL *, const void *buf, int num)
	TLS_FN_SSL_WRITE_EX = 4, // int SSL_write_ex(SSL *, const void *buf, size_t num, size_t *written)
	TLS_FN_SSL_FREE = 5,     // void SSL_free(SSL *)
	TLS_FN_GO_READ = 6,      // crypto/tls.(*Conn).Read(b []byte) (int, error): entry
	TLS_FN_GO_READ_RET = 7,  // ... its RET instructions
	TLS_FN_GO_WRITE = 8,     // crypto/tls.(*Conn).Write(b []byte) (int, error): entry
	TLS_FN_GO_CLOSE = 9,     // crypto/tls.(*Conn).Close() error
	TLS_FN_SSL_SET_FD = 10,  // int SSL_set_fd(SSL *, int fd)
	TLS_FN_SPILLS = 0x100,   // flag (GO_READ_RET): Read stores its arguments in their spill slots on entry
};
const enum tls_fn *unused_tls_fn __attribute__((unused));

// A thread inside an OpenSSL call, from its entry to its return; and the
// TLS connection whose write this thread is doing, for the egress program
// to tie the connection to its socket.
#define TLS_WRITES 4
struct tls_task {
	__u64 key;      // SSL*
	__u64 buf;
	__u64 len_ptr;  // SSL_*_ex: where the byte count is written
	// The last writes of this thread to connections without a socket yet
	// (connection, bytes), whose records may leave later (Nagle, memory
	// BIOs): the egress program ties a connection to its socket when a
	// record of its size goes out.
	__u64 w_key[TLS_WRITES];
	__u64 w_len[TLS_WRITES];
	__u64 num;      // the bytes the write in progress was asked to write
	__u64 entry_ns; // when the write in progress began
	__u8 w_next;
	__u8 fn;        // enum tls_fn of the call in progress (0: none)
	__u8 pad[6];
};

struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct tls_task);
} tls_tasks SEC(".maps");

// Sockets (by the kernel address of their struct sock) whose TLS
// connection a probe found through the connection's file descriptor
// (SSL_set_fd, a Go tls.Conn's net.Conn), for the cgroup_skb programs to
// tie the socket's state to it at its next segment.
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, TLS_CONNS);
	__type(key, __u64);
	__type(value, struct tls_key);
} tls_by_sk SEC(".maps");

// A goroutine inside crypto/tls.(*Conn).Read: goroutines move between
// threads, so the call is keyed by the goroutine (R14 holds g on amd64).
struct go_key {
	__u32 tgid;
	__u32 pad;
	__u64 g;
};

struct go_call {
	__u64 conn;
	__u64 buf;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct go_key);
	__type(value, struct go_call);
} go_calls SEC(".maps");

// ---- The wire -----------------------------------------------------------------

// sock_mark decides, in a capture restricted to target processes, whether
// a socket is a target's: egress runs in the sender's context when it is a
// write (a softirq may also send on top of another task, so a mark can be
// wrong, never missing for a socket its owner writes to). Only sends from
// the owner's cgroup (ws->owner: the socket's, or a target's it was handed
// to) are judged. A pair on a
// socket not marked costs no ring record; a socket found to be another
// process's (SOCK_OTHER) costs nothing more until a target writes on it.
static __always_inline __u8 sock_mark(struct http_sock *st, struct walk_state *ws)
{
	if (!filter_targets)
		return SOCK_TARGET;
	if (st->mark == SOCK_TARGET)
		return SOCK_TARGET;
	if (!ws->owner)
		return st->mark;
	if (!is_target(bpf_get_current_pid_tgid() >> 32)) {
		// An HTTP/2 connection has no pair to wait for: its frames stop
		// going to user space once another process is seen writing.
		if (st->dir[0].mode >= MODE_H2 || st->dir[1].mode >= MODE_H2)
			st->mark = SOCK_OTHER;
		return st->mark;
	}
	st->mark = SOCK_TARGET;
	return SOCK_TARGET;
}

// tls_wire follows a socket that carries TLS records: an egress inside a
// TLS probe's write ties the probe's connection to the socket (so its rows
// get the socket's addresses and cookie); a socket no probe ever ties is
// reported once from its owner's context, for the count of TLS connections
// not decoded.
// tls_bind ties TLS connection k (its state ts) to a socket.
static __always_inline void tls_bind(struct scratch *sc, struct http_sock *ts, struct tls_key *k)
{
	struct walk_state *ws = &sc->ws;
	ts->tx_plain = 0;
	ts->tx_sent = 0;
	ts->tx_drained = 1;
	ts->b_cookie = ws->cookie;
	ts->b_cgroup = ws->sock_cgroup;
	__builtin_memcpy(&ts->b_conn, &ws->conn, sizeof(ts->b_conn));
	ts->bound = 1;
	struct rec_head *h = &sc->ev.h;
	new_head(h, ws, HTTP_TLS_BIND);
	h->conn_key = k->ptr;
	h->ctx_pid = k->tgid;
	h->flags |= HTTP_F_TLS | HTTP_F_BOUND | HTTP_F_CTX;
	send_head(h);
}

// tls_wire follows a socket that carries TLS records. It ties the socket
// to a TLS probe's connection: one a probe found by file descriptor
// (tls_by_sk), or the connection the current thread last wrote with
// OpenSSL when this segment starts with a record the size of that write,
// on a socket the thread's cgroup owns (ws->owner: its own, or handed to
// it). OpenSSL may send a write's records after SSL_write returns, as
// node's memory BIOs do; a segment sent from a softirq on top of the
// thread, another socket's, does not match its size or owner. A bound
// socket's received segments give the times its TLS connection's bytes
// arrived. A socket no probe ever ties is reported once from its owner's
// context, for the count of TLS connections not decoded.
//
// tls_marker is false where cgroup_skb programs may not read a task's
// storage (Linux 6.12 and older; set by the loader from doctor's probe):
// the verifier then never sees the call, and only connections found by
// descriptor are tied.
const volatile bool tls_marker = true;

static __always_inline void tls_wire(struct bpf_sock *sk, struct http_sock *st, struct scratch *sc, __u8 egress, __u8 fin)
{
	struct walk_state *ws = &sc->ws;
	if (!st->bound) {
		struct tcp_sock *tp = bpf_skc_to_tcp_sock(sk);
		__u64 addr = (__u64)tp;
		struct tls_key *found = tp ? bpf_map_lookup_elem(&tls_by_sk, &addr) : 0;
		if (found) {
			struct tls_key k = *found;
			bpf_map_delete_elem(&tls_by_sk, &addr);
			st->bound = 1;
			st->tls_tgid = k.tgid;
			st->tls_ptr = k.ptr;
			struct http_sock *ts = bpf_map_lookup_elem(&tls_conns, &k);
			if (ts && !ts->bound)
				tls_bind(sc, ts, &k);
		}
	}
	if (st->bound) {
		// The TLS connection's reads are framed when the application
		// reads them, later than its bytes came in: a read is dated by
		// the last segment received before it.
		if (ws->len == 0)
			return;
		struct tls_key k = {.tgid = st->tls_tgid, .ptr = st->tls_ptr};
		struct http_sock *ts = bpf_map_lookup_elem(&tls_conns, &k);
		if (!ts)
			return;
		if (!egress) {
			ts->rx_ns = ws->now;
			return;
		}
		// Once as many bytes as the application wrote left (ciphertext
		// is longer than plaintext) and the socket's queue is empty, the
		// response waiting for it (send_response) ends here. The
		// application may write a response's records in several writes
		// after the library returned (node's memory BIOs): an empty
		// queue alone is not enough.
		struct tcp_sock *tp = bpf_skc_to_tcp_sock(sk);
		if (!tp)
			return;
		ts->tx_sent += ws->len;
		if (!ts->tx_first_ns)
			ts->tx_first_ns = ws->now;
		// A FIN counts in the sequence.
		ts->tx_drained = ws->seq + ws->len + (fin ? 1 : 0) == tp->write_seq;
		if (!ts->tx_drained || ts->tx_sent < ts->tx_plain)
			return;
		ts->tx_sent = 0;
		ts->tx_plain = 0;
		ts->drain_ns = ws->now;
		struct http_event *e = bpf_map_lookup_elem(&tls_deferred, &k);
		if (e) {
			e->resp_end_ns = ws->now;
			send(e);
			bpf_map_delete_elem(&tls_deferred, &k);
		}
		return;
	}
	if (!egress || ws->len < 5 || !is_tls_record(ws->hb))
		return;
	__u64 id = bpf_get_current_pid_tgid();
	// From the socket's owner: a task of its cgroup, or of a target's it
	// was handed to (a listener systemd created).
	__u8 own = ws->owner;
	struct tls_task *t = NULL;
	if (tls_marker)
		t = bpf_task_storage_get(&tls_tasks, bpf_get_current_task_btf(), 0, 0);
	if (own && t) {
		// Newest first: OpenSSL with a memory BIO (node) sends a write's
		// records right after it; several connections of a process
		// often write the same sizes, and a connection that has its
		// socket already is not another's.
		__u64 rec = ((__u64)ws->hb[3] << 8) | ws->hb[4];
		for (int i = 1; i <= TLS_WRITES; i++) {
			__u8 j = (__u8)(t->w_next - i) % TLS_WRITES;
			__u64 want = t->w_len[j] > 16384 ? 16384 : t->w_len[j];
			if (!t->w_key[j] || rec <= want || rec > want + 64)
				continue;
			struct tls_key k = {.tgid = id >> 32, .ptr = t->w_key[j]};
			struct http_sock *ts = bpf_map_lookup_elem(&tls_conns, &k);
			if (!ts || (ts->bound && ts->b_cookie != ws->cookie))
				continue;
			t->w_key[j] = 0;
			st->bound = 1;
			st->tls_tgid = k.tgid;
			st->tls_ptr = k.ptr;
			if (!ts->bound)
				tls_bind(sc, ts, &k);
			return;
		}
	}
	if (st->tls_seen || !own || !is_target(id >> 32))
		return;
	st->tls_seen = 1;
	struct rec_head *h = &sc->ev.h;
	new_head(h, ws, HTTP_TLS_SEEN);
	head_ctx(h);
	send_head(h);
}

static __always_inline int handle(struct __sk_buff *skb, __u8 egress)
{
	__u32 idx = egress ? SCRATCH_EGRESS : SCRATCH_INGRESS;
	struct scratch *sc = bpf_map_lookup_elem(&scratch, &idx);
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
	ws->base = payload;
	ws->len = len;
	ws->seq = bpf_ntohl(tcp.seq);
	ws->egress = egress;
	ws->pos = 0;
	ws->done = 0;
	ws->cb_n = 0;
	ws->proc = 0;
	ws->flags = 0;
	ws->conn_key = 0;
	ws->ubuf = 0;
	// The first bytes: what the connection is, and (TLS) whether a write
	// starts with a record.
	__builtin_memset(ws->hb, 0, 24);
	if (len > 0) {
		__u32 k = len > 24 ? 24 : len;
		k -= 1;
		asm volatile("%[k] &= 0x1f" : [k] "+r"(k));
		k += 1;
		if (k > 24 || bpf_skb_load_bytes(skb, payload, ws->hb, k))
			return 1;
	}
	struct http_sock *st = bpf_sk_storage_get(&socks, sk, 0, 0);
	__u8 tls = 0, h2 = 0;
	if (!st) {
		// Only bytes that start an HTTP message, the HTTP/2 preface,
		// HTTP/2 frames or a TLS record make a socket worth following.
		if (len < 5)
			return 1;
		if (len >= 16 && classify((const char *)ws->hb)) {
		} else if (len >= H2_PREFACE_LEN && is_preface((const __u64 *)ws->hb)) {
		} else if (is_tls_record(ws->hb)) {
			tls = 1;
		} else {
			__u32 l;
			if (len < 9 || !h2_header_ok(ws->hb, &l))
				return 1;
			skb_h2_chain(skb, sc);
			if (!ws->chain_ok)
				return 1;
			h2 = 1;
		}
		st = bpf_sk_storage_get(&socks, sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
		if (!st) {
			count_drop(HTTP_DROP_NO_STORAGE);
			return 1;
		}
		if (tls) {
			st->dir[0].mode = MODE_TLS;
			st->dir[1].mode = MODE_TLS;
		}
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
	ws->wrote_ns = ws->now;
	ws->cookie = bpf_get_socket_cookie(skb);
	// A socket's cgroup never changes: read once (the helper chases three
	// pointers, a tenth of a microsecond per request on a busy host).
	if (!st->sk_cgroup)
		st->sk_cgroup = bpf_skb_cgroup_id(skb);
	ws->sock_cgroup = st->sk_cgroup;
	ws->owner = egress && owner_sends(bpf_get_current_cgroup_id(), ws->sock_cgroup);
	if (st->dir[0].mode == MODE_TLS) {
		tls_wire(sk, st, sc, egress, flags & TCP_FIN);
		return 1;
	}
	if (sock_mark(st, ws) == SOCK_OTHER) {
		// Not followed: when a target writes on it again, each direction
		// resynchronizes at a segment that starts a message.
		for (int i = 0; i < 2; i++)
			st->dir[i].mode = st->dir[i].mode >= MODE_H2 ? MODE_H2_LOST : MODE_LOST;
		return 1;
	}
	struct http_dir *d = &st->dir[egress & 1];
	if (h2) {
		counted(st, HTTP_DROP_H2_JOINED);
		h2_start(st, d, ws->seq);
		d->next_seq = ws->seq;
	}
	if (len > 0) {
		if (d->mode != MODE_NEW && d->mode != MODE_H2_SYNC) {
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
				// Bytes went by unseen. Inside a body (or a DATA frame)
				// whose end is known that changes nothing; anywhere else
				// the next message's start was missed.
				__u8 m = d->mode;
				if (m == MODE_IDLE || m == MODE_HEAD || m == MODE_CHUNKED ||
				    (m == MODE_BODY && (__s32)(d->body_end - ws->seq) < 0)) {
					counted(st, HTTP_DROP_FRAMING_GAP);
					d->mode = MODE_LOST;
				} else if (m == MODE_H2 && (!d->h2_in_frame || d->h2_type == H2_HEADERS ||
							    d->h2_type == H2_CONTINUATION || d->h2_hn ||
							    (__s32)(d->body_end - ws->seq) < 0)) {
					counted(st, HTTP_DROP_FRAMING_GAP);
					d->mode = MODE_H2_LOST;
				}
			}
		}
		d->next_seq = ws->seq + len;
		if (ws->owner && d->is_response && d->writer_tid == (__u32)bpf_get_current_pid_tgid())
			d->written_ns = ws->now; // the body goes on from the thread that wrote the head
		skb_walk_segment(skb, st, sc);
	}
	if (closing && d->mode == MODE_CLOSE) {
		// A body delimited by the connection's close ends at its last
		// segment.
		d->mode = MODE_IDLE;
		if (d->is_response)
			response_end(st, sc, d->last_ns);
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

// release hands a connection's unanswered request to user space (kept as
// a request without response), and ends a response delimited by the
// connection's close. ctx (the socket's release, the TLS library freeing
// its connection) runs in the context of the task closing it, which tells
// user space the owner of a connection it never saw write.
static __always_inline void release(struct http_sock *st, struct scratch *sc)
{
	for (int i = 0; i < 2; i++) {
		struct http_dir *d = &st->dir[i];
		if (d->mode == MODE_CLOSE && d->is_response) {
			sc->ws.egress = i;
			d->mode = MODE_IDLE;
			response_end(st, sc, d->last_ns);
		}
	}
	if (!st->held || st->pipelined || st->mark == SOCK_OTHER)
		return;
	struct http_event *e = new_event(sc, HTTP_REQUEST);
	fill_req(e, &st->req);
	e->h.flags |= HTTP_F_RELEASED;
	head_ctx(&e->h);
	st->held = 0;
	send(e);
}

SEC("cgroup/sock_release")
int http_release(struct bpf_sock *sk)
{
	struct http_sock *st = bpf_sk_storage_get(&socks, sk, 0, 0);
	if (!st)
		return 1;
	// User space keeps a connection's state (its owner, its queue) until
	// told the socket is gone: a socket whose messages went there says
	// so, once. Of the sockets carrying TLS, those reported as not tied
	// to a TLS probe's connection (HTTP_TLS_SEEN, sent only for a
	// target's) say so too: user space settles their count then.
	__u8 tls_seen = st->dir[0].mode == MODE_TLS && st->tls_seen;
	__u8 known = tls_seen || (st->dir[0].mode != MODE_TLS && (!filter_targets || st->mark == SOCK_TARGET));
	__u8 held = st->held && !st->pipelined;
	if (!known && !held)
		return 1;
	__u64 id = bpf_get_current_pid_tgid();
	if (filter_targets && !tls_seen && st->mark != SOCK_TARGET && !is_target(id >> 32))
		return 1;
	__u32 idx = SCRATCH_EGRESS;
	struct scratch *sc = bpf_map_lookup_elem(&scratch, &idx);
	if (!sc)
		return 1;
	__builtin_memset(&sc->ws, 0, sizeof(sc->ws));
	sc->ws.cookie = bpf_get_socket_cookie(sk);
	if (held)
		release(st, sc);
	if (known) {
		struct rec_head *h = &sc->ev.h;
		new_head(h, &sc->ws, HTTP_SOCK_CLOSE);
		send_head(h);
	}
	return 1;
}

// ---- TLS plaintext ------------------------------------------------------------

// tls_setup describes a TLS connection's state to the walk: its socket
// once known, its key; it returns the state (created when create is set).
static __always_inline struct http_sock *tls_setup(struct scratch *sc, __u64 ptr, __u8 create)
{
	struct tls_key k = {.tgid = bpf_get_current_pid_tgid() >> 32, .ptr = ptr};
	struct http_sock *st = bpf_map_lookup_elem(&tls_conns, &k);
	if (!st) {
		if (!create)
			return 0;
		__u32 zero = 0;
		struct http_sock *z = bpf_map_lookup_elem(&tls_zero, &zero);
		if (!z)
			return 0;
		long err = bpf_map_update_elem(&tls_conns, &k, z, BPF_NOEXIST);
		if (err && err != -EEXIST_) {
			count_drop(HTTP_DROP_TLS_STATE_FULL);
			return 0;
		}
		st = bpf_map_lookup_elem(&tls_conns, &k);
		if (!st)
			return 0;
		st->mark = SOCK_TARGET; // the uprobes are attached to the processes the capture is about
	}
	struct walk_state *ws = &sc->ws;
	ws->now = bpf_ktime_get_ns();
	ws->cookie = st->b_cookie;
	ws->sock_cgroup = st->b_cgroup;
	__builtin_memcpy(&ws->conn, &st->b_conn, sizeof(ws->conn));
	ws->conn_key = ptr;
	ws->flags = HTTP_F_TLS | (st->bound ? HTTP_F_BOUND : 0);
	ws->proc = 1;
	ws->owner = 0;
	ws->base = 0;
	ws->pos = 0;
	ws->done = 0;
	ws->cb_n = 0;
	return st;
}

// tls_frame frames n bytes of plaintext at buf, read from (egress = 0) or
// written to connection ptr: a byte count per direction stands for the
// TCP sequence number. A write framed at its return is dated by its first
// segment out since its entry (entry_ns), or by its entry when none left
// inside the call (a memory BIO): with a socket BIO its records left inside
// the call, and the writer may have waited for a CPU since (the peer it
// woke preempted it), or before they left.
static __always_inline void tls_frame(struct pt_regs *ctx, __u64 ptr, __u64 buf, __u64 n, __u8 egress, __u8 at_entry,
				      __u64 entry_ns)
{
	__u32 idx = SCRATCH_UPROBE;
	struct scratch *sc = bpf_map_lookup_elem(&scratch, &idx);
	if (!sc || !ptr || !buf || !n)
		return;
	struct http_sock *st = tls_setup(sc, ptr, 1);
	if (!st)
		return;
	struct walk_state *ws = &sc->ws;
	if (n > 0x7fffffff)
		n = 0x7fffffff;
	// What is read came in with the socket's last segment, or before:
	// the wire's time, not the application's.
	if (!egress && st->rx_ns && st->rx_ns < ws->now)
		ws->now = st->rx_ns;
	ws->wrote_ns = ws->now;
	if (egress && entry_ns && entry_ns < ws->now)
		ws->now = st->tx_first_ns >= entry_ns && st->tx_first_ns < ws->now ? st->tx_first_ns : entry_ns;
	ws->ubuf = buf;
	ws->len = n;
	ws->egress = egress;
	ws->owner = egress; // a TLS library's write runs in its writer's task
	struct http_dir *d = &st->dir[egress & 1];
	ws->seq = d->next_seq;
	d->next_seq += n;
	if (egress && d->is_response && d->writer_tid == (__u32)bpf_get_current_pid_tgid())
		d->written_ns = ws->wrote_ns;
	if (egress && at_entry)
		st->tx_plain += n; // a write framed at its entry: its records leave after
	user_walk_segment(ctx, st, sc);
}

// tls_release ends a TLS connection's state when its library frees it.
static __always_inline void tls_release(__u64 ptr)
{
	__u32 idx = SCRATCH_UPROBE;
	struct scratch *sc = bpf_map_lookup_elem(&scratch, &idx);
	if (!sc)
		return;
	struct http_sock *st = tls_setup(sc, ptr, 0);
	if (!st)
		return;
	release(st, sc);
	struct tls_key k = {.tgid = bpf_get_current_pid_tgid() >> 32, .ptr = ptr};
	struct http_event *e = bpf_map_lookup_elem(&tls_deferred, &k);
	if (e) {
		send(e);
		bpf_map_delete_elem(&tls_deferred, &k);
	}
	bpf_map_delete_elem(&tls_conns, &k);
	struct rec_head *h = &sc->ev.h;
	new_head(h, &sc->ws, HTTP_TLS_CLOSE);
	head_ctx(h);
	send_head(h);
}

static __always_inline struct go_key go_key_of(struct pt_regs *ctx)
{
	struct go_key k = {.tgid = bpf_get_current_pid_tgid() >> 32, .g = ctx->r14};
	return k;
}

// sock_of_fd returns the TCP socket behind file descriptor fd of the
// current task, or 0: the descriptor is looked up in the task's table and
// kept only if it is a TCP socket whose file points back to it.
static __always_inline struct sock *sock_of_fd(__s64 fd)
{
	struct task_struct *task = bpf_get_current_task_btf();
	struct fdtable *fdt = BPF_CORE_READ(task, files, fdt);
	if (!fdt || fd < 0 || fd >= BPF_CORE_READ(fdt, max_fds))
		return 0;
	struct file **fds = BPF_CORE_READ(fdt, fd);
	struct file *f = 0;
	if (bpf_probe_read_kernel(&f, sizeof(f), &fds[fd]) || !f)
		return 0;
	struct socket *sock = BPF_CORE_READ(f, private_data);
	if (!sock || BPF_CORE_READ(sock, file) != f)
		return 0;
	struct sock *sk = BPF_CORE_READ(sock, sk);
	if (!sk || BPF_CORE_READ(sk, sk_protocol) != IPPROTO_TCP_ || BPF_CORE_READ(sk, sk_type) != 1 /* SOCK_STREAM */)
		return 0;
	return sk;
}

// fd_bind ties TLS connection ptr of the current process to the socket
// behind file descriptor fd, at the socket's next segment (for a server's
// first request, the request's own when the server waits in its read).
// The connection's state is made now, so the segment finds it.
static __always_inline void fd_bind(__u64 ptr, __s64 fd)
{
	struct sock *sk = sock_of_fd(fd);
	if (!sk)
		return;
	struct tls_key k = {.tgid = bpf_get_current_pid_tgid() >> 32, .ptr = ptr};
	__u32 idx = SCRATCH_UPROBE;
	struct scratch *sc = bpf_map_lookup_elem(&scratch, &idx);
	if (!sc || !tls_setup(sc, ptr, 1))
		return;
	__u64 addr = (__u64)sk;
	bpf_map_update_elem(&tls_by_sk, &addr, &k, BPF_ANY);
}

// go_fd reads the descriptor under a Go tls.Conn: tls.Conn{conn
// net.Conn} holds a *net.TCPConn{conn{fd *netFD}}, netFD{pfd poll.FD} and
// poll.FD{fdmu (16 bytes); Sysfd int} (internal/goprobe checks these
// offsets against the DWARF of real binaries). A tls.Conn over something
// else than a *net.TCPConn gives a descriptor sock_of_fd refuses, or, at
// worst, another of the process's TCP sockets.
static __always_inline __s64 go_fd(__u64 conn)
{
	__u64 iface[2], tcp;
	__s64 fd;
	if (bpf_probe_read_user(iface, sizeof(iface), (const void *)conn) ||
	    bpf_probe_read_user(&tcp, sizeof(tcp), (const void *)iface[1]) ||
	    bpf_probe_read_user(&fd, sizeof(fd), (const void *)(tcp + 16)))
		return -1;
	return fd;
}

// go_bind ties a Go TLS connection not yet tied to a socket to the one of
// its descriptor.
static __always_inline void go_bind(__u64 conn)
{
	struct tls_key k = {.tgid = bpf_get_current_pid_tgid() >> 32, .ptr = conn};
	struct http_sock *ts = bpf_map_lookup_elem(&tls_conns, &k);
	if (ts && ts->bound)
		return;
	fd_bind(conn, go_fd(conn));
}

// tls_enter is on the entry of every TLS function (its cookie says which).
SEC("uprobe.multi")
int tls_enter(struct pt_regs *ctx)
{
	__u64 fn = bpf_get_attach_cookie(ctx);
	switch (fn) {
	case TLS_FN_SSL_READ:
	case TLS_FN_SSL_READ_EX:
	case TLS_FN_SSL_WRITE:
	case TLS_FN_SSL_WRITE_EX: {
		struct tls_task *t = bpf_task_storage_get(&tls_tasks, bpf_get_current_task_btf(), 0,
							  BPF_LOCAL_STORAGE_GET_F_CREATE);
		if (!t)
			return 0;
		t->fn = fn;
		t->key = ctx->di;
		t->buf = ctx->si;
		t->len_ptr = (fn == TLS_FN_SSL_READ_EX || fn == TLS_FN_SSL_WRITE_EX) ? ctx->cx : 0;
		if (fn == TLS_FN_SSL_WRITE || fn == TLS_FN_SSL_WRITE_EX) {
			// The plaintext counts as written before its records leave,
			// inside this call with a socket BIO (see tls_wire). Only the
			// writes of connections without a socket yet are kept for
			// tls_wire to match.
			struct tls_key k = {.tgid = bpf_get_current_pid_tgid() >> 32, .ptr = ctx->di};
			struct http_sock *st = bpf_map_lookup_elem(&tls_conns, &k);
			t->num = ctx->dx;
			t->entry_ns = bpf_ktime_get_ns();
			if (st) {
				st->tx_plain += ctx->dx;
				st->tx_first_ns = 0;
			}
			if (!st || !st->bound) {
				__u8 i = t->w_next++ % TLS_WRITES;
				t->w_key[i] = ctx->di;
				t->w_len[i] = ctx->dx;
			}
		}
		return 0;
	}
	case TLS_FN_SSL_FREE:
		tls_release(ctx->di);
		return 0;
	case TLS_FN_GO_READ: {
		// Register ABI: the receiver in RAX, b's pointer and length in
		// RBX and RCX.
		go_bind(ctx->ax);
		struct go_key k = go_key_of(ctx);
		struct go_call c = {.conn = ctx->ax, .buf = ctx->bx};
		bpf_map_update_elem(&go_calls, &k, &c, BPF_ANY);
		return 0;
	}
	case TLS_FN_GO_WRITE:
		// Framed at the entry (b is complete): a write that fails is
		// still counted as sent.
		tls_frame(ctx, ctx->ax, ctx->bx, ctx->cx, 1, 1, 0);
		go_bind(ctx->ax);
		return 0;
	case TLS_FN_GO_CLOSE:
		tls_release(ctx->ax);
		return 0;
	case TLS_FN_SSL_SET_FD:
		fd_bind(ctx->di, (__s32)ctx->si);
		return 0;
	}
	return 0;
}

// tls_ret is on OpenSSL's returns (uretprobes) and on the RET instructions
// of Go's (*Conn).Read (uprobes: a uretprobe would break Go's moving
// stacks).
SEC("uprobe.multi")
int tls_ret(struct pt_regs *ctx)
{
	__u64 cookie = bpf_get_attach_cookie(ctx);
	__u64 fn = cookie & 0xff;
	if (fn == TLS_FN_GO_READ_RET) {
		struct go_key k = go_key_of(ctx);
		struct go_call *c = bpf_map_lookup_elem(&go_calls, &k);
		__u64 conn, buf;
		if (c) {
			conn = c->conn;
			buf = c->buf;
			bpf_map_delete_elem(&go_calls, &k);
		} else {
			// A read that began before the probes were attached (the
			// connection's reader waits in Read): its entry was not seen.
			// Go's register ABI reserves spill slots for the arguments
			// in the caller's frame, and Read stores its receiver and b
			// there on entry, so at RET they are just above the return
			// address (user space checked the prologue: TLS_FN_SPILLS).
			// Used only for a connection whose socket checks out.
			__u64 spill[2];
			if (!(cookie & TLS_FN_SPILLS) ||
			    bpf_probe_read_user(spill, sizeof(spill), (const void *)(ctx->sp + 8)))
				return 0;
			conn = spill[0];
			buf = spill[1];
			if (!sock_of_fd(go_fd(conn)))
				return 0;
			go_bind(conn);
		}
		__s64 n = ctx->ax;
		if (n > 0)
			tls_frame(ctx, conn, buf, n, 0, 0, 0);
		return 0;
	}
	struct tls_task *t = bpf_task_storage_get(&tls_tasks, bpf_get_current_task_btf(), 0, 0);
	if (!t || !t->fn)
		return 0;
	__u8 call = t->fn;
	__u64 key = t->key, buf = t->buf, len_ptr = t->len_ptr;
	t->fn = 0;
	__u8 egress = call == TLS_FN_SSL_WRITE || call == TLS_FN_SSL_WRITE_EX;
	__s64 ret = (__s32)ctx->ax;
	__u64 n = 0;
	if (call == TLS_FN_SSL_READ_EX || call == TLS_FN_SSL_WRITE_EX) {
		if (ret == 1 && len_ptr && bpf_probe_read_user(&n, sizeof(n), (const void *)len_ptr)) {
			count_drop(HTTP_DROP_TLS_READ_FAULT);
			return 0;
		}
		if (ret != 1)
			n = 0;
	} else if (ret > 0) {
		n = ret;
	}
	if (egress && n < t->num) {
		// Fewer bytes written than asked for (or none): they were counted
		// at the entry.
		struct tls_key k = {.tgid = bpf_get_current_pid_tgid() >> 32, .ptr = key};
		struct http_sock *st = bpf_map_lookup_elem(&tls_conns, &k);
		__u64 d = t->num - n;
		if (st)
			st->tx_plain = st->tx_plain > d ? st->tx_plain - d : 0;
	}
	if (n > 0)
		tls_frame(ctx, key, buf, n, egress, 0, egress ? t->entry_ns : 0);
	return 0;
}

// ---- Names of HTTP/2 streams in Go programs --------------------------------------

// Which function a go_h2_names uprobe is on (its cookie).
enum go_h2_fn {
	GO_H2_META_RBX = 1,   // func(recv, frame *MetaHeadersFrame, ...): grpc-go's (*http2Client).operateHeaders, (*http2Server).operateHeaders before v1.60, net/http's processHeaders
	GO_H2_META_RDI = 2,   // func(recv, ctx context.Context, frame *MetaHeadersFrame, ...): grpc-go's (*http2Server).operateHeaders since v1.60
	GO_H2_WRITE_HEADER = 3, // grpc-go's (*loopyWriter).writeHeader(streamID uint32, endStream bool, hf []hpack.HeaderField, onWrite func())
	GO_H2_INCOMING = 16,  // flag: fields read from the peer (else written to it)
	GO_H2_SERVER = 32,    // flag: the function is a server's
};
const enum go_h2_fn *unused_go_h2_fn __attribute__((unused));

#define GO_MAX_FIELDS 32

// hpack.HeaderField{Name, Value string; Sensitive bool}.
struct go_field {
	__u64 name, name_len, value, value_len, sensitive;
};

struct go_scratch {
	struct go_h2_event ev;
	__u64 fields;
	__u64 nfields;
	struct go_field f;
	char name[16] __attribute__((aligned(8)));
	char num[8];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct go_scratch);
} go_scratch SEC(".maps");

// copy_str reads a Go string's bytes (at most max-1) into dst; it returns
// the length kept.
static __always_inline __u16 copy_str(char *dst, __u32 max, __u64 ptr, __u64 len)
{
	if (len == 0)
		return 0;
	if (len > max - 1)
		len = max - 1;
	__u32 n = len;
	n -= 1;
	asm volatile("%[n] &= 0xff" : [n] "+r"(n));
	n += 1;
	if (n > max || bpf_probe_read_user(dst, n, (const void *)ptr))
		return 0;
	return n;
}

// read_num parses a short decimal header value (:status, grpc-status).
static __always_inline __s32 read_num(struct go_scratch *s)
{
	__u64 n = s->f.value_len;
	if (n == 0 || n > 4 || bpf_probe_read_user(s->num, 4, (const void *)s->f.value))
		return -1;
	__s32 v = 0;
	for (int i = 0; i < 4; i++) {
		if (i >= n)
			break;
		char c = s->num[i];
		if (c < '0' || c > '9')
			return -1;
		v = v * 10 + (c - '0');
	}
	return v;
}

// field_step looks at one header field: only :method, :path, :status,
// content-type and grpc-status are kept.
static long field_step(__u32 i, void *ctx)
{
	struct go_scratch *s = *(struct go_scratch **)ctx;
	if (i >= s->nfields)
		return 1;
	if (bpf_probe_read_user(&s->f, sizeof(s->f), (const void *)(s->fields + i * sizeof(struct go_field))))
		return 1;
	__u64 nl = s->f.name_len;
	if (nl != 5 && nl != 7 && nl != 11 && nl != 12)
		return 0;
	__builtin_memset(s->name, 0, 16);
	if (bpf_probe_read_user(s->name, nl, (const void *)s->f.name))
		return 0;
	__u64 w0 = *(__u64 *)s->name, w1 = *(__u64 *)(s->name + 8);
	struct go_h2_event *e = &s->ev;
	// ":path", ":method", ":status", "grpc-status", "content-type" as
	// little-endian words.
	if (nl == 5 && w0 == 0x687461703aULL) {
		e->path_len = copy_str(e->path, LINE_MAX, s->f.value, s->f.value_len);
	} else if (nl == 7 && w0 == 0x646f6874656d3aULL) {
		e->method_len = copy_str(e->method, sizeof(e->method), s->f.value, s->f.value_len);
	} else if (nl == 7 && w0 == 0x7375746174733aULL) {
		__s32 v = read_num(s);
		e->status = v < 0 ? 0 : v;
	} else if (nl == 11 && w0 == 0x6174732d63707267ULL && w1 == 0x737574ULL) {
		e->grpc_status = read_num(s);
	} else if (nl == 12 && w0 == 0x2d746e65746e6f63ULL && w1 == 0x65707974ULL) {
		e->ctype_len = copy_str(e->ctype, sizeof(e->ctype), s->f.value, s->f.value_len);
	}
	return 0;
}

// go_h2_names reads the header fields of an HTTP/2 HEADERS frame where a
// Go program's HTTP/2 code holds them decoded (incoming) or is about to
// encode them (outgoing): the names of streams whose HPACK context began
// before the window. Entry uprobes only.
SEC("uprobe.multi")
int go_h2_names(struct pt_regs *ctx)
{
	__u64 cookie = bpf_get_attach_cookie(ctx);
	__u32 zero = 0;
	struct go_scratch *s = bpf_map_lookup_elem(&go_scratch, &zero);
	if (!s)
		return 0;
	struct go_h2_event *e = &s->ev;
	__builtin_memset(e, 0, sizeof(*e) - LINE_MAX);
	e->h.kind = HTTP_H2_NAMES;
	head_ctx(&e->h);
	e->time_ns = bpf_ktime_get_ns();
	e->grpc_status = -1;
	e->fn = cookie;
	__u32 fn = cookie & 15;
	// Every register is read once, before any choice: the verifier
	// refuses a context access at a computed offset.
	__u64 rbx = ctx->bx, rcx = ctx->cx, rdi = ctx->di, rsi = ctx->si;
	barrier_var(rbx);
	barrier_var(rdi);
	if (fn == GO_H2_WRITE_HEADER) {
		e->stream = rbx;
		e->end_stream = rcx & 1;
		s->fields = rdi;
		s->nfields = rsi;
	} else {
		// *MetaHeadersFrame{*HeadersFrame; Fields []hpack.HeaderField;
		// ...} and HeadersFrame{FrameHeader{valid bool; Type, Flags uint8;
		// Length, StreamID uint32}; ...}.
		__u64 frame = fn == GO_H2_META_RDI ? rdi : rbx;
		__u64 meta[3];
		__u8 fh[12];
		if (bpf_probe_read_user(meta, sizeof(meta), (const void *)frame) ||
		    bpf_probe_read_user(fh, sizeof(fh), (const void *)meta[0]))
			return 0;
		// x/net marks the HeadersFrame invalid (valid = false) once its
		// block is decoded, before the MetaHeadersFrame reaches these
		// functions: only the type and stream are checked (a wrong
		// register, from a version not known, fails here).
		e->stream = *(__u32 *)&fh[8];
		if (fh[1] != H2_HEADERS || e->stream == 0 || e->stream > 0x7fffffff)
			return 0;
		e->end_stream = fh[2] & H2_END_STREAM;
		s->fields = meta[1];
		s->nfields = meta[2];
	}
	if (s->nfields > GO_MAX_FIELDS)
		s->nfields = GO_MAX_FIELDS;
	bpf_loop(GO_MAX_FIELDS, field_step, &s, 0);
	__u64 n = sizeof(*e) - LINE_MAX + e->path_len;
	if (n > sizeof(*e))
		n = sizeof(*e);
	if (bpf_ringbuf_output(&http_events, e, n, submit_flags(&http_events)))
		count_drop(HTTP_DROP_RINGBUF);
	return 0;
}

// ---- Where to attach ----------------------------------------------------------

// A socket belongs to the cgroup of the task that created it, an accepted
// one to its listener's, and the cgroup_skb programs run for the sockets
// of the cgroups they are attached to. A capture of target processes
// attaches them to the targets' own cgroups and to the cgroups of the TCP
// sockets the targets hold: a listener created elsewhere (systemd socket
// activation, a supervisor passing it down) puts its connections in its
// creator's cgroup. This iterator lists the latter, one record per socket
// (struct sock_cgroup), for user space to read once at the start and again
// during the window.
struct sock_cgroup {
	__u32 tgid;
	__u32 fd;
	__u64 cgroup;      // the socket's
	__u64 task_cgroup; // the target's
};
const struct sock_cgroup *unused_sock_cgroup __attribute__((unused));

SEC("iter/task_file")
int http_sock_cgroups(struct bpf_iter__task_file *ctx)
{
	struct task_struct *task = ctx->task;
	struct file *file = ctx->file;
	if (!task || !file || !is_target(task->tgid))
		return 0;
	struct socket *sock = bpf_sock_from_file(file);
	if (!sock)
		return 0;
	struct sock *sk = sock->sk;
	if (!sk || sk->sk_protocol != IPPROTO_TCP_)
		return 0;
	struct cgroup *cg = sk->sk_cgrp_data.cgroup;
	if (!cg)
		return 0;
	struct sock_cgroup rec = {.tgid = task->tgid, .fd = ctx->fd, .cgroup = cg->kn->id,
				  .task_cgroup = task->cgroups->dfl_cgrp->kn->id};
	bpf_seq_write(ctx->meta->seq, &rec, sizeof(rec));
	return 0;
}
