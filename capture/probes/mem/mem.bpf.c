//go:build ignore

// Allocation tracing: uprobes on the C allocator of each targeted process
// (attached per pid by user space), uretprobes for the returned address,
// and the mmap/munmap/mremap/brk syscall tracepoints for memory a process
// maps itself. In-flight calls are keyed per thread, so concurrent
// allocations in many threads pair correctly. The user stack is taken at
// the return, where its leaf is the allocation's call site.
//
// --mem-sample N turns on Poisson byte sampling, decided here so that an
// unsampled allocation costs no ring event and no stack walk: each CPU
// counts down an exponentially distributed number of bytes (mean N); the
// allocation that crosses zero is sampled. By memorylessness an allocation
// of s bytes is then sampled with probability 1 - exp(-s/N), independent of
// the others, and user space gives the row the weight 1/that.
// Frees are only sent for sampled blocks, which the `sampled` set holds.
#include "common.h"
#include "user_stack.h"
#include "sample.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

#define MEM_STACK_DEPTH USER_FP_DEPTH

enum mem_kind {
	MEM_MALLOC = 1,
	MEM_CALLOC = 2,
	MEM_REALLOC = 3,
	MEM_FREE = 4,
	MEM_MEMALIGN = 5,
	MEM_POSIX_MEMALIGN = 6,
	MEM_MMAP = 7,
	MEM_MUNMAP = 8,
	MEM_MREMAP = 9,
	MEM_BRK = 10,
	MEM_FREES = 11, // a batch of frees (struct free_batch)
};
// Kept in BTF for bpf2go's -type: the Go constants come from here.
const enum mem_kind *unused_mem_kind __attribute__((unused));

// Event flags.
#define MEM_F_IN_ALLOC 1 // mmap/mremap/brk made inside a traced allocator call
#define MEM_F_SAMPLED 2  // chosen by byte sampling (weight > 1)

enum mem_drop {
	MEM_DROP_RINGBUF = 0,
	MEM_DROP_INFLIGHT_FULL = 1,
	MEM_DROP_STACK = 2, // unused since the frame-pointer walk is ours
	MEM_DROP_SAMPLED_FULL = 3,
	MEM_DROP_REGS = 4,
	MEM_DROP_MAX = 5,
};
// Kept in BTF for bpf2go's -type: the Go constants come from here.
const enum mem_drop *unused_mem_drop __attribute__((unused));

DECLARE_DROPS(MEM_DROP_MAX);

// Set by user space before load (sample_bytes and log2_mantissa, the
// sampler's, are declared in sample.h).
// stack_size: bytes of user stack copied per event for DWARF unwinding
// (--mem-unwind auto|dwarf); 0 walks frame pointers in the kernel only.
const volatile __u32 stack_size = 0;
// sys_stack_size: bytes of user stack copied for the program's own
// mmap/mremap/brk calls whatever stack_size is: they are rare, and they are
// made through libc's frameless syscall wrappers, which hide their caller
// from a frame-pointer walk; user space unwinds them with CFI.
const volatile __u32 sys_stack_size = 4096;
// The fixed part of every event; unmaps send only this, and frees only its
// first MEM_EVENT_FREE bytes (user space reads the rest as zeros).
struct mem_head {
	__u64 time_ns;
	__u64 addr; // returned / freed / mapped / unmapped address; brk: the new break
	__u32 pid;
	__u32 tid;
	__u16 kind;
	__u16 flags;
	__s32 ustack_bytes;
	// A free's record ends here.
	__u64 old_addr; // realloc/mremap: the block given back; brk: the old break
	__u64 size;     // requested bytes; munmap: length; mremap: new length
	__u64 old_size; // mremap: old length
	// DWARF unwinding (stack_size > 0): user registers at the event and
	// the number of stack bytes that follow ustack.
	__u64 ip;
	__u64 sp;
	__u64 bp;
	__u32 stack_bytes;
	__u32 pad;
};

struct mem_event {
	struct mem_head h;
	__u64 ustack[MEM_STACK_DEPTH];
	__u8 stack[USER_STACK_MAX];
};

const struct mem_event *unused_mem_event __attribute__((unused));

// Frees and unmaps carry no stack, so they send only the head of the
// event: they are the most frequent events and the ring's bandwidth
// matters.
#define MEM_EVENT_HEAD sizeof(struct mem_head)
// Frees are half of all events: their record is a third of a head.
#define MEM_EVENT_FREE __builtin_offsetof(struct mem_head, old_addr)
#define MEM_EVENT_FP __builtin_offsetof(struct mem_event, stack)

