//go:build ignore

// CPU profiling: a perf_event program on the software cpu-clock event of
// every CPU. Each sample carries the kernel and user stacks as raw
// instruction pointers; user space deduplicates and symbolizes them.
#include "common.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

#define MAX_STACK_DEPTH 127

enum cpu_drop {
	CPU_DROP_RINGBUF = 0,
	CPU_DROP_KSTACK = 1,
	CPU_DROP_USTACK = 2,
	CPU_DROP_MAX = 3,
};
// Kept in BTF for bpf2go's -type: the Go constants come from here.
const enum cpu_drop *unused_cpu_drop __attribute__((unused));

DECLARE_DROPS(CPU_DROP_MAX);

struct cpu_sample {
	__u64 time_ns;
	__u64 cgroup_id;
	__u32 pid;
	__u32 tid;
	__u32 cpu;
	// Bytes written by bpf_get_stack (8 per frame), 0 when none.
	__s32 kstack_bytes;
	__s32 ustack_bytes;
	__u32 pad;
	char comm[TASK_COMM_LEN];
	__u64 kstack[MAX_STACK_DEPTH];
	__u64 ustack[MAX_STACK_DEPTH];
};

const struct cpu_sample *unused_cpu_sample __attribute__((unused));

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4 * 1024 * 1024);
} cpu_samples SEC(".maps");

SEC("perf_event")
int sample_cpu(struct bpf_perf_event_data *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u32 pid = id >> 32;
	// pid 0 is the idle task: not CPU anybody asked about.
	if (pid == 0 || !is_target(pid))
		return 0;
	struct cpu_sample *e = bpf_ringbuf_reserve(&cpu_samples, sizeof(*e), 0);
	if (!e) {
		count_drop(CPU_DROP_RINGBUF);
		return 0;
	}
	e->time_ns = bpf_ktime_get_ns();
	e->cgroup_id = bpf_get_current_cgroup_id();
	e->pid = pid;
	e->tid = (__u32)id;
	e->cpu = bpf_get_smp_processor_id();
	e->pad = 0;
	bpf_get_current_comm(&e->comm, sizeof(e->comm));
	e->kstack_bytes = bpf_get_stack(ctx, e->kstack, sizeof(e->kstack), 0);
	if (e->kstack_bytes < 0)
		count_drop(CPU_DROP_KSTACK);
	e->ustack_bytes = 0;
	// Kernel threads have no user stack; that is not a loss.
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	if (BPF_CORE_READ(task, mm)) {
		e->ustack_bytes = bpf_get_stack(ctx, e->ustack, sizeof(e->ustack), BPF_F_USER_STACK);
		if (e->ustack_bytes <= 0)
			count_drop(CPU_DROP_USTACK);
	}
	bpf_ringbuf_submit(e, submit_flags(&cpu_samples));
	return 0;
}
