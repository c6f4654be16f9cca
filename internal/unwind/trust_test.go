package unwind

import (
	"encoding/binary"
	"reflect"
	"testing"
)

// fakeCode is a process without CFI: a few code regions (file-backed or
// anonymous) whose bytes can be read.
type fakeCode struct {
	regions []fakeRegion
}

type fakeRegion struct {
	start uint64
	code  []byte
	file  bool
}

func (f *fakeCode) ModuleFor(uint64) (Module, bool) { return Module{}, false }

func (f *fakeCode) CodeAt(pc uint64) (exec, file bool) {
	for _, r := range f.regions {
		if pc >= r.start && pc < r.start+uint64(len(r.code)) {
			return true, r.file
		}
	}
	return false, false
}

func (f *fakeCode) ReadCode(addr uint64, buf []byte) int {
	for _, r := range f.regions {
		if addr >= r.start && addr < r.start+uint64(len(r.code)) {
			return copy(buf, r.code[addr-r.start:])
		}
	}
	return 0
}

// Code layout of the fake process: a file's text at 0x1000 holding a call
// at 0x1100 (return address 0x1105) and at 0x1200 (0x1205), and a JIT
// region at 0x9000 holding CPython's trampoline at 0x9100 (return address
// 0x9106) and a function entry at 0x9200 after padding.
const (
	textStart = 0x1000
	raText1   = 0x1105
	raText2   = 0x1205
	jitStart  = 0x9000
	raTramp   = 0x9106
	jitEntry  = 0x9200
)

func newFakeCode() *fakeCode {
	text := make([]byte, 0x1000)
	for i := range text {
		text[i] = 0x90 // nop
	}
	copy(text[0x100:], []byte{0xe8, 0, 0, 0, 0})             // call rel32
	copy(text[0x200:], []byte{0x41, 0xff, 0x54, 0x24, 0x08}) // call *0x8(%r12)
	jit := make([]byte, 0x1000)
	for i := range jit {
		jit[i] = 0xcc // int3 padding
	}
	copy(jit[0x100:], []byte{0x48, 0x83, 0xec, 0x08, 0xff, 0xd1, 0x48, 0x83, 0xc4, 0x08, 0xc3})
	copy(jit[0x200:], []byte{0x55, 0x48, 0x89, 0xe5}) // push %rbp; mov %rsp,%rbp
	return &fakeCode{regions: []fakeRegion{{textStart, text, true}, {jitStart, jit, false}}}
}

// stackOf lays out 8-byte words from base.
func stackOf(base uint64, words ...uint64) Stack {
	data := make([]byte, 8*len(words))
	for i, w := range words {
		binary.LittleEndian.PutUint64(data[8*i:], w)
	}
	return Stack{Base: base, Data: data}
}

func TestCallPrecedes(t *testing.T) {
	code := newFakeCode()
	for _, c := range []struct {
		ra       uint64
		ok, know bool
	}{
		{raText1, true, true},            // E8 rel32
		{raText2, true, true},            // REX FF /2 with SIB and disp8
		{raTramp, true, true},            // FF D1 in anonymous code
		{jitEntry, false, true},          // a function entry after int3 padding
		{textStart + 0x300, false, true}, // inside nops
		{0x5000, false, false},           // nothing mapped: cannot tell
	} {
		ok, known := CallPrecedes(code, c.ra)
		if ok != c.ok || known != c.know {
			t.Errorf("%#x: call=%v known=%v, want %v %v", c.ra, ok, known, c.ok, c.know)
		}
	}
}

