// Package goprobe finds where uprobes go in a Go binary: functions by name
// from the pclntab (which stripped binaries keep), the instruction after
// their stack check (an entry probe that fires once per call), their RET
// instructions (Go functions cannot take uretprobes: goroutine stacks
// move), and the versions of the modules linked in (debug/buildinfo), which
// say how a function takes its arguments. Pure Go and portable; the binary
// is untrusted input (sizes bounded, panics recovered).
package goprobe

import (
	"debug/buildinfo"
	"debug/elf"
	"debug/gosym"
	"errors"
	"fmt"
	"io"

	"golang.org/x/arch/x86/x86asm"
)

const (
	maxPclntab  = 256 << 20 // bytes of .gopclntab read
	maxFuncCode = 1 << 20   // bytes of one function decoded for its RETs
)

// Binary is a Go executable opened for probe placement.
type Binary struct {
	f     *elf.File
	tab   *gosym.Table
	mods  map[string]string // module path -> version
	GoVer string
}

// Func is a function of the binary: its ELF addresses and the file offset
// of its entry (uprobes are placed by file offset).
type Func struct {
	Name       string
	Entry, End uint64
	Offset     uint64
}

// ErrNotGo is returned for an ELF without a Go pclntab.
var ErrNotGo = errors.New("not a Go binary")

// Open reads r's ELF headers, pclntab and build information.
func Open(r io.ReaderAt) (b *Binary, err error) {
	defer func() {
		if p := recover(); p != nil {
			b, err = nil, fmt.Errorf("malformed Go binary: %v", p)
		}
	}()
	f, err := elf.NewFile(r)
	if err != nil {
		return nil, err
	}
	if f.Machine != elf.EM_X86_64 {
		return nil, fmt.Errorf("%s: only x86-64 Go binaries are probed", f.Machine)
	}
	pcln, text := f.Section(".gopclntab"), f.Section(".text")
	if pcln == nil || text == nil {
		return nil, ErrNotGo
	}
	if pcln.Size > maxPclntab {
		return nil, fmt.Errorf("pclntab of %d bytes", pcln.Size)
	}
	data, err := pcln.Data()
	if err != nil {
		return nil, err
	}
	tab, err := gosym.NewTable(nil, gosym.NewLineTable(data, text.Addr))
	if err != nil {
		return nil, err
	}
	b = &Binary{f: f, tab: tab, mods: map[string]string{}}
	if bi, err := buildinfo.Read(r); err == nil {
		b.GoVer = bi.GoVersion
		for _, m := range bi.Deps {
			if m.Replace != nil {
				m = m.Replace
			}
			b.mods[m.Path] = m.Version
		}
	}
	return b, nil
}

// ModuleVersion is the version of a module linked in ("" when absent or
// the binary has no build information).
func (b *Binary) ModuleVersion(path string) string { return b.mods[path] }

// Func finds a function by its full name, e.g. "crypto/tls.(*Conn).Write".
func (b *Binary) Func(name string) (Func, bool) {
	fn := b.tab.LookupFunc(name)
	if fn == nil || fn.End <= fn.Entry {
		return Func{}, false
	}
	off, ok := FileOffset(b.f, fn.Entry)
	if !ok {
		return Func{}, false
	}
	return Func{Name: name, Entry: fn.Entry, End: fn.End, Offset: off}, true
}

// FileOffset converts the address of code in an ELF file (Go or not) to
// the file offset uprobes are placed by.
func FileOffset(f *elf.File, vaddr uint64) (uint64, bool) {
	for _, p := range f.Progs {
		if p.Type == elf.PT_LOAD && p.Flags&elf.PF_X != 0 && vaddr >= p.Vaddr && vaddr < p.Vaddr+p.Filesz {
			return vaddr - p.Vaddr + p.Off, true
		}
	}
	return 0, false
}

// code reads a function's machine code.
func (b *Binary) code(fn Func) ([]byte, error) {
	n := fn.End - fn.Entry
	if n > maxFuncCode {
		return nil, fmt.Errorf("%s: %d bytes of code", fn.Name, n)
	}
	buf := make([]byte, n)
	for _, p := range b.f.Progs {
		if p.Type == elf.PT_LOAD && fn.Entry >= p.Vaddr && fn.End <= p.Vaddr+p.Filesz {
			if _, err := p.ReadAt(buf, int64(fn.Entry-p.Vaddr)); err != nil {
				return nil, err
			}
			return buf, nil
		}
	}
	return nil, fmt.Errorf("%s is in no loaded segment", fn.Name)
}

// Returns gives the offsets (from the function's entry) of every RET
// instruction of fn, where uprobes stand in for a return probe.
func (b *Binary) Returns(fn Func) ([]uint64, error) {
	code, err := b.code(fn)
	if err != nil {
		return nil, err
	}
	return returns(code)
}

