package formats

import "testing"

func TestDropCatalog(t *testing.T) {
	for _, r := range DropReasons() {
		switch r.Class {
		case DropLost, DropIncomplete, DropNoted:
		default:
			t.Errorf("%s: class %q", r.Name, r.Class)
		}
		if r.Meaning == "" {
			t.Errorf("%s has no meaning", r.Name)
		}
	}
	if r, ok := LookupDrop("future.thing"); ok || r.Class != DropLost {
		t.Errorf("unknown reason read as %+v, %v; want lost", r, ok)
	}
	if got := DropNames("cpu", "ringbuf_full", "user_regs_missing"); got[0] != "cpu.ringbuf_full" || got[1] != "cpu.user_regs_missing" {
		t.Errorf("DropNames = %v", got)
	}
	defer func() {
		if recover() == nil {
			t.Error("DropNames accepted a reason missing from the catalog")
		}
	}()
	DropNames("cpu", "no_such_reason")
}

// The status line and the capture summary read these sums: a stack cut
// short must not be counted as an event lost.
func TestDropsByClass(t *testing.T) {
	m := &Manifest{Drops: map[string]uint64{
		"cpu.ringbuf_full": 3, "mem.inflight_full": 2,
		"cpu.unwind_outside_stack": 5, "stacks.unsymbolized_frames": 9,
		"http.retransmitted": 4, "future.counter": 1,
	}}
	got := m.DropsByClass()
	if got[DropLost] != 6 || got[DropIncomplete] != 14 || got[DropNoted] != 4 {
		t.Errorf("DropsByClass = %v; want lost 6 (an unknown counter counts as lost), incomplete 14, noted 4", got)
	}
}
