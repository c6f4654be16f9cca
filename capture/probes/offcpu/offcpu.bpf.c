//go:build ignore

// Off-CPU time of target threads, from the scheduler's BTF tracepoints.
//
// sched_switch   prev leaves the CPU: the time, its state, its syscall and
//                its stack (kernel + user) are kept in `threads` (task
//                storage: freed with the thread);
//                next comes back: its interval is complete.
// sched_waking   the thread is made runnable: the end of the blocked part
//                and the start of the run-queue wait; current is the waker.
// sched_wakeup_new  a new thread's first wait for a CPU (run queue only).
//
// Each interval is split into blocked (switch-out to waking) and run-queue
// wait (waking to switch-in). Intervals at least `exact_ns` long are sent
// one by one; shorter ones are summed per thread and stack in up to
// OFFCPU_SLOTS accumulators, each sent when it spans more than `merge_ns`
// (or is evicted, or the thread exits; the `offcpu_drain` task iterator
// sends what is left at the end), so a thread switching 100k times a second costs a few records a
// second, not 100k.
//
// Stacks are sent once: a 64-bit key hashes the process (tgid and mm) with
// the kernel and frame-pointer user addresses; a key the kernel has not
// sent yet (`known_stacks`, LRU) goes to user space with the addresses and,
// when `copy_bytes` > 0, a copy of the top of the user stack for CFI
// unwinding. Intervals carry the key.
//
// Why a stack is classified in user space, not here: the wait class
// (lock, disk, network, sleep, page fault) is read from kernel function
// names, which only user space has (kallsyms); the kernel sends the facts
// (state, in_iowait, syscall number, preemption) with each interval.
#include "common.h"
#include "user_stack.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

#define OFFCPU_SLOTS 4
#define KSTACK_DEPTH 64
#define USTACK_DEPTH 127
#define STACK_REUSE 64

// Task states, as include/linux/sched.h defines them.
#define TASK_RUNNING 0x0000
#define TASK_DEAD 0x0080
#define PF_KTHREAD 0x00200000

enum offcpu_kind {
	OFFCPU_INTERVAL = 1,
	OFFCPU_STACK = 2,
};
const enum offcpu_kind *unused_offcpu_kind __attribute__((unused));

enum offcpu_flag {
	// The thread was preempted (or yielded) while runnable: the whole
	// interval is run-queue wait.
	OFFCPU_PREEMPTED = 1,
	// A new thread's first wait for a CPU.
	OFFCPU_NEW = 2,
	// Still off-CPU when the capture stopped (written by user space).
	OFFCPU_OPEN = 4,
	// No wakeup was seen (it raced with the switch-out): counted as
	// blocked to the end.
	OFFCPU_NO_WAKEUP = 8,
	// The thread slept in io_schedule (task_struct.in_iowait).
	OFFCPU_IOWAIT = 16,
};
const enum offcpu_flag *unused_offcpu_flag __attribute__((unused));

enum offcpu_drop {
	OFFCPU_DROP_RINGBUF = 0,
	OFFCPU_DROP_STACK_RINGBUF = 1,
	OFFCPU_DROP_THREAD_STATE = 2,
	OFFCPU_DROP_KSTACK = 3,
	OFFCPU_DROP_MAX = 4,
};
const enum offcpu_drop *unused_offcpu_drop __attribute__((unused));

DECLARE_DROPS(OFFCPU_DROP_MAX);

// offcpu_interval is one record: count intervals of one thread with one
// stack and state, summed, from the first switch-out (start_ns) to the
// last switch-in (end_ns).
struct offcpu_interval {
	__u32 kind;
	__u32 count;
	__u64 start_ns;
	__u64 end_ns;
	__u64 blocked_ns;
	__u64 runq_ns;
	__u64 stack_key; // 0: no stack (preempted, new thread)
	__u32 pid;
	__u32 tid;
	// The task that made the thread runnable (of the last interval), 0
	// when none was seen.
	__u32 waker_pid;
	__u32 waker_tid;
	__u32 state;   // prev_state at switch-out (TASK_INTERRUPTIBLE...)
	__s32 syscall; // syscall number at switch-out, -1 outside a syscall
	__u32 flags;   // enum offcpu_flag
	__u32 pad;
};
const struct offcpu_interval *unused_offcpu_interval __attribute__((unused));

