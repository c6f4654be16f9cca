package symbolize

import (
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bpfsnap/bpfsnap/internal/testenv"
)

// A C binary built with -g resolves to file:line from its DWARF line table;
// the same binary without -g still resolves the function, without a line.
func TestDWARFLineNumbers(t *testing.T) {
	gcc := testenv.RequireTool(t, "gcc")
	src, err := filepath.Abs("../unwind/testdata/chain.c")
	if err != nil {
		t.Fatal(err)
	}
	text, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	wantLine := 0
	for i, l := range strings.Split(string(text), "\n") {
		if strings.Contains(l, "int chain_c(int x)") {
			wantLine = i + 1
		}
	}
	for _, debug := range []bool{true, false} {
		bin := filepath.Join(t.TempDir(), "chain")
		args := []string{"-O2", "-fomit-frame-pointer", "-o", bin, src}
		if debug {
			args = append([]string{"-g"}, args...)
		}
		if out, err := exec.Command(gcc, args...).CombinedOutput(); err != nil {
			t.Fatalf("gcc: %v\n%s", err, out)
		}
		ef, err := elf.Open(bin)
		if err != nil {
			t.Fatal(err)
		}
		syms, _ := ef.Symbols()
		ef.Close()
		var addr uint64
		for _, s := range syms {
			if s.Name == "chain_c" {
				addr = s.Value
			}
		}
		b, err := OpenFile(bin)
		if err != nil {
			t.Fatal(err)
		}
		loc, ok := b.ResolveVaddr(addr)
		if !ok || loc.Function != "chain_c" {
			t.Fatalf("-g=%v: chain_c resolves to %+v", debug, loc)
		}
		if debug && (filepath.Base(loc.File) != "chain.c" || loc.Line != wantLine) {
			t.Errorf("with -g: chain_c at %s:%d, want chain.c:%d", loc.File, loc.Line, wantLine)
		}
		if !debug && loc.Line != 0 {
			t.Errorf("without -g: unexpected line %s:%d", loc.File, loc.Line)
		}
	}
}
