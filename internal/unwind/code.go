package unwind

import (
	"strings"

	"golang.org/x/arch/x86/x86asm"
)

// CodeMap is what a walk may know of the process's code besides its CFI:
// where executable memory is and, when the caller can read it, its bytes.
// Modules that also implement CodeMap (Process does) get checked steps:
// a return address must lie in executable memory, and one that no CFI
// vouches for must follow a call instruction.
type CodeMap interface {
	// CodeAt reports whether pc lies in an executable mapping, and whether
	// that mapping is a file (not JIT or other anonymous memory).
	CodeAt(pc uint64) (exec, file bool)
	// ReadCode fills buf with the instruction bytes at addr and returns how
	// many it read (0 when the code cannot be read).
	ReadCode(addr uint64, buf []byte) int
}

// maxCallLen is the longest x86-64 call instruction: a REX prefix, FF /2
// with a SIB byte and a 32-bit displacement.
const maxCallLen = 8

// CallPrecedes reports whether the instruction before return address ra
// can be a call ending exactly at ra, and whether the code could be read at
// all (known false: the check could not be made). A value read from a stack
// slot that is not a return address (data under a frame pointer that is not
// one, a function pointer) almost never passes: function entries follow
// padding or a return, not a call.
func CallPrecedes(code CodeMap, ra uint64) (ok, known bool) {
	if ra < maxCallLen {
		return false, true
	}
	var buf [maxCallLen]byte
	if code.ReadCode(ra-maxCallLen, buf[:]) != maxCallLen {
		// The call may start in the mapping before (rare): read what
		// lies in this mapping only.
		return false, false
	}
	// The common forms first, without decoding: E8 rel32, and FF /2 on a
	// register (call *%rax..%rdi); both opcodes are calls wherever they
	// start an instruction.
	if buf[maxCallLen-5] == 0xe8 || buf[maxCallLen-2] == 0xff && buf[maxCallLen-1]&0xf8 == 0xd0 {
		return true, true
	}
	// Decode from every other start that could end at ra: FF /2 memory
	// forms (2..7 bytes, 8 with a prefix).
	for n := 2; n <= maxCallLen; n++ {
		in, err := x86asm.Decode(buf[maxCallLen-n:], 64)
		if err == nil && in.Len == n && in.Op == x86asm.CALL {
			return true, true
		}
	}
	return false, true
}

// Epilogue simulation: for code with neither CFI nor a frame pointer (JIT
// stubs such as CPython's -X perf trampolines, `sub $8,%rsp; call *%rcx;
// add $8,%rsp; ret`), the caller's frame follows from the instructions the
// frame will execute next: when they run straight to a `ret` without a
// branch, a call or a stack-pointer change we cannot follow, their effect on
// rsp and rbp is exact, and so is the return address `ret` will pop.

const (
	maxEpilogueInsns = 16
	maxEpilogueBytes = 64
)

// harmless are instructions that neither branch nor move rsp implicitly; a
// register operand written by them is checked separately.
var harmless = map[x86asm.Op]bool{
	x86asm.MOV: true, x86asm.MOVZX: true, x86asm.MOVSX: true, x86asm.MOVSXD: true, x86asm.LEA: true,
	x86asm.ADD: true, x86asm.SUB: true, x86asm.ADC: true, x86asm.SBB: true, x86asm.AND: true, x86asm.OR: true,
	x86asm.XOR: true, x86asm.CMP: true, x86asm.TEST: true, x86asm.INC: true, x86asm.DEC: true, x86asm.NEG: true,
	x86asm.NOT: true, x86asm.SHL: true, x86asm.SHR: true, x86asm.SAR: true, x86asm.ROL: true, x86asm.ROR: true,
	x86asm.IMUL: true, x86asm.CDQE: true, x86asm.CQO: true, x86asm.CDQ: true, x86asm.CWDE: true, x86asm.NOP: true,
	x86asm.MOVQ: true, x86asm.MOVD: true, x86asm.MOVAPS: true, x86asm.MOVUPS: true, x86asm.MOVDQA: true,
	x86asm.MOVDQU: true, x86asm.MOVSD_XMM: true, x86asm.MOVSS: true, x86asm.PXOR: true, x86asm.XORPS: true,
}

