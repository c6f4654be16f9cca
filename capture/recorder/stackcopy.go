//go:build linux

package recorder

// Bounds of the user stack copied for CFI unwinding (--stack-size,
// --mem-unwind), as user_stack.h copies it: below 1 KiB hardly one frame of libc fits; the
// BPF buffer holds at most 16 KiB (per-CPU map values are limited to 32 KiB).
const (
	MinStackCopy = 1024
	MaxStackCopy = 16384
	StackChunk   = 1024
)
