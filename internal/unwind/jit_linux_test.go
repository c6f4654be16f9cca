//go:build linux

package unwind

import (
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/bpfsnap/bpfsnap/internal/symbolize"
)

// procMemReader reads a live process's memory, as the recorder does for
// anonymous code.
func procMemReader(t *testing.T, pid int) func(addr uint64, buf []byte) int {
	t.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/mem", pid))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return func(addr uint64, buf []byte) int {
		n, _ := f.ReadAt(buf, int64(addr))
		return n
	}
}

// A frame in anonymous code with neither CFI nor a frame pointer (CPython's
// -X perf trampoline, copied byte for byte) whose rbp points at a fake frame
// on the stack: the frame-pointer step is refused (its "return address"
// follows no call), the trampoline's epilogue unwinds it, and the walk goes
// on through CFI to _start. In CFI-only mode the walk stops at the
// trampoline and says why.
func TestUnwindThroughJITTrampoline(t *testing.T) {
	cmd := startChain(t, "tramp.c", "-O2", "-fomit-frame-pointer")
	smp := sampleWithPtrace(t, cmd.Process.Pid, 16<<10)
	sym := &symbolizer{maps: smp.maps, bins: map[string]*symbolize.Binary{}}
	names := func(r Result) []string {
		var out []string
		for i, pc := range r.PCs {
			if i > 0 {
				pc--
			}
			out = append(out, sym.name(pc))
		}
		return out
	}
	proc := NewProcess(smp.maps, NewCache().Mapping)
	proc.SetCodeReader(procMemReader(t, cmd.Process.Pid))
	res := Unwind(proc, smp.regs, smp.stack, Options{FramePointerFallback: true})
	got := names(res)
	t.Logf("%s after %d frames: %s", res.Reason, len(got), strings.Join(got, " <- "))
	if res.Reason != ReasonEnd || got[len(got)-1] != "_start" {
		t.Errorf("walk ended with %s at %q, want the outermost frame _start", res.Reason, got[len(got)-1])
	}
	if err := inOrder(got, []string{"chain_leaf", "jit_target", "call_via", "chain_a", "main"}); err != nil {
		t.Error(err)
	}
	// Exactly one frame between jit_target and call_via: the trampoline,
	// in anonymous memory.
	if i, j := indexOf(got, "jit_target"), indexOf(got, "call_via"); i < 0 || j-i != 2 {
		t.Errorf("not one frame between jit_target and call_via: %v", got)
	} else if m, ok := symbolize.Find(smp.maps, res.PCs[i+1]); !ok || m.FileBacked() {
		t.Errorf("the frame after jit_target is not in anonymous code: %#x", res.PCs[i+1])
	}
	if n := strings.Count(strings.Join(got, " "), "jit_target"); n != 1 {
		t.Errorf("jit_target appears %d times: the fake frame was taken: %v", n, got)
	}

	// CFI only (--unwind dwarf): the walk stops at the trampoline.
	strict := Unwind(proc, smp.regs, smp.stack, Options{})
	if strict.Reason != ReasonNoModule || len(strict.PCs) != 3 {
		t.Errorf("CFI-only walk: %s after %d frames (%v), want no_module at the trampoline", strict.Reason, len(strict.PCs), names(strict))
	}
}
