//go:build linux

package capture

import (
	"testing"

	"github.com/bpfsnap/bpfsnap/internal/testenv"
)

// On this project's machines (kernel without kprobes, fentry locked down)
// doctor must say exactly that, find everything bpfsnap needs working, and
// allow a capture.
func TestDoctorOnThisKernel(t *testing.T) {
	testenv.RequireBPF(t)
	r := Doctor()
	byName := map[string]Check{}
	for _, c := range r.Checks {
		byName[c.Name] = c
	}
	for _, need := range []string{"btf", "privileges", "tracefs", "ringbuf", "tracepoint", "tp_btf", "perf_event", "uprobe.multi", "uretprobe.multi", "cgroup_skb"} {
		c, ok := byName[need]
		if !ok || !c.OK {
			t.Errorf("%s: %+v", need, c)
		}
	}
	if !r.CanRun {
		t.Errorf("doctor says capture cannot run: %+v", r)
	}
	// These two depend on the kernel: report them, and check doctor does
	// not claim a feature that a live attach refuted.
	for _, name := range []string{"kprobe", "fentry"} {
		c := byName[name]
		t.Logf("%s: ok=%v %s", name, c.OK, c.Detail)
		if c.Required {
			t.Errorf("%s must not be required", name)
		}
	}
	if !kprobeSupport() && byName["kprobe"].OK {
		t.Errorf("kprobe reported working on a kernel without kprobe support")
	}
}