func returns(code []byte) ([]uint64, error) {
	var out []uint64
	for off := 0; off < len(code); {
		inst, err := x86asm.Decode(code[off:], 64)
		if err != nil {
			// Padding between functions (int3) decodes; anything else
			// means the walk lost instruction boundaries.
			return nil, fmt.Errorf("cannot decode at +%d: %v", off, err)
		}
		if inst.Op == x86asm.RET {
			out = append(out, uint64(off))
		}
		off += inst.Len
	}
	if len(out) == 0 {
		return nil, errors.New("no RET instruction")
	}
	return out, nil
}

// Entry is where an entry uprobe sits on fn and why. Go functions begin
// with a stack check whose slow path (runtime.morestack) jumps back to the
// entry after growing the stack: a probe there fires twice for that call.
// The instruction after the check's conditional jump runs once per call,
// with the argument registers untouched (the check only compares the stack
// pointer, through R12 for large frames), and is usually `PUSHQ BP`, which
// the kernel emulates instead of single-stepping.
func (b *Binary) Entry(fn Func) (offset uint64, reason string, err error) {
	code, err := b.code(fn)
	if err != nil {
		return 0, "", err
	}
	off, reason := entry(code)
	return off, reason, nil
}

func entry(code []byte) (uint64, string) {
	off := 0
	for i := 0; i < 4 && off < len(code); i++ {
		inst, err := x86asm.Decode(code[off:], 64)
		if err != nil {
			break
		}
		if inst.Op == x86asm.CMP || (inst.Op == x86asm.LEA && (inst.Args[0] == x86asm.R12 || inst.Args[0] == x86asm.R13)) {
			off += inst.Len
			continue
		}
		if inst.Op == x86asm.JBE || inst.Op == x86asm.JA || inst.Op == x86asm.JB || inst.Op == x86asm.JAE {
			next := off + inst.Len
			if next < len(code) {
				if n, err := x86asm.Decode(code[next:], 64); err == nil {
					return uint64(next), fmt.Sprintf("+%d: after the stack check, %q", next, x86asm.GoSyntax(n, 0, nil))
				}
			}
		}
		break
	}
	return 0, "entry: no stack check found (the function never grows its stack)"
}

// SpillsArgs reports whether fn stores its first n integer arguments
// (RAX, RBX, RCX, ... in Go's register ABI) into their spill slots in the
// caller's frame on entry, before any branch: then at any of its RET
// instructions the arguments are at SP+8, SP+16, ... The probes read them
// there for a call that began before they were attached.
func (b *Binary) SpillsArgs(fn Func, n int) (bool, error) {
	code, err := b.code(fn)
	if err != nil {
		return false, err
	}
	return spillsArgs(code, n), nil
}

var abiRegs = []x86asm.Reg{x86asm.RAX, x86asm.RBX, x86asm.RCX, x86asm.RDI, x86asm.RSI, x86asm.R8, x86asm.R9, x86asm.R10, x86asm.R11}

func spillsArgs(code []byte, n int) bool {
	frame, pushed := int64(-1), false
	stored := map[x86asm.Reg]int64{}
	off := 0
scan:
	for i := 0; i < 16 && off < len(code); i++ {
		inst, err := x86asm.Decode(code[off:], 64)
		if err != nil {
			return false
		}
		off += inst.Len
		switch inst.Op {
		case x86asm.CMP, x86asm.LEA, x86asm.NOP, x86asm.MOVUPS, x86asm.MOVQ:
			continue
		case x86asm.JBE, x86asm.JA, x86asm.JB, x86asm.JAE:
			if frame >= 0 {
				return false // a branch before the arguments are stored
			}
			continue // the stack check
		case x86asm.PUSH:
			pushed = inst.Args[0] == x86asm.RBP
			continue
		case x86asm.SUB:
			if r, ok := inst.Args[0].(x86asm.Reg); ok && r == x86asm.RSP {
				if imm, ok := inst.Args[1].(x86asm.Imm); ok {
					frame = int64(imm)
				}
			}
			continue
		case x86asm.MOV:
			mem, ok := inst.Args[0].(x86asm.Mem)
			src, ok2 := inst.Args[1].(x86asm.Reg)
			if ok && ok2 && mem.Base == x86asm.RSP && mem.Index == 0 {
				stored[src] = mem.Disp
			}
			continue
		}
		break scan // a call or anything else: what it does to the registers is unknown
	}
	if frame < 0 || !pushed {
		return false
	}
	// Above the frame: the saved BP, the return address, then the slots.
	for i := 0; i < n && i < len(abiRegs); i++ {
		if d, ok := stored[abiRegs[i]]; !ok || d != frame+16+8*int64(i) {
			return false
		}
	}
	return true
}