// thread_state is one target thread: the interval in progress, the last
// stack walked, and the accumulators of short intervals.
struct thread_state {
	__u64 off_ns;  // switch-out time, 0 while on CPU
	__u64 wake_ns; // waking time of the interval in progress, 0 if none yet
	__u64 stack_key;
	__u32 waker_pid;
	__u32 waker_tid;
	__u32 state;
	__s32 syscall;
	__u32 flags;
	__u32 pid;
	// The user-side key of the last switch-out that walked the kernel
	// stack, the full key it gave, and the switch-outs that reused it.
	__u64 last_ukey;
	__u64 last_key;
	__u32 reused;
	__u32 pad;
	struct offcpu_interval acc[OFFCPU_SLOTS]; // count 0: empty
};
const struct thread_state *unused_thread_state __attribute__((unused));

// offcpu_stack is sent once per stack key, at its filled length: the head
// and the address arrays always, then copy_bytes of user stack.
struct offcpu_stack {
	__u32 kind;
	__u32 pid;
	__u64 key;
	__s32 kstack_bytes;
	__s32 ustack_bytes;
	__u32 copy_bytes;
	__u32 pad;
	__u64 ip;
	__u64 sp;
	__u64 bp;
	__u64 kstack[KSTACK_DEPTH];
	__u64 ustack[USTACK_DEPTH];
	__u8 copy[USER_STACK_MAX];
};
const struct offcpu_stack *unused_offcpu_stack __attribute__((unused));

#define OFFCPU_STACK_HEAD (sizeof(struct offcpu_stack) - USER_STACK_MAX)

// Set by user space before load.
const volatile __u64 exact_ns = 1000000;
const volatile __u64 merge_ns = 10000000;
const volatile __u32 copy_bytes = 0;

struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct thread_state);
} threads SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 32768);
	__type(key, __u64);
	__type(value, __u8);
} known_stacks SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct offcpu_stack);
} stack_scratch SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 8 * 1024 * 1024);
} offcpu_events SEC(".maps");

static __always_inline __u64 mix(__u64 h, __u64 v)
{
	h ^= v;
	h *= 0x100000001b3ULL;
	return h ^ (h >> 29);
}

static __always_inline void emit(struct offcpu_interval *iv)
{
	iv->kind = OFFCPU_INTERVAL;
	if (bpf_ringbuf_output(&offcpu_events, iv, sizeof(*iv), submit_flags(&offcpu_events)) < 0)
		count_drops(OFFCPU_DROP_RINGBUF, iv->count);
}

// The frame-pointer walk and the hashes run as bpf_loop callbacks: plain
// loops of 127 steps after one another took the verifier seconds to load.
struct fp_walk {
	__u64 bp;
	__u64 *ips;
	__u32 n;
};

// fp_step reads one frame (saved rbp, return address) of the chain; it
// stops at a null, misaligned or unreadable frame pointer, and at one that
// does not rise (code without frame pointers uses rbp freely).
static long fp_step(__u32 i, void *data)
{
	struct fp_walk *w = data;
	__u64 frame[2];
	if (!w->bp || w->bp & 7 || bpf_probe_read_user(frame, sizeof(frame), (void *)w->bp) || !frame[1])
		return 1;
	// Indexed by the step, not by a count kept in w: the verifier then
	// checks the callback once instead of once per step.
	__u32 k = i + 1; // slot 0 is the leaf
	w->ips[k & 127] = frame[1];
	w->n = k + 1;
	if (frame[0] <= w->bp)
		return 1;
	w->bp = frame[0];
	return 0;
}

struct hash_ctx {
	__u64 h;
	__u64 *ips;
	__u32 n;
};

static long hash_step(__u32 i, void *data)
{
	struct hash_ctx *c = data;
	if (i >= c->n)
		return 1;
	// The mask bounds the index for the verifier (both arrays are
	// inside the scratch record, USTACK_DEPTH < 128).
	c->h = mix(c->h, c->ips[i & 127]);
	return 0;
}