func TestStepEpilogue(t *testing.T) {
	const sp = 0x7000
	for _, c := range []struct {
		name    string
		code    []byte
		words   []uint64 // stack from sp
		bp      uint64
		ok      bool
		ra, nsp uint64
		nbp     uint64
		bpKnown bool
	}{
		{"python trampoline after its call", []byte{0x48, 0x83, 0xc4, 0x08, 0xc3}, []uint64{0, raText1}, 0x1234, true, raText1, sp + 16, 0x1234, true},
		{"pop rbp; ret", []byte{0x5d, 0xc3}, []uint64{0x7100, raText1}, 0, true, raText1, sp + 16, 0x7100, true},
		{"endbr64, mov, leave, ret", []byte{0xf3, 0x0f, 0x1e, 0xfa, 0x48, 0x89, 0xc2, 0xc9, 0xc3}, []uint64{0, 0, 0x7200, raText2}, sp + 16, true, raText2, sp + 32, 0x7200, true},
		{"lea rsp,[rsp+16]; pop r15; ret 8", []byte{0x48, 0x8d, 0x64, 0x24, 0x10, 0x41, 0x5f, 0xc2, 0x08, 0x00}, []uint64{0, 0, 0, raText1}, 0x99, true, raText1, sp + 40, 0x99, true},
		{"rbp overwritten", []byte{0x48, 0x89, 0xc5, 0xc3}, []uint64{raText1}, 0x99, true, raText1, sp + 8, 0, false},
		{"a branch first", []byte{0x74, 0x02, 0xc3}, []uint64{raText1}, 0, false, 0, 0, 0, false},
		{"a call first", []byte{0xff, 0xd1, 0xc3}, []uint64{raText1}, 0, false, 0, 0, 0, false},
		{"rsp from a register", []byte{0x48, 0x89, 0xc4, 0xc3}, []uint64{raText1}, 0, false, 0, 0, 0, false},
		{"no ret in reach", []byte{0x90, 0x90}, []uint64{raText1}, 0, false, 0, 0, 0, false},
	} {
		code := &fakeCode{regions: []fakeRegion{{0x3000, c.code, false}}}
		var rs regSet
		rs.val[RegRSP], rs.known[RegRSP] = sp, true
		rs.val[RegRBP], rs.known[RegRBP] = c.bp, true
		next, ok := stepEpilogue(code, &rs, stackOf(sp, c.words...), 0x3000)
		if ok != c.ok {
			t.Errorf("%s: ok=%v", c.name, ok)
			continue
		}
		if !ok {
			continue
		}
		if next.val[RegRA] != c.ra || next.val[RegRSP] != c.nsp || next.known[RegRBP] != c.bpKnown || c.bpKnown && next.val[RegRBP] != c.nbp {
			t.Errorf("%s: ra %#x sp %#x bp %#x (known %v), want %#x %#x %#x (%v)", c.name,
				next.val[RegRA], next.val[RegRSP], next.val[RegRBP], next.known[RegRBP], c.ra, c.nsp, c.nbp, c.bpKnown)
		}
	}
}

// Walks over code without CFI stop where a step cannot be trusted, and say
// why; they never add a frame they could not check.
func TestWalkChecksStepsWithoutCFI(t *testing.T) {
	code := newFakeCode()
	const sp = 0x7ffd0000
	opt := Options{FramePointerFallback: true}
	cases := []struct {
		name   string
		regs   Regs
		stack  Stack
		reason Reason
		pcs    []uint64
	}{
		{"frame-pointer chain to the root (rbp 0)",
			Regs{PC: textStart + 0x10, SP: sp, BP: sp + 16}, stackOf(sp, 0, 0, sp+48, raText1, 0, 0, 0, raText2),
			ReasonEnd, []uint64{textStart + 0x10, raText1, raText2}},
		{"rbp is a heap address", Regs{PC: jitStart + 0x50, SP: sp, BP: 0x5566_0000}, stackOf(sp, 0, 0, 0, 0),
			ReasonBadFramePointer, []uint64{jitStart + 0x50}},
		{"rbp below rsp", Regs{PC: jitStart + 0x50, SP: sp, BP: sp - 64}, stackOf(sp, 0, 0),
			ReasonBadFramePointer, []uint64{jitStart + 0x50}},
		{"rbp misaligned", Regs{PC: jitStart + 0x50, SP: sp, BP: sp + 4}, stackOf(sp, 0, 0, 0),
			ReasonBadFramePointer, []uint64{jitStart + 0x50}},
		{"rbp beyond the copy", Regs{PC: jitStart + 0x50, SP: sp, BP: sp + 4096}, stackOf(sp, 0, 0),
			ReasonOutsideStack, []uint64{jitStart + 0x50}},
		{"[rbp+8] is data", Regs{PC: jitStart + 0x50, SP: sp, BP: sp}, stackOf(sp, 0, 0x7ffd1234),
			ReasonBadReturnAddress, []uint64{jitStart + 0x50}},
		{"[rbp+8] is a function entry, not after a call", Regs{PC: jitStart + 0x50, SP: sp, BP: sp}, stackOf(sp, 0, jitEntry),
			ReasonBadReturnAddress, []uint64{jitStart + 0x50}},
		{"[rbp+8] is 0 but [rbp] is not", Regs{PC: jitStart + 0x50, SP: sp, BP: sp}, stackOf(sp, sp+64, 0),
			ReasonBadReturnAddress, []uint64{jitStart + 0x50}},
		{"trampoline unwound by its epilogue, then a frame pointer", Regs{PC: raTramp, SP: sp, BP: 0x5566_0000},
			// the trampoline's slot, its return address into the
			// text, then that frame's rbp-based frame ending the chain
			stackOf(sp, 0xdead, raText1, 0, 0),
			ReasonBadFramePointer, []uint64{raTramp, raText1}},
		{"a loop of frame pointers", Regs{PC: textStart + 0x10, SP: sp, BP: sp}, stackOf(sp, sp, raText1),
			ReasonBadFramePointer, []uint64{textStart + 0x10, raText1}},
	}
	for _, c := range cases {
		res := Unwind(code, c.regs, c.stack, opt)
		if res.Reason != c.reason || !reflect.DeepEqual(res.PCs, c.pcs) {
			t.Errorf("%s: %s %#x, want %s %#x", c.name, res.Reason, res.PCs, c.reason, c.pcs)
		}
	}
	// CFI only: no step without CFI at all.
	if res := Unwind(code, cases[0].regs, cases[0].stack, Options{}); res.Reason != ReasonNoCFI || len(res.PCs) != 1 {
		t.Errorf("CFI only: %s %#x", res.Reason, res.PCs)
	}
}

