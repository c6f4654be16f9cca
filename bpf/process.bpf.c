//go:build ignore

// Process lifecycle: fork, exec and exit of whole processes (not threads),
// from BTF-typed raw tracepoints. Fork also widens the target filter, so a
// command's whole process tree is followed from its first instruction.
#include "common.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

enum proc_kind {
	PROC_FORK = 1,
	PROC_EXEC = 2,
	PROC_EXIT = 3,
};

enum proc_drop {
	PROC_DROP_RINGBUF = 0,
	PROC_DROP_TARGETS_FULL = 1,
	PROC_DROP_MAX = 2,
};

DECLARE_DROPS(PROC_DROP_MAX);

#define FILENAME_LEN 256
#define ARGS_LEN 256

struct process_event {
	__u64 time_ns;
	__u64 start_ns;
	__u64 cgroup_id;
	__u32 kind;
	__u32 pid;
	__u32 ppid;
	__s32 exit_code;
	char comm[TASK_COMM_LEN];
	char filename[FILENAME_LEN];
	// args holds the first ARGS_LEN bytes of the new program's argv (NUL
	// separated), read in the kernel so processes that exit at once still
	// have a command line; args_len is how many bytes were copied.
	__u32 args_len;
	char args[ARGS_LEN];
};

// Force the type into BTF so bpf2go can generate its Go twin.
const struct process_event *unused_process_event __attribute__((unused));

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 256 * 1024);
} process_events SEC(".maps");

static __always_inline struct process_event *reserve(__u32 kind)
{
	struct process_event *e = bpf_ringbuf_reserve(&process_events, sizeof(*e), 0);
	if (!e) {
		count_drop(PROC_DROP_RINGBUF);
		return NULL;
	}
	e->time_ns = bpf_ktime_get_ns();
	e->kind = kind;
	e->cgroup_id = bpf_get_current_cgroup_id();
	e->exit_code = 0;
	e->filename[0] = 0;
	e->args_len = 0;
	return e;
}

SEC("tp_btf/sched_process_fork")
int BPF_PROG(handle_fork, struct task_struct *parent, struct task_struct *child)
{
	__u32 pid = BPF_CORE_READ(child, tgid);
	// A new thread shares its parent's tgid; only new processes matter.
	if (BPF_CORE_READ(child, pid) != pid)
		return 0;
	__u32 ppid = BPF_CORE_READ(parent, tgid);
	if (filter_targets) {
		if (!bpf_map_lookup_elem(&targets, &ppid))
			return 0;
		__u8 one = 1;
		if (bpf_map_update_elem(&targets, &pid, &one, BPF_ANY))
			count_drop(PROC_DROP_TARGETS_FULL);
	}
	struct process_event *e = reserve(PROC_FORK);
	if (!e)
		return 0;
	e->pid = pid;
	e->ppid = ppid;
	e->start_ns = BPF_CORE_READ(child, start_time);
	BPF_CORE_READ_STR_INTO(&e->comm, child, comm);
	bpf_ringbuf_submit(e, submit_flags(&process_events));
	return 0;
}

SEC("tp_btf/sched_process_exec")
int BPF_PROG(handle_exec, struct task_struct *p, pid_t old_pid, struct linux_binprm *bprm)
{
	__u32 pid = BPF_CORE_READ(p, tgid);
	if (!is_target(pid))
		return 0;
	struct process_event *e = reserve(PROC_EXEC);
	if (!e)
		return 0;
	e->pid = pid;
	e->ppid = BPF_CORE_READ(p, real_parent, tgid);
	e->start_ns = BPF_CORE_READ(p, group_leader, start_time);
	BPF_CORE_READ_STR_INTO(&e->comm, p, comm);
	bpf_probe_read_kernel_str(&e->filename, sizeof(e->filename), BPF_CORE_READ(bprm, filename));
	// The exec tracepoint runs in the new program's context, so its argv
	// is readable user memory now.
	struct mm_struct *mm = BPF_CORE_READ(p, mm);
	unsigned long start = BPF_CORE_READ(mm, arg_start);
	unsigned long end = BPF_CORE_READ(mm, arg_end);
	__u32 len = end > start ? end - start : 0;
	// The mask keeps the size provably inside the buffer for the verifier.
	if (len > ARGS_LEN - 1)
		len = ARGS_LEN - 1;
	len &= ARGS_LEN - 1;
	if (len > 0 && bpf_probe_read_user(&e->args, len, (void *)start) == 0)
		e->args_len = len;
	bpf_ringbuf_submit(e, submit_flags(&process_events));
	return 0;
}

SEC("tp_btf/sched_process_exit")
int BPF_PROG(handle_exit, struct task_struct *p)
{
	__u32 pid = BPF_CORE_READ(p, tgid);
	// The tracepoint fires for every thread; the process is gone when the
	// last one leaves (do_exit decrements signal->live before this point).
	if (BPF_CORE_READ(p, signal, live.counter) != 0)
		return 0;
	if (!is_target(pid))
		return 0;
	struct process_event *e = reserve(PROC_EXIT);
	if (!e)
		return 0;
	e->pid = pid;
	e->ppid = BPF_CORE_READ(p, real_parent, tgid);
	e->start_ns = BPF_CORE_READ(p, group_leader, start_time);
	e->exit_code = BPF_CORE_READ(p, exit_code);
	BPF_CORE_READ_STR_INTO(&e->comm, p, comm);
	bpf_ringbuf_submit(e, submit_flags(&process_events));
	if (filter_targets)
		bpf_map_delete_elem(&targets, &pid);
	return 0;
}