struct inflight {
	__u64 size;
	__u64 old_addr; // realloc's pointer, or posix_memalign's memptr
	__u32 kind; // 0: not inside a traced allocator call
	__u16 sampled;
	__u16 nested; // allocator calls made by the allocator itself
};

// Allocator calls between entry and return, per thread. Task-local
// storage is cheaper than a hash keyed by tid and goes away with the
// thread.
struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct inflight);
} inflight SEC(".maps");

// Syscalls between sys_enter and sys_exit, per thread.
struct sys_inflight {
	__u64 addr;
	__u64 len;
	__u64 old_len;
	__u32 kind;
	__u32 flags;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, __u32); // tid
	__type(value, struct sys_inflight);
} sys_inflight SEC(".maps");

// The blocks chosen by sampling and not yet freed, so that frees of
// unsampled blocks send nothing. Created lazily (no prealloc): without
// sampling it stays empty.
struct sampled_key {
	__u32 pid;
	__u32 pad;
	__u64 addr;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 1 << 20);
	__type(key, struct sampled_key);
	__type(value, __u8);
} sampled SEC(".maps");

// Events with a stack copy are built here (too big for the BPF stack) and
// sent with bpf_ringbuf_output at their filled length.
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct mem_event);
} scratch SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	// Allocation storms are bursty and every event matters for exact
	// figures: a roomy ring rides out a recorder that falls behind.
	__uint(max_entries, 32 * 1024 * 1024);
} mem_events SEC(".maps");

// The allocator probes need no is_target check: each uprobe.multi link is
// made for one pid, and the kernel runs its programs only in that thread
// group (a map lookup saved on every call).
static __always_inline int enter(__u32 kind, __u64 size, __u64 old)
{
	struct inflight *f = bpf_task_storage_get(&inflight, bpf_get_current_task_btf(), 0, BPF_LOCAL_STORAGE_GET_F_CREATE);
	if (!f) {
		count_drop(MEM_DROP_INFLIGHT_FULL);
		return 0;
	}
	if (f->kind) {
		// glibc calls malloc from inside realloc (mmapped blocks) and
		// posix_memalign: the outer call is what the program asked for,
		// so the nested one is only counted until its return.
		f->nested++;
		return 0;
	}
	f->size = size;
	f->old_addr = old;
	f->kind = kind;
	f->nested = 0;
	// Unsampled calls still mark the thread as inside the allocator (for
	// nesting and MEM_F_IN_ALLOC); their return sends nothing unless a
	// realloc gives back a sampled block.
	f->sampled = sample_bytes_of(size);
	return 0;
}

static __always_inline void fill_head(struct mem_head *h, __u64 id, __u32 kind)
{
	__builtin_memset(h, 0, sizeof(*h));
	h->time_ns = bpf_ktime_get_ns();
	h->pid = id >> 32;
	h->tid = (__u32)id;
	h->kind = kind;
}

// Frees are batched: a free is half of every malloc/free pair, and a ring
// record per free (reserve, lock, commit) was a sixth of what -p mem costs
// a pair over empty programs at the same probes. Each CPU fills a batch
// of FREE_BATCH frees and sends it as one record (kind MEM_FREES, the
// count in n). User space reads the partly filled batches from the map
// after the probes are detached; the replay sorts by time, so a free sent
// late still lands in its place.
#define FREE_BATCH 32
#define FREE_BATCH_AGE_NS 1000000000ULL

struct free_item {
	__u64 time_ns;
	__u64 addr;
	__u32 pid;
	__u32 tid;
};

struct free_batch {
	// Laid out like the start of mem_head, so that kind sits where user
	// space looks for it.
	__u64 time_ns; // unused (each item has its own)
	__u64 n;       // items filled
	__u64 busy;    // a program is filling this batch (meaningless in a record)
	__u16 kind;    // MEM_FREES
	__u16 flags;
	__u32 pad;
	struct free_item items[FREE_BATCH];
};

const struct free_batch *unused_free_batch __attribute__((unused));

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct free_batch);
} free_batches SEC(".maps");

static __always_inline void send_free_now(__u64 id, __u64 addr);

