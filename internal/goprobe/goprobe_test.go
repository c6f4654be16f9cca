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
