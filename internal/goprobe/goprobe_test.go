package goprobe

import (
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
)

const src = `package main

import (
	"crypto/tls"
	"net/http"
)

func main() {
	http.ListenAndServeTLS("127.0.0.1:0", "cert", "key", nil)
	tls.Dial("tcp", "127.0.0.1:1", nil)
	http.Get("https://127.0.0.1:1/")
}
`

// build compiles src, with symbols and DWARF or stripped.
func build(t *testing.T, stripped bool) string {
	t.Helper()
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("no go toolchain")
	}
	if runtime.GOARCH != "amd64" {
		t.Skip("x86-64 only")
	}
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "main.go"), []byte(src), 0o644)
	os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module p\n\ngo 1.22\n"), 0o644)
	args := []string{"build", "-o", "p"}
	if stripped {
		args = append(args, "-ldflags=-s -w")
	}
	cmd := exec.Command("go", append(args, ".")...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOOS=linux", "GOARCH=amd64", "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return filepath.Join(dir, "p")
}

var probed = []string{
	"crypto/tls.(*Conn).Read", "crypto/tls.(*Conn).Write", "crypto/tls.(*Conn).Close",
	"net/http.(*http2serverConn).processHeaders", "net/http.(*http2clientConnReadLoop).processHeaders",
}

// Every function bpfsnap probes is found in stripped and unstripped
// binaries; its entry probe sits after the stack check on PUSHQ BP, and
// every RET offset holds a RET (0xc3).
func TestFindsProbedFunctions(t *testing.T) {
	for _, stripped := range []bool{false, true} {
		path := build(t, stripped)
		f, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		b, err := Open(f)
		if err != nil {
			t.Fatal(err)
		}
		if b.GoVer == "" {
			t.Errorf("stripped=%v: no Go version from the build info", stripped)
		}
		for _, name := range probed {
			fn, ok := b.Func(name)
			if !ok {
				t.Errorf("stripped=%v: %s not found", stripped, name)
				continue
			}
			off, reason, err := b.Entry(fn)
			if err != nil || off == 0 {
				t.Errorf("%s: entry at +%d (%s, %v)", name, off, reason, err)
			}
			code := make([]byte, 1)
			f.ReadAt(code, int64(fn.Offset+off))
			if code[0] != 0x55 { // PUSHQ BP
				t.Errorf("%s: entry probe at +%d on %#x, not PUSHQ BP (%s)", name, off, code[0], reason)
			}
			if name == "crypto/tls.(*Conn).Read" {
				if ok, err := b.SpillsArgs(fn, 2); !ok || err != nil {
					t.Errorf("%s does not spill its receiver and buffer on entry (%v): the probes cannot read a call in flight", name, err)
				}
			}
			rets, err := b.Returns(fn)
			if err != nil || len(rets) == 0 {
				t.Errorf("%s: RETs %v, %v", name, rets, err)
			}
			for _, r := range rets {
				f.ReadAt(code, int64(fn.Offset+r))
				if code[0] != 0xc3 {
					t.Errorf("%s: +%d is %#x, not RET", name, r, code[0])
				}
			}
		}
	}
}

// Not a Go binary: ErrNotGo, no panic.
func TestNotGo(t *testing.T) {
	f, err := os.Open("/bin/sh")
	if err != nil {
		t.Skip(err)
	}
	defer f.Close()
	if _, err := Open(f); err != ErrNotGo {
		t.Errorf("Open(/bin/sh) = %v", err)
	}
}

// The struct layouts the go_h2_names program reads (capture/probes/http/
// http.bpf.c) against the DWARF of a real binary: MetaHeadersFrame{
// *HeadersFrame; Fields []hpack.HeaderField}, FrameHeader{valid; Type;
// Flags; Length; StreamID}, HeaderField{Name, Value string; Sensitive}.
func TestHTTP2LayoutsMatchDWARF(t *testing.T) {
	path := build(t, false)
	ef, err := elf.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer ef.Close()
	d, err := ef.DWARF()
	if err != nil {
		t.Fatal(err)
	}
	if err := CheckHTTP2Layouts(d, StdHTTP2); err != nil {
		t.Error(err)
	}
	if err := CheckTLSLayouts(d); err != nil {
		t.Error(err)
	}
}

// A function that does not store its arguments first is not taken for one
// that does.
func TestSpillsArgsRefuses(t *testing.T) {
	spills := []byte{
		0x49, 0x3b, 0x66, 0x10, // CMPQ SP, 0x10(R14)
		0x0f, 0x86, 0x00, 0x01, 0x00, 0x00, // JBE
		0x55,             // PUSHQ BP
		0x48, 0x89, 0xe5, // MOVQ SP, BP
		0x48, 0x83, 0xec, 0x58, // SUBQ $0x58, SP
		0x48, 0x89, 0x44, 0x24, 0x68, // MOVQ AX, 0x68(SP)
		0x48, 0x89, 0x5c, 0x24, 0x70, // MOVQ BX, 0x70(SP)
		0xc3,
	}
	if !spillsArgs(spills, 2) {
		t.Error("the spilling prologue is not recognised")
	}
	wrongSlot := append([]byte{}, spills...)
	wrongSlot[27] = 0x78                                                // BX to 0x78(SP): not its slot
	calls := append(append([]byte{}, spills[:18]...), 0xe8, 0, 0, 0, 0) // a CALL before the stores
	calls = append(calls, spills[18:]...)
	for name, code := range map[string][]byte{"wrong slot": wrongSlot, "call first": calls, "AX only": spills[:23]} {
		if spillsArgs(code, 2) {
			t.Errorf("%s: taken for a prologue that spills both arguments", name)
		}
	}
}
