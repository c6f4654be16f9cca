//go:build ignore

// Process lifecycle: fork, exec and exit of whole processes (not threads),
// from BTF-typed raw tracepoints. Fork also widens the target filter, so a
// command's whole process tree is followed from its first instruction.
//
// Targeting a pod, container or cgroup also widens it by cgroup: a process
// that enters a targeted cgroup subtree without being forked by a target
// (kubectl exec -> runc exec: forked by runc outside the pod, moved into the
// container's cgroup, then exec'd; a restarted container's new process)
// becomes a target when it forks, execs or is moved there.
#include "common.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

enum proc_kind {
	PROC_FORK = 1,
	PROC_EXEC = 2,
	PROC_EXIT = 3,
	// PROC_ATTACH: a process not yet followed was moved into a targeted
	// cgroup (cgroup.procs write); user space records it from /proc.
	PROC_ATTACH = 4,
	// PROC_OOM: the OOM killer chose this process (oom:mark_victim).
	PROC_OOM = 5,
};
// Kept in BTF for bpf2go's -type: the Go constants come from here.
const enum proc_kind *unused_proc_kind __attribute__((unused));

enum proc_drop {
	PROC_DROP_RINGBUF = 0,
	PROC_DROP_TARGETS_FULL = 1,
	PROC_DROP_MAX = 2,
};
// Kept in BTF for bpf2go's -type: the Go constants come from here.
const enum proc_drop *unused_proc_drop __attribute__((unused));

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
	// Namespaces read in the kernel, so a process that exits before user
	// space looks at /proc is still attributed: mount and pid namespace
	// inode numbers (what /proc/PID/ns/* link to) and the pid inside the
	// innermost pid namespace. Zero on exit events.
	__u32 mnt_ns;
	__u32 pid_ns;
	__u32 ns_pid;
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

// target_cgroups holds the cgroup v2 ids (kernfs node ids, the inode
// numbers of the cgroup directories) a capture targets: a pod's cgroup, a
// container's, or a --cgroup path. A task is in scope when its cgroup or
// any ancestor is in the map. Walking ancestors (rather than inserting
// every descendant and watching cgroup_mkdir) needs no user-space race
// handling: a container cgroup created under a targeted pod after the
// start is covered the moment it exists, and the walk runs only on fork,
// exec and cgroup migration of processes not already followed.
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u64);
	__type(value, __u8);
} target_cgroups SEC(".maps");

// filter_cgroups is set by user space when target_cgroups is filled; it
// implies filter_targets.
const volatile bool filter_cgroups = false;

// MAX_CGROUP_WALK bounds the ancestor walk: kubelet layouts put containers
// 3-4 levels deep (kubepods/<qos>/pod<uid>/<container>); a target more
// than this many levels above a task's cgroup is not matched.
#define MAX_CGROUP_WALK 16

static __always_inline __u64 task_cgroup_id(struct task_struct *t)
{
	return BPF_CORE_READ(t, cgroups, dfl_cgrp, kn, id);
}

static __always_inline bool in_target_cgroup(struct task_struct *t)
{
	struct cgroup *cg = BPF_CORE_READ(t, cgroups, dfl_cgrp);
	for (int i = 0; i < MAX_CGROUP_WALK && cg; i++) {
		__u64 id = BPF_CORE_READ(cg, kn, id);
		if (bpf_map_lookup_elem(&target_cgroups, &id))
			return true;
		// self is the first member of struct cgroup, so its css parent
		// is the parent cgroup.
		cg = (struct cgroup *)BPF_CORE_READ(cg, self.parent);
	}
	return false;
}

// follow reports whether tgid is (now) a target: already one, or in a
// targeted cgroup, in which case it is added to the shared targets map so
// every probe set records it from here on.
static __always_inline bool follow(__u32 tgid, struct task_struct *t)
{
	if (is_target(tgid))
		return true;
	if (!filter_cgroups || !in_target_cgroup(t))
		return false;
	__u8 one = 1;
	if (bpf_map_update_elem(&targets, &tgid, &one, BPF_ANY))
		count_drop(PROC_DROP_TARGETS_FULL);
	return true;
}