// record_stack returns the key of the current thread's stacks, sending
// the stack to user space the first time the key is seen. The user stack
// is walked every time (frame pointers, cheap); the kernel stack only when
// the user stack, syscall or state differ from the thread's last walk, or
// after STACK_REUSE reuses.
static __always_inline __u64 record_stack(void *ctx, struct task_struct *t, struct thread_state *st)
{
	__u32 zero = 0;
	struct offcpu_stack *s = bpf_map_lookup_elem(&stack_scratch, &zero);
	if (!s)
		return 0;
	struct user_regs ur = {};
	__s32 ub = 0;
	if (read_user_regs(&ur)) {
		struct fp_walk w = {.bp = ur.bp, .ips = s->ustack, .n = 1};
		s->ustack[0] = ur.ip;
		bpf_loop(USTACK_DEPTH - 1, fp_step, &w, 0);
		ub = w.n * 8;
	}
	// Read as a number (a pointer the verifier will not let us hash): a
	// new program (exec) gets a new mm, so new keys.
	__u64 h = mix(0xcbf29ce484222325ULL, t->tgid);
	h = mix(h, (__u64)BPF_CORE_READ(t, mm));
	struct hash_ctx hc = {.h = h, .ips = s->ustack, .n = (__u32)ub / 8};
	bpf_loop(USTACK_DEPTH, hash_step, &hc, 0);
	h = hc.h;
	// With a stack copy (code without frame pointers), the frame-pointer
	// walk may stop at the leaf: two call paths into one blocking call
	// (a mutex and the GIL's condition variable both wait in libc's futex
	// wrapper) would share a key, and only the first would be unwound.
	// The stack pointer tells them apart: one path of one thread leaves
	// the CPU at the same depth every time.
	if (copy_bytes)
		h = mix(h, ur.sp);
	__u64 ukey = mix(mix(h, st->state), ((__u64)st->flags << 32) | (__u32)st->syscall);
	if (ukey == st->last_ukey && st->last_key && st->reused < STACK_REUSE) {
		st->reused++;
		return st->last_key;
	}
	long kb = bpf_get_stack(ctx, s->kstack, sizeof(s->kstack), 0);
	if (kb < 0) {
		count_drop(OFFCPU_DROP_KSTACK);
		kb = 0;
	}
	h = mix(h, ~0ULL); // the same addresses split differently differ
	hc.h = h;
	hc.ips = s->kstack;
	hc.n = (__u32)kb / 8;
	bpf_loop(KSTACK_DEPTH, hash_step, &hc, 0);
	h = hc.h;
	if (!h)
		h = 1;
	st->last_ukey = ukey;
	st->last_key = h;
	st->reused = 0;
	if (bpf_map_lookup_elem(&known_stacks, &h))
		return h;
	s->kind = OFFCPU_STACK;
	s->pid = t->tgid;
	s->key = h;
	s->kstack_bytes = kb;
	s->ustack_bytes = ub;
	s->ip = ur.ip;
	s->sp = ur.sp;
	s->bp = ur.bp;
	s->pad = 0;
	s->copy_bytes = 0;
	if (copy_bytes && ur.sp)
		s->copy_bytes = copy_user_stack(s->copy, ur.sp, copy_bytes);
	__u64 len = OFFCPU_STACK_HEAD + s->copy_bytes;
	if (len > sizeof(*s))
		len = sizeof(*s);
	if (bpf_ringbuf_output(&offcpu_events, s, len, submit_flags(&offcpu_events)) < 0) {
		// Not marked known: the next walk that meets it sends it again.
		count_drop(OFFCPU_DROP_STACK_RINGBUF);
		st->last_key = 0;
		return h;
	}
	__u8 one = 1;
	bpf_map_update_elem(&known_stacks, &h, &one, BPF_ANY);
	return h;
}

static __always_inline struct thread_state *state_of(struct task_struct *t, bool create)
{
	struct thread_state *st = bpf_task_storage_get(&threads, t, 0, 0);
	if (st || !create)
		return st;
	st = bpf_task_storage_get(&threads, t, 0, BPF_LOCAL_STORAGE_GET_F_CREATE);
	if (!st)
		count_drop(OFFCPU_DROP_THREAD_STATE);
	return st;
}

static __always_inline void flush_all(struct thread_state *st)
{
	for (int i = 0; i < OFFCPU_SLOTS; i++) {
		if (st->acc[i].count) {
			emit(&st->acc[i]);
			st->acc[i].count = 0;
		}
	}
}

