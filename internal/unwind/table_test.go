package unwind

import (
	"bufio"
	"bytes"
	"debug/elf"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"

	"github.com/bpfsnap/bpfsnap/internal/testenv"
)

var regNames = map[string]uint64{
	"rax": 0, "rdx": 1, "rcx": 2, "rbx": 3, "rsi": 4, "rdi": 5, "rbp": 6, "rsp": 7,
	"r8": 8, "r9": 9, "r10": 10, "r11": 11, "r12": 12, "r13": 13, "r14": 14, "r15": 15, "ra": 16,
}

// readelfRow is one row of `readelf --debug-dump=frames-interp`.
type readelfRow struct {
	loc  uint64
	cols map[string]string
}

// readelfRows runs binutils' independent CFI interpreter on path.
func readelfRows(t *testing.T, path string) []readelfRow {
	t.Helper()
	readelf := testenv.RequireTool(t, "readelf")
	// readelf exits 1 over unrelated warnings (e.g. a missing debug link)
	// while printing every table: judge by the output.
	out, err := exec.Command(readelf, "--debug-dump=frames-interp", path).Output()
	if len(out) == 0 {
		t.Fatalf("readelf: %v", err)
	}
	var rows []readelfRow
	var header []string
	inFDE := false
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		switch {
		case len(f) >= 4 && f[3] == "FDE":
			inFDE, header = true, nil
		case len(f) >= 4 && f[3] == "CIE":
			inFDE = false
		case inFDE && len(f) > 1 && f[0] == "LOC":
			header = f
		case inFDE && header != nil && len(f) == len(header) && len(f[0]) == 16:
			loc, err := strconv.ParseUint(f[0], 16, 64)
			if err != nil {
				continue
			}
			r := readelfRow{loc: loc, cols: map[string]string{}}
			for i := 1; i < len(f); i++ {
				r.cols[header[i]] = f[i]
			}
			rows = append(rows, r)
		}
	}
	return rows
}

// compareWithReadelf checks our row at every location readelf lists: the CFA
// rule and the return address and rbp rules must agree.
func compareWithReadelf(t *testing.T, path string) {
	tab, err := LoadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	rows := readelfRows(t, path)
	if len(rows) < 10 {
		t.Fatalf("readelf listed only %d rows", len(rows))
	}
	bad := 0
	for _, want := range rows {
		got, ok, err := tab.RowAt(want.loc)
		if err != nil || !ok {
			t.Errorf("%#x: no row (%v)", want.loc, err)
			bad++
			continue
		}
		if msg := diffRow(got, want); msg != "" {
			t.Errorf("%#x: %s", want.loc, msg)
			bad++
		}
		if bad > 10 {
			t.Fatal("too many differences")
		}
	}
	t.Logf("%s: %d FDEs, %d rows agree with readelf", path, tab.FDEs(), len(rows))
}

func diffRow(got Row, want readelfRow) string {
	cfa := want.cols["CFA"]
	if cfa == "exp" {
		if got.CFA.expr == nil {
			return fmt.Sprintf("CFA: want expression, got r%d%+d", got.CFA.reg, got.CFA.off)
		}
	} else {
		i := strings.IndexAny(cfa, "+-")
		if i < 0 {
			return "cannot parse readelf CFA " + cfa
		}
		off, _ := strconv.ParseInt(cfa[i:], 10, 64)
		if got.CFA.expr != nil || got.CFA.reg != regNames[cfa[:i]] || got.CFA.off != off {
			return fmt.Sprintf("CFA: want %s, got r%d%+d (expr %v)", cfa, got.CFA.reg, got.CFA.off, got.CFA.expr != nil)
		}
	}
	for _, name := range []string{"ra", "rbp", "rbx"} {
		w, ok := want.cols[name]
		if !ok {
			continue
		}
		r := got.Regs[regNames[name]]
		switch {
		case w == "u":
			if r.kind != ruleUndefined && r.kind != ruleUnspecified {
				return fmt.Sprintf("%s: want undefined, got kind %d", name, r.kind)
			}
		case w == "s":
			if r.kind != ruleSame {
				return fmt.Sprintf("%s: want same value, got kind %d", name, r.kind)
			}
		case w == "exp":
			if r.kind != ruleExpr {
				return fmt.Sprintf("%s: want expression, got kind %d", name, r.kind)
			}
		case strings.HasPrefix(w, "c"):
			off, _ := strconv.ParseInt(w[1:], 10, 64)
			if r.kind != ruleOffset || r.off != off {
				return fmt.Sprintf("%s: want %s, got kind %d off %d", name, w, r.kind, r.off)
			}
		}
	}
	return ""
}

func TestRowsMatchReadelfCompiled(t *testing.T) {
	compareWithReadelf(t, buildC(t, "chain.c", "-O2", "-fomit-frame-pointer"))
}

func TestRowsMatchReadelfLibc(t *testing.T) {
	libc := "/lib/x86_64-linux-gnu/libc.so.6"
	if _, err := os.Stat(libc); err != nil {
		testenv.Skip(t, "no system libc at "+libc)
	}
	compareWithReadelf(t, libc)
}