// send_free records a free (or the free made for an unsampled realloc).
static __always_inline void send_free(__u64 id, __u64 addr)
{
	__u32 zero = 0;
	struct free_batch *b = bpf_map_lookup_elem(&free_batches, &zero);
	if (!b)
		return;
	// Per-CPU is not exclusive: a program preempted while filling the
	// batch would have it overwritten. The one that finds it busy sends
	// its free on its own.
	if (__sync_lock_test_and_set(&b->busy, 1)) {
		send_free_now(id, addr);
		return;
	}
	__u64 n = b->n;
	if (n >= FREE_BATCH)
		n = 0;
	__u64 now = bpf_ktime_get_ns();
	struct free_item *it = &b->items[n];
	it->time_ns = now;
	it->addr = addr;
	it->pid = id >> 32;
	it->tid = (__u32)id;
	n++;
	// A batch also goes when its oldest free is a second old, so that
	// what a crash loses stays about what the archive's once-a-second
	// seals lose (a CPU that stops freeing keeps its last few until stop).
	if (n == FREE_BATCH || now - b->items[0].time_ns > FREE_BATCH_AGE_NS) {
		b->n = n;
		b->kind = MEM_FREES;
		if (bpf_ringbuf_output(&mem_events, b, sizeof(*b), submit_flags(&mem_events)) < 0)
			count_drops(MEM_DROP_RINGBUF, n);
		n = 0;
	}
	b->n = n;
	// Only programs on this CPU share the batch: ordering the stores for
	// the compiler is enough.
	asm volatile("" ::: "memory");
	*(volatile __u64 *)&b->busy = 0;
}

// send_free_now sends one free as a record of its own: the short head.
static __always_inline void send_free_now(__u64 id, __u64 addr)
{
	struct mem_head *h = bpf_ringbuf_reserve(&mem_events, MEM_EVENT_FREE, 0);
	if (!h) {
		count_drop(MEM_DROP_RINGBUF);
		return;
	}
	h->time_ns = bpf_ktime_get_ns();
	h->addr = addr;
	h->pid = id >> 32;
	h->tid = (__u32)id;
	h->kind = MEM_FREE;
	h->flags = 0;
	h->ustack_bytes = 0;
	bpf_ringbuf_submit(h, submit_flags(&mem_events));
}

// send_unmap sends a munmap: a head without a stack.
static __always_inline void send_unmap(__u64 id, __u64 addr, __u64 size)
{
	struct mem_event *e = bpf_ringbuf_reserve(&mem_events, MEM_EVENT_HEAD, 0);
	if (!e) {
		count_drop(MEM_DROP_RINGBUF);
		return;
	}
	fill_head(&e->h, id, MEM_MUNMAP);
	e->h.addr = addr;
	e->h.size = size;
	bpf_ringbuf_submit(e, submit_flags(&mem_events));
}

// user_regs_of fills ur from a uprobe's registers, or else from the
// task's saved user registers (syscall tracepoints).
static __always_inline bool user_regs_of(struct pt_regs *regs, struct user_regs *ur)
{
	if (regs) {
		ur->ip = PT_REGS_IP(regs);
		ur->sp = PT_REGS_SP(regs);
		ur->bp = PT_REGS_FP(regs);
		return true;
	}
	if (read_user_regs(ur))
		return true;
	count_drop(MEM_DROP_REGS);
	return false;
}

// send_stacked sends an event with the head filled in by the caller and
// the user stack, built in the per-CPU scratch and sent at its filled
// length (a 3-frame stack makes a 120-byte record, not a 608-byte one: the
// ring holds five times more events when the recorder falls behind).
// Frame pointers are walked here; with copy > 0 (DWARF unwinding) the
// registers and a copy of the stack's top travel too, and user space
// unwinds them with the binaries' CFI.
static __always_inline void send_stacked(struct mem_head *head, struct pt_regs *regs, __u32 copy)
{
	__u32 zero = 0;
	struct mem_event *e = bpf_map_lookup_elem(&scratch, &zero);
	if (!e)
		return;
	struct user_regs ur = {};
	bool have = user_regs_of(regs, &ur);
	e->h = *head;
	// --mem-unwind auto keeps the frame-pointer walk where it is longer
	// than what the copied window lets user space unwind.
	__s32 n = have ? walk_user_fp(&ur, e->ustack) : 0;
	e->h.ustack_bytes = n;
	__u64 len = MEM_EVENT_HEAD + (__u32)n;
	if (copy) {
		e->h.ip = ur.ip;
		e->h.sp = ur.sp;
		e->h.bp = ur.bp;
		e->h.stack_bytes = ur.sp ? copy_user_stack(e->stack, ur.sp, copy) : 0;
		len = MEM_EVENT_FP + e->h.stack_bytes;
	}
	if (len > sizeof(*e))
		len = sizeof(*e);
	if (bpf_ringbuf_output(&mem_events, e, len, submit_flags(&mem_events)) < 0)
		count_drop(MEM_DROP_RINGBUF);
}