func TestTrustedReturnAddresses(t *testing.T) {
	code := newFakeCode()
	for _, c := range []struct {
		fp   []uint64
		keep int
	}{
		{[]uint64{textStart + 4, raText1, raText2, raTramp}, 4},
		{[]uint64{textStart + 4, raText1, 0, 0, 0}, 2},             // zeros: the tower of [unknown]+0x0
		{[]uint64{textStart + 4, raText1, 0x7ffd0010, raText2}, 2}, // a stack address
		{[]uint64{textStart + 4, jitEntry, raText1}, 1},            // a function pointer
		{[]uint64{0x4444}, 1},                                      // the leaf is the sample: kept
	} {
		if got := TrustedReturnAddresses(code, c.fp); got != c.keep {
			t.Errorf("%#x: kept %d, want %d", c.fp, got, c.keep)
		}
	}
}

func TestContinueWithFramePointers(t *testing.T) {
	code := newFakeCode()
	cut := Result{PCs: []uint64{textStart + 4, raText1}, Reason: ReasonOutsideStack}
	for _, c := range []struct {
		name  string
		res   Result
		fp    []uint64
		added int
	}{
		{"agrees on the last two frames", cut, []uint64{textStart + 4, raText1, raText2, raTramp}, 2},
		{"stops at a non-return address", cut, []uint64{textStart + 4, raText1, raText2, jitEntry, raText1}, 1},
		{"disagrees", cut, []uint64{textStart + 4, raText2, raText1, raTramp}, 0},
		{"the walk did not run out of stack", Result{PCs: cut.PCs, Reason: ReasonBadFramePointer}, []uint64{textStart + 4, raText1, raText2}, 0},
		{"one frame: anchored at the leaf", Result{PCs: []uint64{textStart + 4}, Reason: ReasonOutsideStack}, []uint64{textStart + 4, raText2}, 1},
	} {
		got, added := ContinueWithFramePointers(code, c.res, c.fp)
		if added != c.added || len(got.PCs) != len(c.res.PCs)+c.added {
			t.Errorf("%s: added %d (%#x), want %d", c.name, added, got.PCs, c.added)
		}
		if got.Reason != c.res.Reason {
			t.Errorf("%s: reason %s, want %s (no CFI says the last frame is the outermost)", c.name, got.Reason, c.res.Reason)
		}
	}
}

// Recursion repeats return addresses: the kernel's walk joins where it
// matches the whole walk, not at the first two equal frames.
func TestContinueWithFramePointersRecursion(t *testing.T) {
	code := newFakeCode()
	leaf := uint64(textStart + 4)
	// Ours: leaf, then 4 recursive frames (all raText1), out of stack.
	ours := Result{PCs: []uint64{leaf, raText1, raText1, raText1, raText1}, Reason: ReasonOutsideStack}
	// The kernel's: the same, 2 more recursive frames, then the caller.
	fp := []uint64{leaf, raText1, raText1, raText1, raText1, raText1, raText1, raText2}
	got, added := ContinueWithFramePointers(code, ours, fp)
	if want := fp; added != 3 || !reflect.DeepEqual(got.PCs, want) {
		t.Errorf("added %d: %#x, want %#x", added, got.PCs, want)
	}
	// A frameless leaf: the kernel's walk skips the leaf's caller.
	ours = Result{PCs: []uint64{leaf, raTramp, raText1, raText1}, Reason: ReasonOutsideStack}
	fp = []uint64{leaf, raText1, raText1, raText2}
	got, added = ContinueWithFramePointers(code, ours, fp)
	if want := []uint64{leaf, raTramp, raText1, raText1, raText2}; added != 1 || !reflect.DeepEqual(got.PCs, want) {
		t.Errorf("skipped leaf caller: added %d: %#x, want %#x", added, got.PCs, want)
	}
}