func isHarmless(op x86asm.Op) bool {
	if harmless[op] {
		return true
	}
	s := op.String()
	return strings.HasPrefix(s, "CMOV") || strings.HasPrefix(s, "SET")
}

func isReg(a x86asm.Arg, regs ...x86asm.Reg) bool {
	r, ok := a.(x86asm.Reg)
	if !ok {
		return false
	}
	for _, want := range regs {
		if r == want {
			return true
		}
	}
	return false
}

var endbr64 = [4]byte{0xf3, 0x0f, 0x1e, 0xfa}

// stepEpilogue unwinds one frame by simulating the straight-line code at pc
// (where the frame resumes: the sampled instruction, or the return address)
// up to its `ret`. ok is false when the code is unreadable, branches, or
// changes rsp in a way that is not followed.
func stepEpilogue(code CodeMap, rs *regSet, stack Stack, pc uint64) (next regSet, ok bool) {
	var buf [maxEpilogueBytes]byte
	n := code.ReadCode(pc, buf[:])
	b := buf[:n]
	sp, spOK := rs.get(RegRSP)
	bp, bpOK := rs.get(RegRBP)
	if !spOK {
		return next, false
	}
	for i := 0; i < maxEpilogueInsns && len(b) > 0; i++ {
		if len(b) >= 4 && [4]byte(b[:4]) == endbr64 {
			b = b[4:]
			continue
		}
		in, err := x86asm.Decode(b, 64)
		if err != nil || in.Len == 0 {
			return next, false
		}
		b = b[in.Len:]
		switch in.Op {
		case x86asm.RET:
			ra, ok := stack.read(sp, 8)
			if !ok {
				return next, false
			}
			pop := uint64(8)
			if imm, isImm := in.Args[0].(x86asm.Imm); isImm {
				pop += uint64(imm)
			}
			next.val[RegRA], next.known[RegRA] = ra, true
			next.val[RegRSP], next.known[RegRSP] = sp+pop, true
			next.val[RegRBP], next.known[RegRBP] = bp, bpOK
			return next, true
		case x86asm.PUSH:
			sp -= 8
			continue
		case x86asm.POP:
			switch {
			case isReg(in.Args[0], x86asm.RBP):
				bp, bpOK = stack.read(sp, 8)
				if !bpOK {
					return next, false
				}
			case isReg(in.Args[0], x86asm.RSP):
				return next, false
			default:
				if _, reg := in.Args[0].(x86asm.Reg); !reg {
					return next, false
				}
			}
			sp += 8
			continue
		case x86asm.LEAVE:
			if !bpOK {
				return next, false
			}
			sp = bp
			if bp, bpOK = stack.read(sp, 8); !bpOK {
				return next, false
			}
			sp += 8
			continue
		}
		if !isHarmless(in.Op) {
			return next, false
		}
		if in.Op == x86asm.CMP || in.Op == x86asm.TEST {
			continue // they only set flags
		}
		dst := in.Args[0]
		if isReg(dst, x86asm.RSP, x86asm.ESP, x86asm.SP, x86asm.SPB) {
			// Only the stack-pointer arithmetic of epilogues is followed.
			switch {
			case (in.Op == x86asm.ADD || in.Op == x86asm.SUB) && in.Args[1] != nil:
				imm, isImm := in.Args[1].(x86asm.Imm)
				if !isImm || !isReg(dst, x86asm.RSP) {
					return next, false
				}
				if in.Op == x86asm.ADD {
					sp += uint64(imm)
				} else {
					sp -= uint64(imm)
				}
			case in.Op == x86asm.LEA && isReg(dst, x86asm.RSP):
				m, isMem := in.Args[1].(x86asm.Mem)
				if !isMem || m.Index != 0 || m.Segment != 0 {
					return next, false
				}
				switch {
				case m.Base == x86asm.RSP:
					sp += uint64(m.Disp)
				case m.Base == x86asm.RBP && bpOK:
					sp = bp + uint64(m.Disp)
				default:
					return next, false
				}
			case in.Op == x86asm.MOV && isReg(dst, x86asm.RSP) && isReg(in.Args[1], x86asm.RBP) && bpOK:
				sp = bp
			default:
				return next, false
			}
			continue
		}
		if isReg(dst, x86asm.RBP, x86asm.EBP, x86asm.BP, x86asm.BPB) {
			bpOK = false // rbp now holds a value we do not follow
		}
	}
	return next, false
}
