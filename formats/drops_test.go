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
