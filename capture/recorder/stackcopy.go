//go:build linux

package recorder

import "fmt"

// Bounds of the user stack copied for CFI unwinding (--stack-size,
// --mem-unwind), as user_stack.h copies it: below 1 KiB hardly one frame of libc fits; the
// BPF buffer holds at most 16 KiB (per-CPU map values are limited to 32 KiB).
const (
	MinStackCopy = 1024
	MaxStackCopy = 16384
	StackChunk   = 1024
)

// CheckStackCopy validates the value n of a stack-copy size flag.
func CheckStackCopy(flag string, n int) error {
	if n < MinStackCopy || n > MaxStackCopy || n%StackChunk != 0 {
		return fmt.Errorf("%s %d: want a multiple of %d between %d and %d", flag, n, StackChunk, MinStackCopy, MaxStackCopy)
	}
	return nil
}
