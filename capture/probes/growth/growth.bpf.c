//go:build ignore

// Memory growth: who makes memory resident, in any runtime (C, Go, a JVM,
// V8), measured where the kernel accounts it. Every change of a process's
// resident-set counters (anonymous, file and shared-memory pages) fires
// kmem:rss_stat in the context of the task that caused it: a page fault,
// a syscall writing into fresh memory, mremap, exit. The tracepoint says
// which counter changed, not by how much, so the program reads the
// counter itself. It is a percpu_counter: each CPU adds to a local part,
// and when that reaches ±32 pages the CPU folds it, with the change, into
// the global part (the local part becomes exactly 0). So:
//
//   - a change that leaves the local part non-zero did not fold: it is
//     the local part minus its last reading on this CPU (kept per mm and
//     CPU, exact, since every change of a followed mm is seen; the first
//     readings are taken on every CPU at once, so a fault that migrates
//     lands on a CPU already read);
//   - a change that leaves it 0 folded: it is the global part's growth
//     since the last fold anyone saw (kept per mm, exchanged atomically so
//     that concurrent folds on two CPUs share the growth without counting
//     it twice) minus this CPU's last local part.
//
// Transparent huge pages (one change of 512 pages) and fault-around (up to
// 16 file pages at once) come out right without knowing which path ran.
//
// exceptions:page_fault_user (and page_fault_kernel on user addresses:
// read() into a fresh buffer) give the faulting address and take the first
// readings of a process before its first change. Growth is byte-sampled
// (sample.h) before any stack is taken; exact per-process totals are kept
// in the kernel regardless.
#include "common.h"
#include "user_stack.h"
#include "sample.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

#define GROWTH_KSTACK_DEPTH 64
#define KSTACK_SKIP 2
// x86-64's highest user address (TASK_SIZE_MAX): kernel faults above it
// are the kernel's own memory.
#define USER_ADDR_MAX 0x00007ffffffff000ULL

// What grew: the kernel's mm counters of resident pages.
enum growth_kind {
	GROWTH_ANON = 1,
	GROWTH_FILE = 2,
	GROWTH_SHMEM = 3,
};
const enum growth_kind *unused_growth_kind __attribute__((unused));

enum growth_flag {
	GROWTH_F_SAMPLED = 1,    // chosen by byte sampling (weight > 1)
	GROWTH_F_FAULT = 2,      // made resident by the page fault at addr
	GROWTH_F_UNMEASURED = 4, // no earlier reading on this CPU: one page assumed
};
const enum growth_flag *unused_growth_flag __attribute__((unused));

enum growth_drop {
	GROWTH_DROP_RINGBUF = 0,
	GROWTH_DROP_KSTACK = 1,
	GROWTH_DROP_REGS = 2,
	GROWTH_DROP_UNMEASURED = 3,
	GROWTH_DROP_TOTALS_FULL = 4,
	GROWTH_DROP_MAX = 5,
};
const enum growth_drop *unused_growth_drop __attribute__((unused));

DECLARE_DROPS(GROWTH_DROP_MAX);

// Set by user space before load.
// stack_size: bytes of user stack copied per sampled event for DWARF
// unwinding (--growth-unwind auto|dwarf); 0 walks frame pointers only.
const volatile __u32 stack_size = 0;
const volatile __u32 page_shift = 12;
// nr_cpus: the possible CPUs, whose local parts are read when an mm is
// first followed.
const volatile __u32 nr_cpus = 1;
#define MAX_CPUS 4096

struct growth_event {
	__u64 time_ns;
	__u64 addr;  // the faulting address (GROWTH_F_FAULT), else 0
	__u64 bytes; // bytes this change made resident
	__u32 pid;
	__u32 tid;
	__u16 kind;
	__u16 flags;
	__s32 kstack_bytes;
	__s32 ustack_bytes;
	__u32 stack_bytes; // bytes of stack[] copied from sp up
	__u64 ip;
	__u64 sp;
	__u64 bp;
	__u64 kstack[GROWTH_KSTACK_DEPTH];
	__u64 ustack[USER_FP_DEPTH];
	__u8 stack[USER_STACK_MAX];
};
const struct growth_event *unused_growth_event __attribute__((unused));