static __always_inline void fill_ns(struct process_event *e, struct task_struct *t)
{
	e->mnt_ns = BPF_CORE_READ(t, nsproxy, mnt_ns, ns.inum);
	struct pid *tp = BPF_CORE_READ(t, thread_pid);
	unsigned int level = BPF_CORE_READ(tp, level);
	// Bounded for the verifier; pid namespaces nest at most 32 deep.
	if (level > 32)
		return;
	struct upid up = {};
	bpf_core_read(&up, sizeof(up), &tp->numbers[level]);
	e->ns_pid = up.nr;
	e->pid_ns = BPF_CORE_READ(up.ns, ns.inum);
}

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
	e->mnt_ns = 0;
	e->pid_ns = 0;
	e->ns_pid = 0;
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
		// The child of a target, or a child placed in a targeted cgroup
		// (its parent's, or another one with clone3's CLONE_INTO_CGROUP).
		if (!bpf_map_lookup_elem(&targets, &ppid) &&
		    !(filter_cgroups && in_target_cgroup(child)))
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
	// The child's own cgroup: the current task is the parent here.
	e->cgroup_id = task_cgroup_id(child);
	fill_ns(e, child);
	BPF_CORE_READ_STR_INTO(&e->comm, child, comm);
	bpf_ringbuf_submit(e, submit_flags(&process_events));
	return 0;
}

SEC("tp_btf/sched_process_exec")
int BPF_PROG(handle_exec, struct task_struct *p, pid_t old_pid, struct linux_binprm *bprm)
{
	__u32 pid = BPF_CORE_READ(p, tgid);
	if (!follow(pid, p))
		return 0;
	struct process_event *e = reserve(PROC_EXEC);
	if (!e)
		return 0;
	e->pid = pid;
	e->ppid = BPF_CORE_READ(p, real_parent, tgid);
	e->start_ns = BPF_CORE_READ(p, group_leader, start_time);
	fill_ns(e, p);
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
	// The pid leaves the targets even when its exit event is lost: under a
	// flood, a stale entry made the next process to reuse the pid a target.
	if (filter_targets)
		bpf_map_delete_elem(&targets, &pid);
	struct process_event *e = reserve(PROC_EXIT);
	if (!e)
		return 0;
	e->pid = pid;
	e->ppid = BPF_CORE_READ(p, real_parent, tgid);
	e->start_ns = BPF_CORE_READ(p, group_leader, start_time);
	e->exit_code = BPF_CORE_READ(p, exit_code);
	BPF_CORE_READ_STR_INTO(&e->comm, p, comm);
	bpf_ringbuf_submit(e, submit_flags(&process_events));
	return 0;
}

// A process moved into a targeted cgroup (a write to cgroup.procs) is
// followed from the move on, before any exec. Migrations are rare (runtime
// setup, systemd), so the walk here costs nothing measurable. Only
// attached when filter_cgroups is set.
SEC("tp_btf/cgroup_attach_task")
int BPF_PROG(handle_cgroup_attach, struct cgroup *dst, const char *path, struct task_struct *task, bool threadgroup)
{
	__u32 pid = BPF_CORE_READ(task, tgid);
	if (!filter_cgroups || is_target(pid))
		return 0;
	// The tracepoint fires after the move; a v1 hierarchy's move leaves
	// the v2 cgroup as it was, and the walk then finds nothing new.
	if (!follow(pid, task))
		return 0;
	struct process_event *e = reserve(PROC_ATTACH);
	if (!e)
		return 0;
	e->pid = pid;
	e->ppid = BPF_CORE_READ(task, real_parent, tgid);
	e->start_ns = BPF_CORE_READ(task, group_leader, start_time);
	e->cgroup_id = task_cgroup_id(task);
	fill_ns(e, task);
	BPF_CORE_READ_STR_INTO(&e->comm, task, group_leader, comm);
	bpf_ringbuf_submit(e, submit_flags(&process_events));
	return 0;
}

// The OOM killer chose a victim. The classic tracepoint, read through
// CO-RE, has the pid field on every kernel (the raw tracepoint's arguments
// changed in 6.8). Rare; attached when tracefs is there.
SEC("tracepoint/oom/mark_victim")
int handle_oom(struct trace_event_raw_mark_victim *ctx)
{
	__u32 pid = BPF_CORE_READ(ctx, pid);
	if (!is_target(pid))
		return 0;
	struct process_event *e = reserve(PROC_OOM);
	if (!e)
		return 0;
	e->pid = pid;
	e->ppid = 0;
	e->start_ns = 0;
	e->comm[0] = 0;
	bpf_ringbuf_submit(e, submit_flags(&process_events));
	return 0;
}