SEC("uretprobe.multi")
int BPF_KRETPROBE(alloc_return, __u64 ret)
{
	struct inflight *f = bpf_task_storage_get(&inflight, bpf_get_current_task_btf(), 0, 0);
	if (!f || !f->kind)
		return 0;
	if (f->nested) {
		f->nested--;
		return 0;
	}
	struct inflight in = *f;
	f->kind = 0;
	if (!in.sampled && !(in.kind == MEM_REALLOC && in.old_addr != 0))
		return 0;
	__u64 id = bpf_get_current_pid_tgid();
	__u64 addr = ret;
	if (in.kind == MEM_POSIX_MEMALIGN) {
		// Returns an error code; the block is written to *memptr.
		if (ret != 0 || bpf_probe_read_user(&addr, sizeof(addr), (void *)in.old_addr))
			return 0;
		in.old_addr = 0;
	}
	if (in.kind == MEM_REALLOC && in.old_addr != 0) {
		// glibc's realloc(p, 0) frees p and returns NULL; any other NULL
		// is a failure that keeps the old block.
		if (addr == 0 && in.size != 0)
			return 0;
		if (sample_bytes) {
			// The old block is only known to user space if it was sampled.
			struct sampled_key k = {.pid = id >> 32, .addr = in.old_addr};
			if (bpf_map_delete_elem(&sampled, &k) != 0)
				in.old_addr = 0;
		}
		if (addr == 0 || !in.sampled) {
			if (in.old_addr)
				send_free(id, in.old_addr);
			return 0;
		}
	}
	// A failed allocation allocates nothing.
	if (addr == 0)
		return 0;
	if (sample_bytes) {
		struct sampled_key k = {.pid = id >> 32, .addr = addr};
		__u8 one = 1;
		if (bpf_map_update_elem(&sampled, &k, &one, BPF_ANY)) {
			// Its free could not be matched: better lost and counted.
			count_drop(MEM_DROP_SAMPLED_FULL);
			if (in.old_addr)
				send_free(id, in.old_addr);
			return 0;
		}
	}
	struct mem_head head;
	fill_head(&head, id, in.kind);
	head.addr = addr;
	head.old_addr = in.old_addr;
	head.size = in.size;
	head.flags = sample_bytes ? MEM_F_SAMPLED : 0;
	send_stacked(&head, ctx, stack_size);
	return 0;
}

// free may be probed after its first instruction (see capture/mem.go): the
// argument register is still intact there.
static __always_inline int free_hit(__u64 ptr)
{
	if (ptr == 0)
		return 0;
	__u64 id = bpf_get_current_pid_tgid();
	if (sample_bytes) {
		struct sampled_key k = {.pid = id >> 32, .addr = ptr};
		if (bpf_map_delete_elem(&sampled, &k) != 0)
			return 0;
	}
	send_free(id, ptr);
	return 0;
}

// Which allocator function an entry probe sits on: the BPF cookie of each
// address of the one uprobe.multi link per process (capture/mem.go
// allocFuncs). One link per process instead of one per function matters
// when processes exit: the kernel waits an RCU grace period (~100 ms here)
// per link it tears down, one at a time.
enum alloc_fn {
	FN_MALLOC = 0,
	FN_CALLOC = 1,
	FN_REALLOC = 2,
	FN_REALLOCARRAY = 3,
	FN_MEMALIGN = 4,       // aligned_alloc(align, size), memalign(align, size)
	FN_VALLOC = 5,         // valloc(size), pvalloc(size)
	FN_POSIX_MEMALIGN = 6, // posix_memalign(memptr, align, size)
	FN_FREE = 7,
};
// Kept in BTF for bpf2go's -type: the Go constants come from here.
const enum alloc_fn *unused_alloc_fn __attribute__((unused));

SEC("uprobe.multi")
int BPF_KPROBE(alloc_enter)
{
	__u64 a1 = PT_REGS_PARM1(ctx), a2 = PT_REGS_PARM2(ctx), a3 = PT_REGS_PARM3(ctx);
	switch (bpf_get_attach_cookie(ctx)) {
	case FN_MALLOC:
		return enter(MEM_MALLOC, a1, 0);
	case FN_CALLOC:
		return enter(MEM_CALLOC, a1 * a2, 0);
	case FN_REALLOC:
		return enter(MEM_REALLOC, a2, a1);
	case FN_REALLOCARRAY:
		return enter(MEM_REALLOC, a2 * a3, a1);
	case FN_MEMALIGN:
		return enter(MEM_MEMALIGN, a2, 0);
	case FN_VALLOC:
		return enter(MEM_MEMALIGN, a1, 0);
	case FN_POSIX_MEMALIGN:
		return enter(MEM_POSIX_MEMALIGN, a3, a1);
	case FN_FREE:
		return free_hit(a1);
	}
	return 0;
}