static __always_inline void switch_out(void *ctx, struct task_struct *prev, bool preempt, unsigned int prev_state, __u64 now)
{
	bool dead = prev_state & TASK_DEAD;
	struct thread_state *st = state_of(prev, !dead);
	if (!st)
		return;
	if (dead) {
		flush_all(st);
		bpf_task_storage_delete(&threads, prev);
		return;
	}
	st->off_ns = now;
	st->wake_ns = 0;
	st->waker_pid = 0;
	st->waker_tid = 0;
	st->pid = prev->tgid;
	st->state = prev_state;
	st->syscall = -1;
	st->stack_key = 0;
	if (preempt || prev_state == TASK_RUNNING) {
		// Runnable all along: where it was interrupted is a CPU
		// profile's business, and every such stack is new.
		st->flags = OFFCPU_PREEMPTED;
		return;
	}
	st->flags = BPF_CORE_READ_BITFIELD(prev, in_iowait) ? OFFCPU_IOWAIT : 0;
	if (prev->mm) {
		struct pt_regs *regs = (struct pt_regs *)bpf_task_pt_regs(prev);
		if (regs)
			st->syscall = (__s32)BPF_CORE_READ(regs, orig_ax);
	}
	st->stack_key = record_stack(ctx, prev, st);
}

// interval_of fills iv with the interval in progress ended at now: blocked
// until the waking, then in the run queue.
static __always_inline void interval_of(struct thread_state *st, __u32 tid, __u64 now, struct offcpu_interval *iv)
{
	__u64 off = st->off_ns, wake = st->wake_ns;
	__u32 flags = st->flags;
	__u64 blocked = 0, runq = 0;
	if (flags & (OFFCPU_PREEMPTED | OFFCPU_NEW)) {
		runq = now - off;
	} else if (wake >= off && wake <= now) {
		blocked = wake - off;
		runq = now - wake;
	} else {
		blocked = now - off;
		flags |= OFFCPU_NO_WAKEUP;
	}
	iv->kind = OFFCPU_INTERVAL;
	iv->count = 1;
	iv->start_ns = off;
	iv->end_ns = now;
	iv->blocked_ns = blocked;
	iv->runq_ns = runq;
	iv->stack_key = st->stack_key;
	iv->pid = st->pid;
	iv->tid = tid;
	iv->waker_pid = st->waker_pid;
	iv->waker_tid = st->waker_tid;
	iv->state = st->state;
	iv->syscall = st->syscall;
	iv->flags = flags;
	iv->pad = 0;
}

// finish ends the interval in progress at now and files it: sent alone
// when long, else added to the accumulator of its kind.
static __always_inline void finish(struct thread_state *st, __u32 tid, __u64 now)
{
	struct offcpu_interval iv;
	interval_of(st, tid, now, &iv);
	st->off_ns = 0;
	if (now - iv.start_ns >= exact_ns) {
		emit(&iv);
		return;
	}
	int empty = -1, oldest = 0;
	__u64 oldest_ns = ~0ULL;
	for (int i = 0; i < OFFCPU_SLOTS; i++) {
		struct offcpu_interval *a = &st->acc[i];
		if (!a->count) {
			empty = i;
			continue;
		}
		if (a->stack_key == iv.stack_key && a->state == iv.state && a->flags == iv.flags && a->syscall == iv.syscall &&
		    now - a->start_ns <= merge_ns) {
			a->count++;
			a->end_ns = now;
			a->blocked_ns += iv.blocked_ns;
			a->runq_ns += iv.runq_ns;
			if (iv.waker_pid) {
				a->waker_pid = iv.waker_pid;
				a->waker_tid = iv.waker_tid;
			}
			return;
		}
		if (now - a->start_ns > merge_ns) {
			// Spans too long to spread evenly: send it, free the slot.
			emit(a);
			a->count = 0;
			empty = i;
			continue;
		}
		if (a->start_ns < oldest_ns) {
			oldest_ns = a->start_ns;
			oldest = i;
		}
	}
	if (empty < 0) {
		empty = oldest;
		emit(&st->acc[oldest & (OFFCPU_SLOTS - 1)]);
	}
	st->acc[empty & (OFFCPU_SLOTS - 1)] = iv;
}

static __always_inline bool followed(struct task_struct *t)
{
	// The idle task and kernel threads are not what anybody waits on.
	return t->pid && !(t->flags & PF_KTHREAD);
}

