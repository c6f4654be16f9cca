package symbolize

import (
	"bufio"
	"bytes"
	"debug/elf"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/bpfsnap/bpfsnap/internal/testenv"
)

// buildInline compiles testdata/inline.c with -O2 -g (and extra flags).
func buildInline(t *testing.T, extra ...string) string {
	t.Helper()
	gcc := testenv.RequireTool(t, "gcc")
	src, err := filepath.Abs("testdata/inline.c")
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(t.TempDir(), "inline")
	args := append(append([]string{"-O2", "-g"}, extra...), "-o", bin, src)
	if out, err := exec.Command(gcc, args...).CombinedOutput(); err != nil {
		t.Fatalf("gcc: %v\n%s", err, out)
	}
	return bin
}

// elfSymbol returns a function symbol's address and size (debug/elf,
// independently of the code under test).
func elfSymbol(t *testing.T, bin, name string) (uint64, uint64) {
	t.Helper()
	f, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	syms, _ := f.Symbols()
	for _, s := range syms {
		if s.Name == name {
			return s.Value, s.Size
		}
	}
	t.Fatalf("%s not in %s", name, bin)
	return 0, 0
}

// addr2lineFrames runs binutils' `addr2line -i -f` on addrs and returns,
// per address, its frames innermost first as "function file:line".
func addr2lineFrames(t *testing.T, bin string, addrs []uint64) [][]string {
	t.Helper()
	a2l := testenv.RequireTool(t, "addr2line")
	// A sentinel address after each one separates the outputs: 0 resolves
	// to "??" "??:0" (one frame) in every binutils version.
	var withSentinels bytes.Buffer
	for _, a := range addrs {
		fmt.Fprintf(&withSentinels, "0x%x\n0x0\n", a)
	}
	cmd := exec.Command(a2l, "-i", "-f", "-e", bin)
	cmd.Stdin = &withSentinels
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("addr2line: %v", err)
	}
	var res [][]string
	var cur []string
	var lines []string
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	for i := 0; i+1 < len(lines); i += 2 {
		fn, pos := lines[i], lines[i+1]
		if fn == "??" && strings.HasPrefix(pos, "??:") {
			res = append(res, cur)
			cur = nil
			continue
		}
		if j := strings.Index(pos, " (discriminator"); j >= 0 {
			pos = pos[:j]
		}
		file, line, _ := strings.Cut(pos, ":")
		cur = append(cur, fmt.Sprintf("%s %s:%s", fn, filepath.Base(file), line))
	}
	if len(res) != len(addrs) {
		t.Fatalf("addr2line gave %d results for %d addresses", len(res), len(addrs))
	}
	return res
}

// Every address of a function holding two levels of inlined code resolves
// to the frames binutils' addr2line -i gives: the same functions, innermost
// first, each with the same file and line; the inlined ones are marked.
func TestInlinedFramesMatchAddr2line(t *testing.T) {
	bin := buildInline(t)
	b, err := OpenFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	if b.inlines == nil {
		t.Fatal("no inline index for a -O2 -g binary")
	}
	lo, size := elfSymbol(t, bin, "run")
	var addrs []uint64
	for a := lo; a < lo+size; a++ {
		addrs = append(addrs, a)
	}
	want := addr2lineFrames(t, bin, addrs)
	nested, mismatches := 0, 0
	for i, a := range addrs {
		var got []string
		frames := b.ResolveFramesVaddr(a)
		for j, f := range frames {
			if f.Inlined != (j < len(frames)-1) {
				t.Errorf("0x%x: frame %d %+v: inlined flag wrong", a, j, f)
			}
			got = append(got, fmt.Sprintf("%s %s:%d", f.Function, filepath.Base(f.File), f.Line))
		}
		if strings.Join(got, " | ") != strings.Join(want[i], " | ") {
			mismatches++
			if mismatches <= 10 {
				t.Errorf("0x%x: got      %s\n         addr2line %s", a, strings.Join(got, " | "), strings.Join(want[i], " | "))
			}
		}
		if len(frames) == 3 && frames[0].Function == "step" && frames[1].Function == "mix" && frames[2].Function == "run" {
			nested++
		}
	}
	t.Logf("%d addresses of run, %d inside step inlined into mix inlined into run, %d differ from addr2line", len(addrs), nested, mismatches)
	if nested == 0 {
		t.Fatal("no address of run resolved to step <- mix <- run")
	}
	// The call sites: step's frame at the call of spin is the marked line,
	// mix's the line calling step, run's the line calling mix.
	src, _ := filepath.Abs("testdata/inline.c")
	call := callReturnAddress(t, bin, "run", "spin")
	fr := b.ResolveFramesVaddr(call - 1)
	wantLines := []int{testenv.SourceLine(t, src, "INLINE-CALL-SPIN"), testenv.SourceLine(t, src, "INLINE-CALL-STEP"), testenv.SourceLine(t, src, "INLINE-CALL-MIX")}
	if len(fr) != 3 || fr[0].Line != wantLines[0] || fr[1].Line != wantLines[1] || fr[2].Line != wantLines[2] {
		t.Errorf("call of spin resolves to %+v, want step:%d mix:%d run:%d", fr, wantLines[0], wantLines[1], wantLines[2])
	}
	// Resolve keeps giving the function the code lives in, now with the
	// line of the inlined call in it.
	if loc, ok := b.ResolveVaddr(call - 1); !ok || loc.Function != "run" || loc.Line != wantLines[2] || loc.Inlined {
		t.Errorf("ResolveVaddr: %+v", loc)
	}
}

