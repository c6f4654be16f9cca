package report

import (
	"testing"

	"github.com/bpfsnap/bpfsnap/analyze"
)

// The memory headline: a leak of a process that allocates outside libc
// (the loader's bytes in a Go service) is never the biggest leak; a libc
// leak of another process still is.
func TestGlanceMemOutsideLibc(t *testing.T) {
	m := &analyze.MemSummary{
		Leaks: []analyze.MemLeak{
			{PID: 7, Bytes: 576, Stack: []string{"ld-linux-x86-64.so.2+0x10cb2"}},
			{PID: 8, Bytes: 4096, Stack: []string{"leak_malloc"}},
		},
		OutsideLibc: []analyze.MemOutsideLibc{{PID: 7, Runtime: "Go runtime", GrowingBytes: 36 << 20}},
	}
	var g glance
	glanceMem(&g, m)
	if g.BiggestLeak == nil || g.BiggestLeak.PID != 8 || g.OutsideLibc == nil || g.OutsideLibc.PID != 7 {
		t.Fatalf("biggest leak %+v, outside libc %+v", g.BiggestLeak, g.OutsideLibc)
	}
	only := &analyze.MemSummary{Leaks: m.Leaks[:1], OutsideLibc: m.OutsideLibc}
	g = glance{}
	glanceMem(&g, only)
	if g.BiggestLeak != nil {
		t.Errorf("the Go service's loader allocation is the biggest leak: %+v", g.BiggestLeak)
	}
}
