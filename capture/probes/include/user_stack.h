// Copying a thread's user registers and the top of its user stack, for
// DWARF unwinding in user space (capture/recorder/stacks_unwind.go,
// StackRecorder.RecordUserStack). Shared by every probe set that records
// user stacks (cpu, mem, growth); and the frame-pointer walk done in the
// kernel where no copy is wanted.
#pragma once

#include "common.h"

// Upper bound of a copy. Per-CPU map values are limited to 32 KiB, so the
// buffer holding a copy plus its event header must stay below that.
#define USER_STACK_MAX 16384
// The stack is copied in chunks: bpf_probe_read_user fails as a whole on a
// fault, so a copy running past the top of the stack keeps the chunks
// before it.
#define USER_STACK_CHUNK 1024

struct user_regs {
	__u64 ip;
	__u64 sp;
	__u64 bp;
};

// read_user_regs fills regs with the current thread's user registers (the
// ones saved at kernel entry when the program runs in kernel context).
// Returns false for kernel threads or when the registers are unavailable.
static __always_inline bool read_user_regs(struct user_regs *regs)
{
	struct task_struct *task = bpf_get_current_task_btf();
	regs->ip = regs->sp = regs->bp = 0;
	if (!BPF_CORE_READ(task, mm))
		return false;
	struct pt_regs *pt = (struct pt_regs *)bpf_task_pt_regs(task);
	if (!pt)
		return false;
	regs->ip = BPF_CORE_READ(pt, ip);
	regs->sp = BPF_CORE_READ(pt, sp);
	regs->bp = BPF_CORE_READ(pt, bp);
	return regs->sp != 0;
}

// copy_user_stack copies up to size bytes (a multiple of USER_STACK_CHUNK,
// at most USER_STACK_MAX) from sp into buf and returns the bytes copied.
static __always_inline __u32 copy_user_stack(__u8 *buf, __u64 sp, __u32 size)
{
	__u32 copied = 0;
	__u32 n = size / USER_STACK_CHUNK;
	for (__u32 i = 0; i < USER_STACK_MAX / USER_STACK_CHUNK && i < n; i++) {
		__u32 off = i * USER_STACK_CHUNK;
		if (off > USER_STACK_MAX - USER_STACK_CHUNK)
			break;
		if (bpf_probe_read_user(&buf[off], USER_STACK_CHUNK, (void *)(sp + off)) < 0)
			break;
		copied = off + USER_STACK_CHUNK;
	}
	return copied;
}

// Frames a frame-pointer walk records (walk_user_fp).
#define USER_FP_DEPTH 64

struct fp_frame {
	__u64 next;
	__u64 ret;
};

// walk_user_fp follows the frame-pointer chain from the user registers into
// out (USER_FP_DEPTH slots; leaf first, as bpf_get_stack with
// BPF_F_USER_STACK would) and returns the bytes written. Measured here, it
// costs a fifth of bpf_get_stack's user walk (~0.15 vs ~0.7 µs at three
// frames, see docs/architecture.md).
static __always_inline __s32 walk_user_fp(struct user_regs *ur, __u64 *out)
{
	out[0] = ur->ip;
	__u32 n = 1;
	__u64 bp = ur->bp;
	for (int i = 1; i < USER_FP_DEPTH; i++) {
		struct fp_frame f;
		if (!bp || bp & 7 || bpf_probe_read_user(&f, sizeof(f), (void *)bp))
			break;
		if (!f.ret)
			break;
		out[i] = f.ret;
		n = i + 1;
		// Callers' frames sit at higher addresses: anything else is not
		// a frame chain (code without frame pointers uses rbp freely).
		if (f.next <= bp)
			break;
		bp = f.next;
	}
	return n * 8;
}