// The counters a reading holds: MM_FILEPAGES, MM_ANONPAGES, MM_SWAPENTS
// (unused), MM_SHMEMPAGES.
#define NR_COUNTERS 4
#define FOLLOWED_COUNTERS ((1 << 0) | (1 << 1) | (1 << 3))

// The global parts of a followed mm's counters as of the last fold seen.
// LRU: the mm of an exited process makes room.
struct mm_global {
	__s64 global[NR_COUNTERS];
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 8192);
	__type(key, __u64); // struct mm_struct *
	__type(value, struct mm_global);
} globals SEC(".maps");

// Each CPU's local parts of a followed mm's counters as of its last change
// there. An evicted entry makes the next change on that CPU unmeasured.
struct local_key {
	__u64 mm;
	__u32 cpu;
	__u32 pad;
};

struct cpu_local {
	__s32 local[NR_COUNTERS];
	__u32 valid; // bit per counter
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct local_key);
	__type(value, struct cpu_local);
} locals SEC(".maps");

// The fault a task is in: where, and at which user instruction.
struct fault_state {
	__u64 addr;
	__u64 ip;
};

struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct fault_state);
} faults SEC(".maps");

// Exact bytes made resident per process and kind, whatever the sampling.
struct growth_total {
	__u64 bytes[NR_COUNTERS];
	__u64 changes;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u32); // tgid
	__type(value, struct growth_total);
} totals SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct growth_event);
} scratch SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 16 * 1024 * 1024);
} growth_events SEC(".maps");

// cpu_anchor finds each CPU's per-CPU area offset, the distance from a
// per-CPU pointer (such as a percpu_counter's counters) to that CPU's
// instance. bpf_per_cpu_ptr would need a typed reference to a kernel
// per-CPU variable, which the kernel resolves through kallsyms, and
// kernels without CONFIG_KALLSYMS_ALL (this one) list no data symbols
// there. A per-CPU array map is allocated the same way: the lookup of a
// CPU's value returns that CPU's instance of the per-CPU pointer the map
// holds (bpf_array.pptrs), and the difference is the offset, computed once
// per CPU.
struct cpu_offset {
	__u64 off;
	__u64 known;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct cpu_offset);
} cpu_anchor SEC(".maps");

// cpu_offset returns the per-CPU area offset of cpu, 0 if unknown.
static __always_inline __u64 cpu_offset(__u32 cpu)
{
	__u32 zero = 0;
	struct cpu_offset *v = bpf_map_lookup_percpu_elem(&cpu_anchor, &zero, cpu);
	if (!v)
		return 0;
	if (v->known)
		return v->off;
	// The map's and the value's addresses as integers: read back from
	// the stack, where the pointers were spilled.
	void *ptrs[2] = {&cpu_anchor, v};
	__u64 addrs[2];
	if (bpf_probe_read_kernel(addrs, sizeof(addrs), ptrs))
		return 0;
	__u64 base;
	if (bpf_probe_read_kernel(&base, sizeof(base), (void *)(addrs[0] + bpf_core_field_offset(struct bpf_array, pptrs))))
		return 0;
	v->off = addrs[1] - base;
	v->known = 1;
	return v->off;
}

// read_counter reads counter m of mm: its global part and this CPU's
// local one.
static __always_inline void read_counter(struct mm_struct *mm, __u32 m, __u64 cpu_off, __s64 *global, __s32 *local)
{
	__u64 pc = (__u64)mm + bpf_core_field_offset(struct mm_struct, rss_stat) +
		   (m & (NR_COUNTERS - 1)) * bpf_core_type_size(struct percpu_counter);
	__u64 counters = 0;
	*global = 0;
	*local = 0;
	bpf_probe_read_kernel(global, sizeof(*global), (void *)(pc + bpf_core_field_offset(struct percpu_counter, count)));
	bpf_probe_read_kernel(&counters, sizeof(counters), (void *)(pc + bpf_core_field_offset(struct percpu_counter, counters)));
	if (counters && cpu_off)
		bpf_probe_read_kernel(local, sizeof(*local), (void *)(counters + cpu_off));
}