// Syscalls. Enabling any syscall tracepoint sends every syscall of every
// task on the host through the slow path (see docs/architecture.md), so
// these are attached only with the mem probe set and can be turned off
// with --mem-mmap=false; the programs return at once for non-targets.

#define MAP_ANONYMOUS 0x20

static __always_inline bool in_alloc(void)
{
	struct inflight *f = bpf_task_storage_get(&inflight, bpf_get_current_task_btf(), 0, 0);
	return f && f->kind;
}

static __always_inline int sys_enter(__u32 kind, __u64 addr, __u64 len, __u64 old_len)
{
	__u64 id = bpf_get_current_pid_tgid();
	if (!is_target(id >> 32))
		return 0;
	__u32 tid = (__u32)id;
	struct sys_inflight f = {.addr = addr, .len = len, .old_len = old_len, .kind = kind};
	if (in_alloc())
		f.flags = MEM_F_IN_ALLOC;
	if (bpf_map_update_elem(&sys_inflight, &tid, &f, BPF_ANY))
		count_drop(MEM_DROP_INFLIGHT_FULL);
	return 0;
}

// Anonymous mappings only: file mappings (libraries, mapped files) are
// page cache, not memory a program forgets to give back.
SEC("tracepoint/syscalls/sys_enter_mmap")
int mmap_enter(struct trace_event_raw_sys_enter *ctx)
{
	if (!(ctx->args[3] & MAP_ANONYMOUS))
		return 0;
	return sys_enter(MEM_MMAP, 0, ctx->args[1], 0);
}

SEC("tracepoint/syscalls/sys_enter_munmap")
int munmap_enter(struct trace_event_raw_sys_enter *ctx)
{
	return sys_enter(MEM_MUNMAP, ctx->args[0], ctx->args[1], 0);
}

SEC("tracepoint/syscalls/sys_enter_mremap")
int mremap_enter(struct trace_event_raw_sys_enter *ctx)
{
	return sys_enter(MEM_MREMAP, ctx->args[0], ctx->args[2], ctx->args[1]);
}

// brk's argument is the requested break; the old one is read from the mm
// (user space cannot know it for a process attached mid-run).
SEC("tracepoint/syscalls/sys_enter_brk")
int brk_enter(struct trace_event_raw_sys_enter *ctx)
{
	struct task_struct *task = bpf_get_current_task_btf();
	__u64 old = BPF_CORE_READ(task, mm, brk);
	return sys_enter(MEM_BRK, old, ctx->args[0], 0);
}

static __always_inline int sys_exit(long ret)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u32 tid = (__u32)id;
	struct sys_inflight *p = bpf_map_lookup_elem(&sys_inflight, &tid);
	if (!p)
		return 0;
	struct sys_inflight f = *p;
	bpf_map_delete_elem(&sys_inflight, &tid);
	// Errors are -errno (-4095..-1).
	if ((unsigned long)ret >= (unsigned long)-4095L)
		return 0;
	switch (f.kind) {
	case MEM_MUNMAP:
		send_unmap(id, f.addr, f.len);
		return 0;
	case MEM_BRK:
		// brk returns the break it ended with (the old one on failure).
		if ((__u64)ret == f.addr)
			return 0;
		break;
	}
	struct mem_head head;
	fill_head(&head, id, f.kind);
	head.flags = f.flags;
	switch (f.kind) {
	case MEM_MMAP:
		head.addr = ret;
		head.size = f.len;
		break;
	case MEM_MREMAP:
		head.addr = ret;
		head.old_addr = f.addr;
		head.size = f.len;
		head.old_size = f.old_len;
		break;
	case MEM_BRK:
		head.addr = ret;
		head.old_addr = f.addr;
		break;
	}
	send_stacked(&head, NULL, (f.flags & MEM_F_IN_ALLOC) ? stack_size : sys_stack_size);
	return 0;
}

// One program for the four sys_exit tracepoints (attached to each).
SEC("tracepoint")
int mem_sys_exit(struct trace_event_raw_sys_exit *ctx) { return sys_exit(ctx->ret); }