// target_cache remembers, per thread, whether its process is a target:
// the shared target map is a hash (~80 ns a lookup measured here, most of
// what a context switch of another process cost), a task-storage lookup
// ~20. A decision is trusted for TARGET_CACHE_JIFFIES, so a process that
// becomes a target while running (moved into a targeted cgroup) is
// followed within that (25 jiffies: 100 ms at HZ=250).
#define TARGET_CACHE_JIFFIES 25

struct target_mark {
	__u64 checked; // jiffies of the decision, 0 never
	__u32 target;
	__u32 pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct target_mark);
} target_cache SEC(".maps");

static __always_inline bool targeted(struct task_struct *t)
{
	if (!filter_targets)
		return true;
	struct target_mark *m = bpf_task_storage_get(&target_cache, t, 0, BPF_LOCAL_STORAGE_GET_F_CREATE);
	if (!m)
		return is_target(t->tgid);
	__u64 now = bpf_jiffies64();
	if (m->checked && now - m->checked < TARGET_CACHE_JIFFIES)
		return m->target;
	m->target = is_target(t->tgid);
	m->checked = now | 1;
	return m->target;
}

// Every context switch of the host runs this, so what is not a target
// costs as little as possible: a task-storage lookup for prev (its cached
// target mark), one for next (only targets have a state), no clock read.
SEC("tp_btf/sched_switch")
int BPF_PROG(offcpu_switch, bool preempt, struct task_struct *prev, struct task_struct *next, unsigned int prev_state)
{
	__u64 now = 0;
	if (followed(prev) && targeted(prev)) {
		now = bpf_ktime_get_ns();
		switch_out(ctx, prev, preempt, prev_state, now);
	}
	if (followed(next)) {
		struct thread_state *st = state_of(next, false);
		if (st && st->off_ns)
			finish(st, next->pid, now ? now : bpf_ktime_get_ns());
	}
	return 0;
}

SEC("tp_btf/sched_waking")
int BPF_PROG(offcpu_waking, struct task_struct *p)
{
	struct thread_state *st = state_of(p, false);
	if (!st || !st->off_ns || st->wake_ns)
		return 0;
	st->wake_ns = bpf_ktime_get_ns();
	__u64 id = bpf_get_current_pid_tgid();
	st->waker_pid = id >> 32;
	st->waker_tid = (__u32)id;
	return 0;
}

SEC("tp_btf/sched_wakeup_new")
int BPF_PROG(offcpu_wakeup_new, struct task_struct *p)
{
	if (!followed(p))
		return 0;
	struct thread_state *st = state_of(p, is_target(p->tgid));
	if (!st)
		return 0;
	__u64 now = bpf_ktime_get_ns();
	__u64 id = bpf_get_current_pid_tgid();
	st->off_ns = now;
	st->wake_ns = now;
	st->waker_pid = id >> 32;
	st->waker_tid = (__u32)id;
	st->pid = p->tgid;
	st->state = TASK_RUNNING;
	st->syscall = -1;
	st->stack_key = 0;
	st->flags = OFFCPU_NEW;
	return 0;
}

// offcpu_drain runs once over every task after the scheduler programs are
// detached: it sends each thread's accumulated short intervals, and the
// interval of a thread still off the CPU as open up to now.
SEC("iter/task")
int offcpu_drain(struct bpf_iter__task *ctx)
{
	struct task_struct *t = ctx->task;
	if (!t)
		return 0;
	struct thread_state *st = bpf_task_storage_get(&threads, t, 0, 0);
	if (!st)
		return 0;
	flush_all(st);
	if (st->off_ns) {
		struct offcpu_interval iv;
		interval_of(st, t->pid, bpf_ktime_get_ns(), &iv);
		iv.flags |= OFFCPU_OPEN;
		emit(&iv);
		st->off_ns = 0;
	}
	return 0;
}

// Empty programs at the same hooks: the benchmark's floor (--offcpu-floor).
SEC("tp_btf/sched_switch")
int BPF_PROG(floor_switch, bool preempt, struct task_struct *prev, struct task_struct *next, unsigned int prev_state)
{
	return 0;
}

SEC("tp_btf/sched_waking")
int BPF_PROG(floor_waking, struct task_struct *p)
{
	return 0;
}

SEC("tp_btf/sched_wakeup_new")
int BPF_PROG(floor_wakeup_new, struct task_struct *p)
{
	return 0;
}
