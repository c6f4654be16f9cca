//go:build ignore

// Allocation tracing: uprobes on the C allocator of each targeted process
// (attached per pid by user space), uretprobes for the returned address.
// In-flight calls are keyed per thread, so concurrent allocations in many
// threads pair correctly. The user stack is taken at the return, where its
// leaf is the allocation's call site.
#include "common.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

#define MEM_STACK_DEPTH 64

enum mem_kind {
	MEM_MALLOC = 1,
	MEM_CALLOC = 2,
	MEM_REALLOC = 3,
	MEM_FREE = 4,
	MEM_MEMALIGN = 5,
	MEM_POSIX_MEMALIGN = 6,
};

enum mem_drop {
	MEM_DROP_RINGBUF = 0,
	MEM_DROP_INFLIGHT_FULL = 1,
	MEM_DROP_STACK = 2,
	MEM_DROP_MAX = 3,
};

DECLARE_DROPS(MEM_DROP_MAX);

struct mem_event {
	__u64 time_ns;
	__u64 addr;     // returned / freed address
	__u64 old_addr; // realloc: the block given back
	__u64 size;
	__u32 pid;
	__u32 tid;
	__u32 kind;
	__s32 ustack_bytes;
	__u64 ustack[MEM_STACK_DEPTH];
};

const struct mem_event *unused_mem_event __attribute__((unused));

struct inflight {
	__u64 size;
	__u64 old_addr; // realloc's pointer, or posix_memalign's memptr
	__u32 kind;
	__u32 pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, __u32); // tid
	__type(value, struct inflight);
} inflight SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	// Allocation storms are bursty and every event matters for exact
	// figures: a roomy ring rides out a recorder that falls behind.
	__uint(max_entries, 32 * 1024 * 1024);
} mem_events SEC(".maps");

static __always_inline int enter(__u32 kind, __u64 size, __u64 old)
{
	__u64 id = bpf_get_current_pid_tgid();
	if (!is_target(id >> 32))
		return 0;
	__u32 tid = (__u32)id;
	struct inflight f = {.size = size, .old_addr = old, .kind = kind};
	if (bpf_map_update_elem(&inflight, &tid, &f, BPF_ANY))
		count_drop(MEM_DROP_INFLIGHT_FULL);
	return 0;
}

SEC("uprobe")
int BPF_KPROBE(malloc_enter, __u64 size) { return enter(MEM_MALLOC, size, 0); }

SEC("uprobe")
int BPF_KPROBE(calloc_enter, __u64 n, __u64 size) { return enter(MEM_CALLOC, n * size, 0); }

SEC("uprobe")
int BPF_KPROBE(realloc_enter, __u64 ptr, __u64 size) { return enter(MEM_REALLOC, size, ptr); }

SEC("uprobe")
int BPF_KPROBE(reallocarray_enter, __u64 ptr, __u64 n, __u64 size) { return enter(MEM_REALLOC, n * size, ptr); }

// aligned_alloc(align, size) and memalign(align, size).
SEC("uprobe")
int BPF_KPROBE(memalign_enter, __u64 align, __u64 size) { return enter(MEM_MEMALIGN, size, 0); }

// valloc(size) and pvalloc(size).
SEC("uprobe")
int BPF_KPROBE(valloc_enter, __u64 size) { return enter(MEM_MEMALIGN, size, 0); }

SEC("uprobe")
int BPF_KPROBE(posix_memalign_enter, __u64 memptr, __u64 align, __u64 size)
{
	return enter(MEM_POSIX_MEMALIGN, size, memptr);
}

// Frees carry no stack, so they reserve only the head of the event: they
// are the most frequent event and the ring's bandwidth matters.
#define MEM_EVENT_HEAD __builtin_offsetof(struct mem_event, ustack)

static __always_inline struct mem_event *reserve(__u64 size)
{
	struct mem_event *e = bpf_ringbuf_reserve(&mem_events, size, 0);
	if (!e)
		count_drop(MEM_DROP_RINGBUF);
	return e;
}

SEC("uretprobe")
int BPF_KRETPROBE(alloc_return, __u64 ret)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u32 tid = (__u32)id;
	struct inflight *f = bpf_map_lookup_elem(&inflight, &tid);
	if (!f)
		return 0;
	struct inflight in = *f;
	bpf_map_delete_elem(&inflight, &tid);
	__u64 addr = ret;
	if (in.kind == MEM_POSIX_MEMALIGN) {
		// Returns an error code; the block is written to *memptr.
		if (ret != 0 || bpf_probe_read_user(&addr, sizeof(addr), (void *)in.old_addr))
			return 0;
		in.old_addr = 0;
	}
	// A failed allocation allocates nothing (a failed realloc keeps the
	// old block).
	if (addr == 0)
		return 0;
	struct mem_event *e = reserve(sizeof(struct mem_event));
	if (!e)
		return 0;
	e->time_ns = bpf_ktime_get_ns();
	e->addr = addr;
	e->old_addr = in.old_addr;
	e->size = in.size;
	e->pid = id >> 32;
	e->tid = tid;
	e->kind = in.kind;
	e->ustack_bytes = bpf_get_stack(ctx, e->ustack, sizeof(e->ustack), BPF_F_USER_STACK);
	if (e->ustack_bytes <= 0)
		count_drop(MEM_DROP_STACK);
	bpf_ringbuf_submit(e, submit_flags(&mem_events));
	return 0;
}

// free may be probed after its first instruction (see capture/mem.go): the
// argument register is still intact there.
SEC("uprobe")
int BPF_KPROBE(free_enter, __u64 ptr)
{
	__u64 id = bpf_get_current_pid_tgid();
	if (ptr == 0 || !is_target(id >> 32))
		return 0;
	struct mem_event *e = reserve(MEM_EVENT_HEAD);
	if (!e)
		return 0;
	e->time_ns = bpf_ktime_get_ns();
	e->addr = ptr;
	e->old_addr = 0;
	e->size = 0;
	e->pid = id >> 32;
	e->tid = (__u32)id;
	e->kind = MEM_FREE;
	e->ustack_bytes = 0;
	bpf_ringbuf_submit(e, submit_flags(&mem_events));
	return 0;
}
