package symbolize

import (
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

func requireLinuxTool(t *testing.T, name string) {
	t.Helper()
	if runtime.GOOS != "linux" {
		t.Skip("builds native ELF test binaries")
	}
	if _, err := exec.LookPath(name); err != nil {
		t.Skip(name + " not installed")
	}
}

// symbolOffset finds a symbol's file offset with debug/elf, independently
// of the code under test.
func symbolOffset(t *testing.T, path, name string) uint64 {
	t.Helper()
	f, err := elf.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	syms, _ := f.Symbols()
	for _, s := range syms {
		if s.Name == name {
			for _, p := range f.Progs {
				if p.Type == elf.PT_LOAD && s.Value >= p.Vaddr && s.Value < p.Vaddr+p.Filesz {
					return s.Value - p.Vaddr + p.Off
				}
			}
		}
	}
	t.Fatalf("%s not in %s", name, path)
	return 0
}

func TestPIEAndCPlusPlus(t *testing.T) {
	requireLinuxTool(t, "g++")
	dir := t.TempDir()
	src := filepath.Join(dir, "x.cc")
	os.WriteFile(src, []byte(`
namespace shop { struct Cart { __attribute__((noinline)) int total(int n); }; }
int shop::Cart::total(int n) { int s = 0; for (int i = 0; i < n; i++) s += i; return s; }
int main() { shop::Cart c; return c.total(3) & 0; }
`), 0o644)
	bin := filepath.Join(dir, "x")
	if out, err := exec.Command("g++", "-O1", "-pie", "-fPIE", "-Wl,--build-id", "-o", bin, src).CombinedOutput(); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	b, err := OpenFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	if len(b.BuildID) != 40 {
		t.Errorf("build id %q", b.BuildID)
	}
	off := symbolOffset(t, bin, "_ZN4shop4Cart5totalEi")
	loc, ok := b.Resolve(off + 4) // inside the function, not at its start
	if !ok || loc.Function != "shop::Cart::total" {
		t.Fatalf("resolve: %+v %v", loc, ok)
	}
	// A debug file found by build id resolves the same offset.
	dbg := filepath.Join(dir, "debug", ".build-id", b.BuildID[:2])
	os.MkdirAll(dbg, 0o755)
	data, _ := os.ReadFile(bin)
	os.WriteFile(filepath.Join(dbg, b.BuildID[2:]+".debug"), data, 0o644)
	if p := FindDebugFile(filepath.Join(dir, "debug"), b.BuildID); p == "" {
		t.Errorf("debug file not found by build id")
	}
}

func TestStrippedGoBinary(t *testing.T) {
	requireLinuxTool(t, "go")
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "main.go"), []byte("package main\n\n//go:noinline\nfunc checkoutTotal(n int) int { return n * 3 }\n\nfunc main() { println(checkoutTotal(2)) }\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module x\n\ngo 1.22\n"), 0o644)
	full, stripped := filepath.Join(dir, "full"), filepath.Join(dir, "stripped")
	for _, c := range [][]string{{"-o", full}, {"-ldflags=-s -w", "-o", stripped}} {
		cmd := exec.Command("go", append([]string{"build"}, append(c, ".")...)...)
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%v: %s", err, out)
		}
	}
	off := symbolOffset(t, full, "main.checkoutTotal")
	b, err := OpenFile(stripped) // no .symtab: pclntab only
	if err != nil {
		t.Fatal(err)
	}
	loc, ok := b.Resolve(off)
	if !ok || loc.Function != "main.checkoutTotal" || !strings.HasSuffix(loc.File, "main.go") || loc.Line != 4 {
		t.Fatalf("stripped Go binary: %+v %v", loc, ok)
	}
}

func TestParseMaps(t *testing.T) {
	in := "55d0c0a00000-55d0c0a21000 r-xp 00002000 fd:01 1234    /usr/bin/my app (deleted)\n" +
		"7ffd1000-7ffd2000 r-xp 00000000 00:00 0                  [vdso]\n" +
		"garbage line\n"
	maps, err := ParseMaps(strings.NewReader(in))
	if err != nil || len(maps) != 2 {
		t.Fatalf("%v %+v", err, maps)
	}
	m := maps[0]
	if m.Path != "/usr/bin/my app (deleted)" || !m.FileBacked() || !m.Executable() || m.FileOffset(0x55d0c0a00010) != 0x2010 {
		t.Errorf("%+v", m)
	}
	if maps[1].FileBacked() {
		t.Errorf("vdso is not file backed")
	}
	// The inode's text ("0") also occurs in the address: the path is still
	// what follows the fifth field, not what follows the first "0".
	if maps[1].Path != "[vdso]" {
		t.Errorf("vdso path %q", maps[1].Path)
	}
	odd, _ := ParseMaps(strings.NewReader("1234000-1235000 r-xp 00000000 fd:01 1234 /opt/a b\n"))
	if len(odd) != 1 || odd[0].Path != "/opt/a b" {
		t.Errorf("path after an inode that also occurs in the address: %+v", odd)
	}
	if _, ok := Find(maps, 0x7ffd1500); !ok {
		t.Errorf("find in vdso")
	}
}

func TestKallsyms(t *testing.T) {
	k, err := ParseKallsyms(strings.NewReader(
		"ffffffff81000000 T _stext\nffffffff81000100 t do_thing\nffffffff81000200 D some_data\nffffffffc0000000 t mod_fn\t[nf_tables]\n0000000000000000 T hidden\n"))
	if err != nil || k.Len() != 3 {
		t.Fatalf("%v len %d", err, k.Len())
	}
	if n, _, _ := k.Resolve(0xffffffff81000150); n != "do_thing" {
		t.Errorf("got %q", n)
	}
	if n, m, _ := k.Resolve(0xffffffffc0000010); n != "mod_fn" || m != "nf_tables" {
		t.Errorf("got %q %q", n, m)
	}
	if _, _, ok := k.Resolve(0x10); ok {
		t.Errorf("resolved an address below every symbol")
	}
}

// FuzzOpenBinary: binaries of the workload are hostile input to a recorder
// running as root. Parsing may fail but must not panic or run away.
func FuzzOpenBinary(f *testing.F) {
	if self, err := os.ReadFile("/proc/self/exe"); err == nil && len(self) > 0 {
		f.Add(self[:min(len(self), 1<<16)])
	}
	f.Add([]byte("\x7fELF\x02\x01\x01"))
	f.Fuzz(func(t *testing.T, data []byte) {
		b, err := OpenBinary(strings.NewReader(string(data)))
		if err != nil {
			return
		}
		b.Resolve(0x1000)
		_ = ReadBuildID(strings.NewReader(string(data)))
	})
}
