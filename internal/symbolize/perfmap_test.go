package symbolize

import (
	"bytes"
	"encoding/binary"
	"strings"
	"testing"
)

func TestParsePerfMap(t *testing.T) {
	in := strings.Join([]string{
		"7dd4c2e8076 9b JS:~initialize node:internal/process/pre_execution:432:46", // node: no 0x
		"0x00007fcc10ec7600 0x0000000000000358 long Hot.hotLoop(int)",              // JVM: 0x, spaces in the name
		"7f69a57ebcd0 b py::inner:/tmp/busy.py",                                    // python -X perf
		"nothex 10 x",                                                              // malformed
		"1000 0 zero",                                                              // empty range
		"1000 10",                                                                  // no name
		"ffffffffffffffff 10 wraps",                                                // overflows
		"  2000\t20\tTabs and trailing   \r",
		"3000 10 " + strings.Repeat("n", maxPerfMapLine+10), // overlong: skipped whole
		"4000 10 after the long line",
		"5000 10 being written",
	}, "\n")
	var got []JITSymbol
	skipped, err := ParsePerfMap(strings.NewReader(in), 0, func(s JITSymbol) { got = append(got, s) })
	if err != nil {
		t.Fatal(err)
	}
	want := []JITSymbol{
		{0x7dd4c2e8076, 0x9b, "JS:~initialize node:internal/process/pre_execution:432:46"},
		{0x7fcc10ec7600, 0x358, "long Hot.hotLoop(int)"},
		{0x7f69a57ebcd0, 0xb, "py::inner:/tmp/busy.py"},
		{0x2000, 0x20, "Tabs and trailing"},
		{0x4000, 0x10, "after the long line"},
	}
	if len(got) != len(want) || skipped != 6 {
		t.Fatalf("got %d symbols (%d skipped): %+v", len(got), skipped, got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("symbol %d: %+v, want %+v", i, got[i], want[i])
		}
	}
	// The limit stops reading.
	got = nil
	ParsePerfMap(strings.NewReader(in), 20, func(s JITSymbol) { got = append(got, s) })
	if len(got) != 0 {
		t.Errorf("a 20-byte limit still gave %+v", got)
	}
}

// jitdump writes a jitdump file in the given byte order: header, then the
// records.
type jitdump struct {
	buf   bytes.Buffer
	order binary.ByteOrder
}

func newJITDump(order binary.ByteOrder) *jitdump {
	d := &jitdump{order: order}
	hdr := make([]byte, 40)
	order.PutUint32(hdr[0:], jitdumpMagic)
	order.PutUint32(hdr[4:], 1)
	order.PutUint32(hdr[8:], 40)
	order.PutUint32(hdr[12:], 62) // EM_X86_64
	d.buf.Write(hdr)
	return d
}

func (d *jitdump) record(id uint32, body []byte) {
	h := make([]byte, 16)
	d.order.PutUint32(h[0:], id)
	d.order.PutUint32(h[4:], uint32(16+len(body)))
	d.buf.Write(h)
	d.buf.Write(body)
}

func (d *jitdump) load(addr, size, index uint64, name string) {
	b := make([]byte, 40)
	d.order.PutUint64(b[8:], addr)
	d.order.PutUint64(b[16:], addr)
	d.order.PutUint64(b[24:], size)
	d.order.PutUint64(b[32:], index)
	b = append(b, name...)
	b = append(b, 0)
	b = append(b, make([]byte, size)...) // the code
	d.record(jitCodeLoad, b)
}

func (d *jitdump) move(from, to, size, index uint64) {
	b := make([]byte, 48)
	d.order.PutUint64(b[16:], from)
	d.order.PutUint64(b[24:], to)
	d.order.PutUint64(b[32:], size)
	d.order.PutUint64(b[40:], index)
	d.record(jitCodeMove, b)
}