// read_local fills l with counters' local parts of mm on cpu.
static __always_inline void read_locals(struct mm_struct *mm, __u32 cpu, struct cpu_local *l)
{
	__u64 off = cpu_offset(cpu);
	__s64 ignored;
	read_counter(mm, 0, off, &ignored, &l->local[0]);
	read_counter(mm, 1, off, &ignored, &l->local[1]);
	read_counter(mm, 3, off, &ignored, &l->local[3]);
	l->valid = FOLLOWED_COUNTERS;
}

static long follow_cpu(__u32 cpu, void *ctx)
{
	struct mm_struct *mm = *(struct mm_struct **)ctx;
	struct local_key k = {.mm = (__u64)mm, .cpu = cpu};
	if (bpf_map_lookup_elem(&locals, &k))
		return 0;
	struct cpu_local l = {};
	read_locals(mm, cpu, &l);
	bpf_map_update_elem(&locals, &k, &l, BPF_NOEXIST);
	return 0;
}

// follow takes the first readings of mm: its global parts, and the local
// parts on every CPU. It reports whether mm was new.
static __always_inline bool follow(struct mm_struct *mm)
{
	__u64 key = (__u64)mm;
	if (bpf_map_lookup_elem(&globals, &key))
		return false;
	struct mm_global g = {};
	__s32 ignored;
	read_counter(mm, 0, 0, &g.global[0], &ignored);
	read_counter(mm, 1, 0, &g.global[1], &ignored);
	read_counter(mm, 3, 0, &g.global[3], &ignored);
	bpf_loop(nr_cpus < MAX_CPUS ? nr_cpus : MAX_CPUS, follow_cpu, &mm, 0);
	bpf_map_update_elem(&globals, &key, &g, BPF_NOEXIST);
	return true;
}

static __always_inline int fault(unsigned long address)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	if (!is_target(tgid))
		return 0;
	struct task_struct *task = bpf_get_current_task_btf();
	struct mm_struct *mm = task->mm;
	if (!mm)
		return 0;
	struct fault_state *f = bpf_task_storage_get(&faults, task, 0, BPF_LOCAL_STORAGE_GET_F_CREATE);
	if (f) {
		f->addr = address;
		struct pt_regs *regs = (struct pt_regs *)bpf_task_pt_regs(task);
		f->ip = regs ? BPF_CORE_READ(regs, ip) : 0;
	}
	follow(mm);
	return 0;
}

SEC("tp_btf/page_fault_user")
int BPF_PROG(fault_user, unsigned long address, struct pt_regs *regs, unsigned long error_code)
{
	return fault(address);
}

SEC("tp_btf/page_fault_kernel")
int BPF_PROG(fault_kernel, unsigned long address, struct pt_regs *regs, unsigned long error_code)
{
	if (address >= USER_ADDR_MAX)
		return 0;
	return fault(address);
}

static __always_inline __u16 kind_of(int member)
{
	switch (member) {
	case 0:
		return GROWTH_FILE;
	case 1:
		return GROWTH_ANON;
	case 3:
		return GROWTH_SHMEM;
	}
	return 0;
}

static __always_inline void add_total(__u32 tgid, __u32 m, __u64 bytes)
{
	struct growth_total *t = bpf_map_lookup_elem(&totals, &tgid);
	if (!t) {
		struct growth_total zero = {};
		bpf_map_update_elem(&totals, &tgid, &zero, BPF_NOEXIST);
		t = bpf_map_lookup_elem(&totals, &tgid);
		if (!t) {
			count_drop(GROWTH_DROP_TOTALS_FULL);
			return;
		}
	}
	// Per CPU, but two programs can interleave on one CPU.
	__sync_fetch_and_add(&t->bytes[m & (NR_COUNTERS - 1)], bytes);
	__sync_fetch_and_add(&t->changes, 1);
}

