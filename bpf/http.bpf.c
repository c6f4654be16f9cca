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
	HTTP_DROP_MAX = 1,
};

DECLARE_DROPS(HTTP_DROP_MAX);

enum http_kind {
	HTTP_REQUEST = 1,
	HTTP_RESPONSE = 2,
};

struct http_event {
	__u64 time_ns;
	__u64 cookie;         // socket cookie: the connection, per socket
	__u64 current_cgroup; // cgroup of the task the program ran in
	__u64 sock_cgroup;    // cgroup of the socket's owner (reliable)
	__u32 pid;            // task the program ran in (egress: the sender)
	__u32 tid;
	__u32 seg_len;        // TCP payload bytes in this segment
	__u16 sport;          // source and destination, host byte order
	__u16 dport;
	__u8 egress;
	__u8 family;          // 4 or 6
	__u8 kind;
	__u8 pad;
	__u32 copied;         // bytes of payload copied below
	__u8 saddr[16];
	__u8 daddr[16];
	char payload[HTTP_PAYLOAD];
};

const struct http_event *unused_http_event __attribute__((unused));

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 8 * 1024 * 1024);
} http_events SEC(".maps");

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

static __always_inline int handle(struct __sk_buff *skb, __u8 egress)
{
	__u8 saddr[16] = {}, daddr[16] = {};
	__u32 off;
	__u8 family;
	if (skb->protocol == bpf_htons(ETH_P_IP)) {
		struct iphdr ip;
		if (bpf_skb_load_bytes(skb, 0, &ip, sizeof(ip)))
			return 1;
		if (ip.protocol != IPPROTO_TCP_)
			return 1;
		off = ip.ihl * 4;
		__builtin_memcpy(saddr, &ip.saddr, 4);
		__builtin_memcpy(daddr, &ip.daddr, 4);
		family = 4;
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
		family = 6;
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

	struct http_event *e = bpf_ringbuf_reserve(&http_events, sizeof(*e), 0);
	if (!e) {
		count_drop(HTTP_DROP_RINGBUF);
		return 1;
	}
	__u64 id = bpf_get_current_pid_tgid();
	e->time_ns = bpf_ktime_get_ns();
	e->cookie = bpf_get_socket_cookie(skb);
	e->current_cgroup = bpf_get_current_cgroup_id();
	e->sock_cgroup = bpf_skb_cgroup_id(skb);
	e->pid = id >> 32;
	e->tid = (__u32)id;
	e->seg_len = skb->len - payload;
	e->sport = bpf_ntohs(tcp.source);
	e->dport = bpf_ntohs(tcp.dest);
	e->egress = egress;
	e->family = family;
	e->kind = kind;
	e->pad = 0;
	__builtin_memcpy(e->saddr, saddr, 16);
	__builtin_memcpy(e->daddr, daddr, 16);
	__u64 n = e->seg_len;
	if (n > HTTP_PAYLOAD - 1)
		n = HTTP_PAYLOAD - 1;
	// Opaque to the compiler, so the verifier sees the mask and the bound
	// check below on the very register passed as the size.
	asm volatile("%[n] &= 0xff" : [n] "+r"(n));
	e->copied = 0;
	if (n >= 16 && bpf_skb_load_bytes(skb, payload, e->payload, n) == 0)
		e->copied = n;
	bpf_ringbuf_submit(e, submit_flags(&http_events));
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
