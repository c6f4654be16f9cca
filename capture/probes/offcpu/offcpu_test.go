//go:build linux

package offcpu

import (
	"slices"
	"testing"
)

// Every kernel counter of enum offcpu_drop has a catalog name, in order.
func TestDropNamesMatchEnum(t *testing.T) {
	if len(offcpuDropNames) != int(bpfOffcpuDropOFFCPU_DROP_MAX) {
		t.Fatalf("%d names for %d counters", len(offcpuDropNames), bpfOffcpuDropOFFCPU_DROP_MAX)
	}
	if offcpuDropNames[bpfOffcpuDropOFFCPU_DROP_STACK_RINGBUF] != "offcpu.stack_ringbuf_full" ||
		offcpuDropNames[bpfOffcpuDropOFFCPU_DROP_KSTACK] != "offcpu.kernel_stack_failed" {
		t.Errorf("names out of the enum's order: %v", offcpuDropNames)
	}
}

// Return addresses move back into their call; the leaf and the stack's
// end stay.
func TestCallSites(t *testing.T) {
	buf := []uint64{0x1000, 0x2001, 0x3001, 0, 0}
	if got := callSites(buf, 24); !slices.Equal(got, []uint64{0x1000, 0x2000, 0x3000}) {
		t.Errorf("callSites = %#x", got)
	}
	if got := callSites(buf, -14); len(got) != 0 {
		t.Errorf("a failed walk gave %#x", got)
	}
	if got := callSites(buf, 1<<20); len(got) != len(buf) {
		t.Errorf("an oversized length gave %d frames", len(got))
	}
}
