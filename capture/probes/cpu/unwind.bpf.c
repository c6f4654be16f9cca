//go:build ignore

// CPU sampling for DWARF unwinding (capture --unwind auto|dwarf). Like
// cpu.bpf.c's sampler, plus the sampled thread's user registers and a copy
// of the top of its user stack (perf --call-graph dwarf,SIZE does the same):
// user space walks it with the binaries' .eh_frame at capture time, so code
// built without frame pointers (distro C libraries, nginx) gets whole stacks.
// The frame-pointer user stack is kept too, for mappings without CFI (Go).
#include "common.h"
#include "user_stack.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

#define MAX_STACK_DEPTH 127

enum unwind_drop {
	UNWIND_DROP_RINGBUF = 0,
	UNWIND_DROP_KSTACK = 1,
	UNWIND_DROP_USTACK = 2,
	UNWIND_DROP_REGS = 3,
	UNWIND_DROP_MAX = 4,
};
// Kept in BTF for bpf2go's -type: the Go constants come from here.
const enum unwind_drop *unused_unwind_drop __attribute__((unused));

DECLARE_DROPS(UNWIND_DROP_MAX);

// Bytes of user stack to copy per sample, set before load (multiple of
// USER_STACK_CHUNK, at most USER_STACK_MAX).
const volatile __u32 stack_size = 8192;

struct unwind_sample {
	__u64 time_ns;
	__u64 cgroup_id;
	__u32 pid;
	__u32 tid;
	__u32 cpu;
	__s32 kstack_bytes;
	__s32 ustack_bytes;
	__u32 stack_bytes; // bytes of stack[] copied from sp up
	__u64 ip;
	__u64 sp;
	__u64 bp;
	char comm[TASK_COMM_LEN];
	__u64 kstack[MAX_STACK_DEPTH];
	__u64 ustack[MAX_STACK_DEPTH];
	__u8 stack[USER_STACK_MAX];
};

const struct unwind_sample *unused_unwind_sample __attribute__((unused));

// The sample is built in a per-CPU buffer (too big for the BPF stack) and
// sent with bpf_ringbuf_output at its filled length only.
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct unwind_sample);
} unwind_scratch SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 16 * 1024 * 1024);
} unwind_samples SEC(".maps");

SEC("perf_event")
int sample_cpu_dwarf(struct bpf_perf_event_data *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u32 pid = id >> 32;
	if (pid == 0 || !is_target(pid))
		return 0;
	__u32 zero = 0;
	struct unwind_sample *e = bpf_map_lookup_elem(&unwind_scratch, &zero);
	if (!e)
		return 0;
	e->time_ns = bpf_ktime_get_ns();
	e->cgroup_id = bpf_get_current_cgroup_id();
	e->pid = pid;
	e->tid = (__u32)id;
	e->cpu = bpf_get_smp_processor_id();
	bpf_get_current_comm(&e->comm, sizeof(e->comm));
	e->kstack_bytes = bpf_get_stack(ctx, e->kstack, sizeof(e->kstack), 0);
	if (e->kstack_bytes < 0)
		count_drop(UNWIND_DROP_KSTACK);
	e->ustack_bytes = 0;
	e->stack_bytes = 0;
	e->ip = e->sp = e->bp = 0;
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	if (BPF_CORE_READ(task, mm)) {
		e->ustack_bytes = bpf_get_stack(ctx, e->ustack, sizeof(e->ustack), BPF_F_USER_STACK);
		if (e->ustack_bytes <= 0)
			count_drop(UNWIND_DROP_USTACK);
		struct user_regs regs;
		if (read_user_regs(&regs)) {
			e->ip = regs.ip;
			e->sp = regs.sp;
			e->bp = regs.bp;
			e->stack_bytes = copy_user_stack(e->stack, regs.sp, stack_size);
		} else {
			count_drop(UNWIND_DROP_REGS);
		}
	}
	__u64 len = offsetof(struct unwind_sample, stack) + e->stack_bytes;
	if (len > sizeof(*e))
		len = sizeof(*e);
	if (bpf_ringbuf_output(&unwind_samples, e, len, submit_flags(&unwind_samples)) < 0)
		count_drop(UNWIND_DROP_RINGBUF);
	return 0;
}
