//go:build ignore

// HTTP/1.x at the socket layer: cgroup_skb programs on the cgroup v2 root
// see every TCP segment of every socket on the host, egress in the sending
// task's context. Only segments whose payload starts like a request line
// ("GET ", "POST", ...) or a status line ("HTTP/1.") are sent to user space,
// with the first bytes of their payload; everything else costs a header
// parse. No syscall tracepoint is enabled (that would slow every syscall).
#include "common.h"
#include <bpf/bpf_endian.h>

char LICENSE[] SEC("license") = "Dual BSD/GPL";

#define ETH_P_IP 0x0800
#define ETH_P_IPV6 0x86DD
#define IPPROTO_TCP_ 6
#define HTTP_PAYLOAD 256

enum http_drop {
	HTTP_DROP_RINGBUF = 0,
	HTTP_DROP_PENDING_FULL = 1, // no room to hold a request in the kernel
	HTTP_DROP_MAX = 2,
};
// Kept in BTF for bpf2go's -type: the Go constants come from here.
const enum http_drop *unused_http_drop __attribute__((unused));

DECLARE_DROPS(HTTP_DROP_MAX);

enum http_kind {
	HTTP_REQUEST = 1,  // a request head, on its own
	HTTP_RESPONSE = 2, // a response head, on its own
	HTTP_PAIR = 3,     // a response head with its request (req below)
};
// Kept in BTF for bpf2go's -type: the Go constants come from here.
const enum http_kind *unused_http_kind __attribute__((unused));

// One message head as one socket saw it.
struct http_msg {
	__u64 time_ns;
	__u64 current_cgroup; // cgroup of the task the program ran in
	__u32 pid;            // task the program ran in (egress: the sender)
	__u32 tid;
	__u32 seg_len;        // TCP payload bytes in this segment
	__u32 copied;         // bytes of payload copied below
	__u8 egress;
	__u8 released;        // sent when the socket was released; pid closed it
	__u8 pad[2];
	__u32 seq;            // TCP sequence number of the segment (host order)
	char payload[HTTP_PAYLOAD];
};

// Ring records: a single message (kind 1 or 2) is the record up to req;
// a pair (kind 3) carries the request too.
struct http_event {
	__u64 cookie;         // socket cookie: the connection, per socket
	__u64 sock_cgroup;    // cgroup of the socket's owner (reliable)
	__u16 sport;          // source and destination of msg, host byte order
	__u16 dport;
	__u8 family;          // 4 or 6
	__u8 kind;
	__u8 pipelined;       // in the pending map: this socket pipelines
	__u8 pad;
	__u8 saddr[16];
	__u8 daddr[16];
	struct http_msg msg;
	struct http_msg req;
};

#define HTTP_SINGLE_SIZE (sizeof(struct http_event) - sizeof(struct http_msg))

const struct http_event *unused_http_event __attribute__((unused));

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 8 * 1024 * 1024);
} http_events SEC(".maps");

// pending holds, per socket, the request head waiting for its response,
// so a request/response exchange costs user space one record instead of
// two (the recorder's work per record dominated the overhead). Values are
// single-message records (kind 1). A socket that sends a second request
// before the first is answered (pipelining) is marked and from then on
// every message goes to user space on its own, which pairs them in order.
// Entries leave on the response, or when the socket is released.
// A pending value is a single-message record: an http_event without req
// (copying the unused half on every request cost measurably).
struct http_pending {
	__u8 bytes[HTTP_SINGLE_SIZE];
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, __u64);
	__type(value, struct http_pending);
} pending SEC(".maps");

// target_socks marks, in a capture restricted to target processes, the
// sockets seen sending in a target's context (egress runs in the sender's
// context when it is a write; a softirq may also send on top of another
// task, so a mark can be wrong, never missing for a socket its owner
// writes to). A request/response pair on an unmarked socket costs no ring
// record: most of a targeted capture's traffic on a busy node is other
// processes'. User space still checks the owner of what does arrive.
// Once an exchange on a socket was found not to be a target's, the socket
// is marked SOCK_OTHER and its later requests are not even held, until a
// target is seen writing on it.
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, __u64);
	__type(value, __u8);
} target_socks SEC(".maps");

enum sock_mark {
	SOCK_UNKNOWN = 0,
	SOCK_TARGET = 1,
	SOCK_OTHER = 2,
};

static __always_inline __u8 sock_mark(struct __sk_buff *skb, __u64 cookie, __u8 egress)
{
	if (!filter_targets)
		return SOCK_TARGET;
	__u8 *m = bpf_map_lookup_elem(&target_socks, &cookie);
	__u8 mark = m ? *m : SOCK_UNKNOWN;
	if (mark == SOCK_TARGET)
		return SOCK_TARGET;
	if (!egress || bpf_get_current_cgroup_id() != bpf_skb_cgroup_id(skb) ||
	    !is_target(bpf_get_current_pid_tgid() >> 32))
		return mark;
	__u8 target = SOCK_TARGET;
	bpf_map_update_elem(&target_socks, &cookie, &target, BPF_ANY);
	return SOCK_TARGET;
}