// callReturnAddress finds the return address of the first call from
// function caller to callee, by disassembling with objdump.
func callReturnAddress(t *testing.T, bin, caller, callee string) uint64 {
	t.Helper()
	objdump := testenv.RequireTool(t, "objdump")
	lo, size := elfSymbol(t, bin, caller)
	out, err := exec.Command(objdump, "-d", "--no-show-raw-insn",
		fmt.Sprintf("--start-address=0x%x", lo), fmt.Sprintf("--stop-address=0x%x", lo+size), bin).Output()
	if err != nil {
		t.Fatalf("objdump: %v", err)
	}
	lines := strings.Split(string(out), "\n")
	for i, l := range lines {
		if strings.Contains(l, "call") && strings.Contains(l, "<"+callee+">") {
			for _, next := range lines[i+1:] {
				addr, _, ok := strings.Cut(strings.TrimSpace(next), ":")
				if v, err := strconv.ParseUint(addr, 16, 64); ok && err == nil {
					return v
				}
			}
		}
	}
	t.Fatalf("no call of %s in %s", callee, caller)
	return 0
}

// goInlineProgram prints the frames Go's own runtime gives for a return
// address inside two levels of inlined code (inner inlined into outer
// inlined into run), and that address.
const goInlineProgram = `package main

import (
	"fmt"
	"runtime"
)

//go:noinline
func leaf(x int) int {
	pcs := make([]uintptr, 8)
	n := runtime.Callers(2, pcs) // pcs[0]: the return address into run's code
	frames := runtime.CallersFrames(pcs[:n])
	fmt.Printf("pc %x\n", pcs[0])
	for {
		f, more := frames.Next()
		fmt.Printf("frame %s %d\n", f.Function, f.Line)
		if f.Function == "main.run" || !more {
			break // run's is the last frame of that address
		}
	}
	return x + 1
}

func inner(x int) int { return leaf(x) * 3 }

func outer(x int) int { return inner(x) + 5 }

//go:noinline
func run(x int) int { return outer(x) - 1 }

func main() { run(2) }
`

// In a Go binary, inlined functions come from the DWARF the Go linker
// writes, names and lines from the pclntab; the chain is the one Go's
// runtime itself reports (runtime.CallersFrames) for the same address.
func TestGoInlinedFramesMatchRuntime(t *testing.T) {
	goTool := testenv.RequireTool(t, "go")
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "main.go"), []byte(goInlineProgram), 0o644)
	os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module x\n\ngo 1.22\n"), 0o644)
	bin := filepath.Join(dir, "x")
	build := exec.Command(goTool, "build", "-o", bin, ".")
	build.Dir = dir
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	out, err := exec.Command(bin).Output()
	if err != nil {
		t.Fatalf("running the program: %v", err)
	}
	var pc uint64
	var want []string
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if v, ok := strings.CutPrefix(l, "pc "); ok {
			pc, _ = strconv.ParseUint(v, 16, 64)
		} else if v, ok := strings.CutPrefix(l, "frame "); ok {
			want = append(want, v)
		}
	}
	if pc == 0 || len(want) != 3 || !strings.HasPrefix(want[0], "main.inner ") {
		t.Fatalf("the runtime did not report inner inlined into outer into run: %q", out)
	}
	b, err := OpenFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	frames := b.ResolveFramesVaddr(pc - 1) // the call instruction, as the recorder resolves return addresses
	var got []string
	for i, f := range frames {
		got = append(got, fmt.Sprintf("%s %d", f.Function, f.Line))
		if f.Inlined != (i < len(frames)-1) || !strings.HasSuffix(f.File, "main.go") {
			t.Errorf("frame %d: %+v", i, f)
		}
	}
	if strings.Join(got, " | ") != strings.Join(want, " | ") {
		t.Errorf("got %q, Go's runtime %q", got, want)
	}
}
