//go:build linux

package offcpu

import "testing"

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
