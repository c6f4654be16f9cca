//go:build linux

package recorder

import (
	"slices"
	"testing"
)

// Return addresses move back into their call; the leaf and the stack's
// end stay; a failed walk (negative length) and an oversized length are
// bounded by the buffer.
func TestReturnAddressesOfStack(t *testing.T) {
	buf := []uint64{0x1000, 0x2001, 0x3001, 0, 0}
	if got := ReturnAddresses(StackOf(buf, 24)); !slices.Equal(got, []uint64{0x1000, 0x2000, 0x3000}) {
		t.Errorf("ReturnAddresses(StackOf(buf, 24)) = %#x", got)
	}
	if got := ReturnAddresses(StackOf(buf, -14)); len(got) != 0 {
		t.Errorf("a failed walk gave %#x", got)
	}
	if got := ReturnAddresses(StackOf(buf, 1<<20)); len(got) != len(buf) {
		t.Errorf("an oversized length gave %d frames", len(got))
	}
}