// scratch builds a pending value off the 512-byte BPF stack.
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct http_pending);
} scratch SEC(".maps");

// classify recognises the first four bytes of an HTTP/1.x message.
static __always_inline __u8 classify(const char *p)
{
	// Compare as chars: clear to read and the compiler folds it.
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

// load_head copies the first bytes of the payload at off into m.
static __always_inline void load_head(struct __sk_buff *skb, __u32 off, struct http_msg *m)
{
	__u64 n = m->seg_len;
	if (n > HTTP_PAYLOAD - 1)
		n = HTTP_PAYLOAD - 1;
	// Opaque to the compiler, so the verifier sees the mask and the bound
	// check below on the very register passed as the size.
	asm volatile("%[n] &= 0xff" : [n] "+r"(n));
	m->copied = 0;
	if (n >= 16 && bpf_skb_load_bytes(skb, off, m->payload, n) == 0)
		m->copied = n;
}

static __always_inline void fill_msg(struct __sk_buff *skb, struct http_msg *m, __u8 egress, __u32 seg_len, __u32 seq)
{
	__u64 id = bpf_get_current_pid_tgid();
	m->time_ns = bpf_ktime_get_ns();
	m->current_cgroup = bpf_get_current_cgroup_id();
	m->pid = id >> 32;
	m->tid = (__u32)id;
	m->seg_len = seg_len;
	m->egress = egress;
	m->released = 0;
	m->seq = seq;
}

// emit_single sends a pending request (a kind-1 record) to user space.
static __always_inline void emit_single(const struct http_event *src)
{
	struct http_event *e = bpf_ringbuf_reserve(&http_events, HTTP_SINGLE_SIZE, 0);
	if (!e) {
		count_drop(HTTP_DROP_RINGBUF);
		return;
	}
	__builtin_memcpy(e, src, HTTP_SINGLE_SIZE);
	e->pipelined = 0;
	bpf_ringbuf_submit(e, submit_flags(&http_events));
}

struct conn_head {
	__u32 seq;
	__u16 sport, dport;
	__u8 family;
	__u8 saddr[16], daddr[16];
};

static __always_inline void fill_head(struct http_event *e, __u64 cookie, __u64 sock_cgroup, __u8 kind, const struct conn_head *h)
{
	e->cookie = cookie;
	e->sock_cgroup = sock_cgroup;
	e->sport = h->sport;
	e->dport = h->dport;
	e->family = h->family;
	e->kind = kind;
	e->pipelined = 0;
	e->pad = 0;
	__builtin_memcpy(e->saddr, h->saddr, 16);
	__builtin_memcpy(e->daddr, h->daddr, 16);
}

// single sends the current message to user space on its own.
static __always_inline void single(struct __sk_buff *skb, __u32 off, __u64 cookie, __u8 kind, __u8 egress, __u32 seg_len, const struct conn_head *h)
{
	struct http_event *e = bpf_ringbuf_reserve(&http_events, HTTP_SINGLE_SIZE, 0);
	if (!e) {
		count_drop(HTTP_DROP_RINGBUF);
		return;
	}
	fill_head(e, cookie, bpf_skb_cgroup_id(skb), kind, h);
	fill_msg(skb, &e->msg, egress, seg_len, h->seq);
	load_head(skb, off, &e->msg);
	bpf_ringbuf_submit(e, submit_flags(&http_events));
}

static __always_inline void on_request(struct __sk_buff *skb, __u32 off, __u64 cookie, __u8 egress, __u32 seg_len, const struct conn_head *h, __u8 mark)
{
	if (mark == SOCK_OTHER)
		return;
	struct http_event *old = (struct http_event *)bpf_map_lookup_elem(&pending, &cookie);
	if (old) {
		// TCP resends a segment the peer has not acknowledged in time
		// (tail loss probes fire after a few ms on a busy receiver): the
		// same request again, not a pipelined second one.
		if (old->msg.seq == h->seq && old->msg.egress == egress)
			return;
		if (!old->pipelined) {
			// A second request before the first was answered: hand both
			// to user space, which keeps a queue per socket, and keep
			// the socket marked so its responses go there too.
			emit_single(old);
			old->pipelined = 1;
		}
		single(skb, off, cookie, HTTP_REQUEST, egress, seg_len, h);
		return;
	}
	__u32 zero = 0;
	struct http_event *e = (struct http_event *)bpf_map_lookup_elem(&scratch, &zero);
	if (!e)
		return;
	fill_head(e, cookie, bpf_skb_cgroup_id(skb), HTTP_REQUEST, h);
	fill_msg(skb, &e->msg, egress, seg_len, h->seq);
	load_head(skb, off, &e->msg);
	if (bpf_map_update_elem(&pending, &cookie, e, BPF_NOEXIST)) {
		// Full (or raced): send it on its own rather than lose it.
		count_drop(HTTP_DROP_PENDING_FULL);
		emit_single(e);
	}
}

static __always_inline void on_response(struct __sk_buff *skb, __u32 off, __u64 cookie, __u8 egress, __u32 seg_len, const struct conn_head *h, __u8 mark)
{
	struct http_event *req = (struct http_event *)bpf_map_lookup_elem(&pending, &cookie);
	if (req && !req->pipelined && mark != SOCK_TARGET) {
		// Another process's exchange: forget it without a record, and
		// its socket's next ones too.
		bpf_map_delete_elem(&pending, &cookie);
		__u8 other = SOCK_OTHER;
		bpf_map_update_elem(&target_socks, &cookie, &other, BPF_ANY);
		return;
	}
	if (!req && mark == SOCK_OTHER)
		return;
	if (!req || req->pipelined) {
		single(skb, off, cookie, HTTP_RESPONSE, egress, seg_len, h);
		return;
	}
	// "HTTP/1.x 1xx": an interim response (100 Continue); the final one
	// follows and answers the same request.
	char code;
	if (bpf_skb_load_bytes(skb, off + 9, &code, 1) == 0 && code == '1')
		return;
	struct http_event *e = bpf_ringbuf_reserve(&http_events, sizeof(*e), 0);
	if (!e) {
		count_drop(HTTP_DROP_RINGBUF);
		bpf_map_delete_elem(&pending, &cookie);
		return;
	}
	fill_head(e, cookie, bpf_skb_cgroup_id(skb), HTTP_PAIR, h);
	fill_msg(skb, &e->msg, egress, seg_len, h->seq);
	load_head(skb, off, &e->msg);
	__builtin_memcpy(&e->req, &req->msg, sizeof(e->req));
	bpf_map_delete_elem(&pending, &cookie);
	bpf_ringbuf_submit(e, submit_flags(&http_events));
}

static __always_inline int handle(struct __sk_buff *skb, __u8 egress)
{
	struct conn_head h = {};
	__u32 off;
	if (skb->protocol == bpf_htons(ETH_P_IP)) {
		struct iphdr ip;
		if (bpf_skb_load_bytes(skb, 0, &ip, sizeof(ip)))
			return 1;
		if (ip.protocol != IPPROTO_TCP_)
			return 1;
		off = ip.ihl * 4;
		__builtin_memcpy(h.saddr, &ip.saddr, 4);
		__builtin_memcpy(h.daddr, &ip.daddr, 4);
		h.family = 4;
	} else if (skb->protocol == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr ip6;
		if (bpf_skb_load_bytes(skb, 0, &ip6, sizeof(ip6)))
			return 1;
		// Extension headers are rare on TCP; such segments are skipped.
		if (ip6.nexthdr != IPPROTO_TCP_)
			return 1;
		off = sizeof(ip6);
		__builtin_memcpy(h.saddr, &ip6.saddr, 16);
		__builtin_memcpy(h.daddr, &ip6.daddr, 16);
		h.family = 6;
	} else {
		return 1;
	}
	struct tcphdr tcp;
	if (bpf_skb_load_bytes(skb, off, &tcp, sizeof(tcp)))
		return 1;
	__u32 payload = off + tcp.doff * 4;
	if (skb->len < payload + 16) // shorter than any request or status line
		return 1;
	char head[4];
	if (bpf_skb_load_bytes(skb, payload, head, sizeof(head)))
		return 1;
	__u8 kind = classify(head);
	if (!kind)
		return 1;
	h.seq = bpf_ntohl(tcp.seq);
	h.sport = bpf_ntohs(tcp.source);
	h.dport = bpf_ntohs(tcp.dest);
	__u64 cookie = bpf_get_socket_cookie(skb);
	__u32 seg_len = skb->len - payload;
	// Marks the socket on a target's writes, requests (a client) or
	// responses (a server).
	__u8 mark = sock_mark(skb, cookie, egress);
	if (kind == HTTP_REQUEST)
		on_request(skb, payload, cookie, egress, seg_len, &h, mark);
	else
		on_response(skb, payload, cookie, egress, seg_len, &h, mark);
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

// A socket closing with a request still unanswered: hand the request to
// user space (it is kept as a request without response) and free the entry.
SEC("cgroup/sock_release")
int http_release(struct bpf_sock *sk)
{
	__u64 cookie = bpf_get_socket_cookie(sk);
	struct http_event *req = (struct http_event *)bpf_map_lookup_elem(&pending, &cookie);
	if (!req)
		return 1;
	__u64 id = bpf_get_current_pid_tgid();
	__u8 *m = bpf_map_lookup_elem(&target_socks, &cookie);
	bool targeted = !filter_targets || is_target(id >> 32) || (m && *m == SOCK_TARGET);
	bpf_map_delete_elem(&target_socks, &cookie);
	if (!req->pipelined && targeted) {
		// The release runs in the context of the task closing the socket:
		// tell user space, which may not know the owner yet (a request on
		// a fresh connection that is never answered).
		req->msg.pid = id >> 32;
		req->msg.tid = (__u32)id;
		req->msg.current_cgroup = bpf_get_current_cgroup_id();
		req->msg.released = 1;
		emit_single(req);
	}
	bpf_map_delete_elem(&pending, &cookie);
	return 1;
}