SEC("tp_btf/rss_stat")
int BPF_PROG(rss_change, struct mm_struct *mm, int member)
{
	__u16 kind = kind_of(member);
	if (!kind)
		return 0;
	__u64 id = bpf_get_current_pid_tgid();
	__u32 tgid = id >> 32;
	struct task_struct *task = bpf_get_current_task_btf();
	bool target = task->mm == mm && is_target(tgid);
	__u64 key = (__u64)mm;
	__u32 m = member & (NR_COUNTERS - 1);
	__s64 pages = 1;
	__u16 flags = 0;
	struct mm_global *g = bpf_map_lookup_elem(&globals, &key);
	if (!g) {
		if (!target)
			return 0; // an mm nobody follows
		// First seen changing, not in a fault: the readings taken now
		// already hold this change.
		follow(mm);
		flags |= GROWTH_F_UNMEASURED;
		goto record;
	}
	__u32 cpu = bpf_get_smp_processor_id();
	__s64 global;
	__s32 local;
	read_counter(mm, m, cpu_offset(cpu), &global, &local);
	__s64 folded = 0;
	if (local == 0)
		folded = global - __sync_lock_test_and_set(&g->global[m], global);
	struct local_key lk = {.mm = key, .cpu = cpu};
	struct cpu_local *l = bpf_map_lookup_elem(&locals, &lk);
	if (l && (l->valid & (1 << m))) {
		pages = local != 0 ? (__s64)local - l->local[m] : folded - l->local[m];
		l->local[m] = local;
	} else {
		flags |= GROWTH_F_UNMEASURED; // one page assumed
		struct cpu_local fresh = {};
		read_locals(mm, cpu, &fresh);
		bpf_map_update_elem(&locals, &lk, &fresh, BPF_ANY);
	}
record:
	if (!target || pages <= 0)
		return 0;
	if (flags & GROWTH_F_UNMEASURED)
		count_drop(GROWTH_DROP_UNMEASURED);
	__u64 bytes = (__u64)pages << page_shift;
	add_total(tgid, m, bytes);
	if (!sample_bytes_of(bytes))
		return 0;
	__u32 zero = 0;
	struct growth_event *e = bpf_map_lookup_elem(&scratch, &zero);
	if (!e)
		return 0;
	e->time_ns = bpf_ktime_get_ns();
	e->pid = tgid;
	e->tid = (__u32)id;
	e->kind = kind;
	e->bytes = bytes;
	e->addr = 0;
	e->stack_bytes = 0;
	if (sample_bytes)
		flags |= GROWTH_F_SAMPLED;
	struct user_regs ur = {};
	bool have = read_user_regs(&ur);
	if (!have)
		count_drop(GROWTH_DROP_REGS);
	struct fault_state *f = bpf_task_storage_get(&faults, task, 0, 0);
	if (f && have && f->ip == ur.ip && f->ip != 0) {
		// The fault that started at this user instruction is the one
		// being handled (a task runs one fault at a time).
		flags |= GROWTH_F_FAULT;
		e->addr = f->addr;
	}
	e->flags = flags;
	e->ip = ur.ip;
	e->sp = ur.sp;
	e->bp = ur.bp;
	// The first frames are this program and the tracepoint's dispatch
	// (bpf_trace_run2): the kernel's stack starts below them.
	e->kstack_bytes = bpf_get_stack(ctx, e->kstack, sizeof(e->kstack), KSTACK_SKIP);
	if (e->kstack_bytes < 0)
		count_drop(GROWTH_DROP_KSTACK);
	e->ustack_bytes = have ? walk_user_fp(&ur, e->ustack) : 0;
	if (have && stack_size)
		e->stack_bytes = copy_user_stack(e->stack, ur.sp, stack_size);
	__u64 len = offsetof(struct growth_event, stack) + e->stack_bytes;
	if (len > sizeof(*e))
		len = sizeof(*e);
	if (bpf_ringbuf_output(&growth_events, e, len, submit_flags(&growth_events)) < 0)
		count_drop(GROWTH_DROP_RINGBUF);
	return 0;
}