// The same rows must come out whether FDEs are found through .eh_frame_hdr or
// by a full scan of .eh_frame.
func TestHdrAndScanAgree(t *testing.T) {
	path := buildC(t, "chain.c", "-O2", "-fomit-frame-pointer")
	tab, err := LoadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if tab.hdr == nil {
		t.Fatal("gcc output has .eh_frame_hdr but the table did not use it")
	}
	scanned := &Table{eh: tab.eh, cies: map[cieKey]*cie{}}
	if err := scanned.scan(scanned.eh); err != nil {
		t.Fatal(err)
	}
	if scanned.FDEs() != tab.FDEs() {
		t.Fatalf("scan found %d FDEs, hdr lists %d", scanned.FDEs(), tab.FDEs())
	}
	for _, e := range scanned.index {
		for _, pc := range []uint64{e.start, (e.start + e.end) / 2, e.end - 1} {
			a, okA, _ := tab.RowAt(pc)
			b, okB, _ := scanned.RowAt(pc)
			if okA != okB || fmt.Sprint(a) != fmt.Sprint(b) {
				t.Errorf("%#x: hdr %v %+v, scan %v %+v", pc, okA, a, okB, b)
			}
		}
	}
}

// PLT entries describe their CFA with the classic expression
// rsp+8+((rip&15)>=11)*8: after the entry's push the CFA moves by 8.
func TestPLTExpression(t *testing.T) {
	path := buildC(t, "chain.c", "-O2", "-fomit-frame-pointer", "-Wl,-z,lazy")
	ef, err := elf.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer ef.Close()
	plt := ef.Section(".plt")
	if plt == nil || plt.Size < 32 {
		testenv.Skip(t, "the linker emitted no lazy .plt")
	}
	tab, err := LoadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	entry := plt.Addr + 16 // first PLT entry after PLT0
	for off := uint64(0); off < 16; off++ {
		pc := entry + off
		row, ok, err := tab.RowAt(pc)
		if !ok || err != nil {
			t.Fatalf("%#x: no row: %v", pc, err)
		}
		if row.CFA.expr == nil {
			t.Fatalf("%#x: PLT CFA is not an expression: %+v", pc, row.CFA)
		}
		var rs regSet
		rs.val[RegRSP], rs.known[RegRSP] = 0x7000, true
		rs.val[RegRA], rs.known[RegRA] = pc, true
		cfa, err := evalExpr(row.CFA.expr, &rs, func(uint64, int) (uint64, bool) { return 0, false }, nil)
		if err != nil {
			t.Fatal(err)
		}
		want := uint64(0x7008)
		if pc&15 >= 11 {
			want = 0x7010
		}
		if cfa != want {
			t.Errorf("PLT+%d: CFA %#x, want %#x", off, cfa, want)
		}
	}
}

// Hostile tables: every truncation and many byte flips of a real .eh_frame
// must give errors or rows, never a panic or a hang.
func TestCorruptCFI(t *testing.T) {
	path := buildC(t, "chain.c", "-O2", "-fomit-frame-pointer")
	tab, err := LoadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	orig := tab.eh.data
	pcs := []uint64{}
	for _, e := range tab.index {
		pcs = append(pcs, e.start)
	}
	if tab.hdr != nil {
		for i := 0; i < len(tab.hdr)/8; i++ {
			f := tab.findHdr(tab.hdrAddr + uint64(int64(int32(uint32(tab.hdr[i*8])|uint32(tab.hdr[i*8+1])<<8|uint32(tab.hdr[i*8+2])<<16|uint32(tab.hdr[i*8+3])<<24))))
			if f != nil {
				pcs = append(pcs, f.start, f.end-1)
			}
		}
	}
	try := func(data []byte) {
		s := &section{data: data, addr: tab.eh.addr}
		tt := &Table{eh: s, cies: map[cieKey]*cie{}}
		if err := tt.scan(s); err != nil {
			return
		}
		for _, pc := range pcs {
			tt.RowAt(pc)
		}
	}
	for n := 0; n < len(orig); n += 3 {
		try(orig[:n])
	}
	for i := 0; i < len(orig); i++ {
		for _, v := range []byte{0x00, 0xff, 0x80, 0x0f} {
			data := append([]byte(nil), orig...)
			data[i] = v
			try(data)
		}
	}
}

func FuzzRowAt(f *testing.F) {
	f.Add([]byte{0x14, 0, 0, 0, 0, 0, 0, 0, 1, 'z', 'R', 0, 1, 0x78, 0x10, 1, 0x1b, 0x0c, 7, 8, 0x90, 1, 0, 0}, uint64(0))
	f.Fuzz(func(t *testing.T, data []byte, pc uint64) {
		s := &section{data: data, addr: 0x1000}
		tt := &Table{eh: s, cies: map[cieKey]*cie{}}
		if tt.scan(s) == nil {
			tt.RowAt(pc)
			for _, e := range tt.index {
				tt.RowAt(e.start)
			}
		}
	})
}