func TestParseJITDump(t *testing.T) {
	for _, order := range []binary.ByteOrder{binary.LittleEndian, binary.BigEndian} {
		d := newJITDump(order)
		d.load(0x1000, 0x40, 1, "py::inner:/tmp/busy.py")
		d.record(2, make([]byte, 24))  // debug info: skipped
		d.record(4, make([]byte, 100)) // unwinding info: skipped
		d.load(0x2000, 0x10, 2, "py::outer:/tmp/busy.py")
		d.move(0x1000, 0x5000, 0x40, 1)
		d.move(0x9000, 0xa000, 0x40, 77) // unknown index: nothing
		full := d.buf.Len()
		d.load(0x3000, 0x10, 3, "truncated") // cut below
		data := d.buf.Bytes()[:full+20]
		var got []JITSymbol
		if err := ParseJITDump(bytes.NewReader(data), 0, func(s JITSymbol) { got = append(got, s) }); err != nil {
			t.Fatal(err)
		}
		want := []JITSymbol{{0x1000, 0x40, "py::inner:/tmp/busy.py"}, {0x2000, 0x10, "py::outer:/tmp/busy.py"}, {0x5000, 0x40, "py::inner:/tmp/busy.py"}}
		if len(got) != len(want) {
			t.Fatalf("%v: got %+v", order, got)
		}
		for i := range want {
			if got[i] != want[i] {
				t.Errorf("%v: symbol %d %+v, want %+v", order, i, got[i], want[i])
			}
		}
	}
	if err := ParseJITDump(strings.NewReader("not a jitdump at all, but long enough for a header"), 0, func(JITSymbol) {}); err != ErrNotJITDump {
		t.Errorf("a text file: %v", err)
	}
	// A record claiming fewer bytes than its header is refused, not looped on.
	d := newJITDump(binary.LittleEndian)
	d.buf.Write([]byte{0, 0, 0, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0})
	if err := ParseJITDump(&d.buf, 0, func(JITSymbol) {}); err == nil {
		t.Error("a 4-byte record was accepted")
	}
}

// The last symbol containing an address names it: runtimes reuse the
// addresses of code they freed, and a map's later lines are newer.
func TestJITNamerLastWins(t *testing.T) {
	n := NewJITNamer([]uint64{0x1010, 0x1010, 0x2000, 0x3000, 0x1080})
	n.Add(JITSymbol{0x1000, 0x100, "old"})
	n.Add(JITSymbol{0x1000, 0x20, "newer"}) // covers 0x1010 only
	n.Add(JITSymbol{0x5000, 0x10, "unused"})
	n.Add(JITSymbol{0x2000, 0x1, "exact"})
	for addr, want := range map[uint64]string{0x1010: "newer", 0x1080: "old", 0x2000: "exact", 0x3000: ""} {
		s, ok := n.Lookup(addr)
		if s.Name != want || ok != (want != "") {
			t.Errorf("%#x: %q %v, want %q", addr, s.Name, ok, want)
		}
	}
	var names []string
	for _, s := range n.Symbols() {
		names = append(names, s.Name)
	}
	if strings.Join(names, ",") != "old,newer,exact" {
		t.Errorf("kept symbols %v", names)
	}
	// Replaying the kept symbols in order names every address the same way
	// (what the archive's reader does with jit_symbols).
	again := NewJITNamer([]uint64{0x1010, 0x2000, 0x3000, 0x1080})
	for _, s := range n.Symbols() {
		again.Add(s)
	}
	for _, a := range []uint64{0x1010, 0x1080, 0x2000, 0x3000} {
		s1, _ := n.Lookup(a)
		s2, _ := again.Lookup(a)
		if s1 != s2 {
			t.Errorf("%#x: %+v after replay, %+v before", a, s2, s1)
		}
	}
}

func FuzzParseJITDump(f *testing.F) {
	d := newJITDump(binary.LittleEndian)
	d.load(0x1000, 0x40, 1, "x")
	d.move(0x1000, 0x2000, 0x40, 1)
	f.Add(d.buf.Bytes())
	f.Fuzz(func(t *testing.T, data []byte) {
		ParseJITDump(bytes.NewReader(data), 1<<20, func(JITSymbol) {})
		ParsePerfMap(bytes.NewReader(data), 1<<20, func(JITSymbol) {})
	})
}
