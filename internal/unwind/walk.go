package unwind

import (
	"encoding/binary"
	"sync/atomic"

	"golang.org/x/arch/x86/x86asm"
)

// Regs is the user register state at the sample: enough to start a walk.
type Regs struct {
	PC, SP, BP uint64
}

// Stack is a copy of the thread's stack memory: Data holds the bytes at
// addresses [Base, Base+len(Data)), normally starting at the sampled SP.
type Stack struct {
	Base uint64
	Data []byte
}

func (s Stack) read(addr uint64, size int) (uint64, bool) {
	if addr < s.Base || addr-s.Base > uint64(len(s.Data)) || uint64(len(s.Data))-(addr-s.Base) < uint64(size) {
		return 0, false
	}
	var buf [8]byte
	copy(buf[:], s.Data[addr-s.Base:addr-s.Base+uint64(size)])
	return binary.LittleEndian.Uint64(buf[:]), true
}

// Module is the CFI of the file mapped at a PC and its load bias: the file's
// virtual address of a PC is PC-Bias.
type Module struct {
	Table *Table
	Bias  uint64
}

// Modules finds the module mapped at a PC of the unwound process. Ok is false
// for anonymous memory (JIT code), [vdso] without a table, or unmapped PCs.
type Modules interface {
	ModuleFor(pc uint64) (Module, bool)
}

// Reason says why a walk stopped. ReasonEnd is success: the outermost frame
// (its return address is undefined, as _start and clone mark it) was reached.
type Reason uint8

const (
	ReasonEnd              Reason = iota // reached the outermost frame
	ReasonNoModule                       // PC not in a file-backed mapping
	ReasonNoCFI                          // the file has no CFI row for the PC
	ReasonOutsideStack                   // a saved value lies beyond the copied stack
	ReasonDepth                          // the depth limit was reached
	ReasonLoop                           // the stack pointer did not move up (corrupt or cyclic)
	ReasonBadCFI                         // malformed or unsupported CFI or expression
	ReasonUnknownReg                     // the CFA depends on a register we do not have
	ReasonBadFramePointer                // a frame without CFI whose rbp is no frame address (code without frame pointers)
	ReasonBadReturnAddress               // a step gave a return address outside executable code, or not after a call
	numReasons
)

var reasonNames = [numReasons]string{"end", "no_module", "no_cfi", "outside_stack", "depth", "loop", "bad_cfi", "unknown_register",
	"bad_frame_pointer", "bad_return_address"}

func (r Reason) String() string {
	if r < numReasons {
		return reasonNames[r]
	}
	return "unknown"
}

// Reasons lists every reason, for reports that show zero counts too.
func Reasons() []Reason {
	out := make([]Reason, numReasons)
	for i := range out {
		out[i] = Reason(i)
	}
	return out
}

// defaultMaxDepth is the frame limit of a walk, as perf's and bpf_get_stack's.
const defaultMaxDepth = 127

// Options tune a walk.
type Options struct {
	// MaxDepth bounds the number of frames (default 127, as perf).
	MaxDepth int
	// FramePointerFallback unwinds a frame whose PC has no CFI (code built
	// with frame pointers but without .eh_frame, JIT code) by its frame
	// pointer when that checks out (rbp points into the stack above rsp and
	// [rbp+8] is a return address), else by simulating its epilogue when
	// the code is readable (see CodeMap).
	FramePointerFallback bool
	// LeafIsReturnAddress says Regs.PC is a return address (registers read
	// at a uretprobe), so its CFI is looked up at PC-1 like callers' PCs.
	LeafIsReturnAddress bool
}

// Result is one unwound stack: PCs leaf first (the first is the sampled PC,
// the others are return addresses), and why the walk stopped.
type Result struct {
	PCs    []uint64
	Reason Reason
	// StopPC is the PC whose frame could not be unwound (0 on success).
	StopPC uint64
	// Unmapped is the return address a CFI step produced outside every
	// executable mapping (ReasonBadReturnAddress): CFI is exact, so the
	// caller's list of mappings may be out of date.
	Unmapped uint64
}

// Complete reports whether the walk reached the outermost frame.
func (r Result) Complete() bool { return r.Reason == ReasonEnd }

// Unwind walks the stack described by regs and stack through the CFI of mods.
// It never panics on hostile tables or stacks.
func Unwind(mods Modules, regs Regs, stack Stack, opt Options) (res Result) {
	maxDepth := opt.MaxDepth
	if maxDepth <= 0 {
		maxDepth = defaultMaxDepth
	}
	defer func() {
		if r := recover(); r != nil {
			res.Reason = ReasonBadCFI
		}
	}()
	var rs regSet
	rs.val[RegRA], rs.known[RegRA] = regs.PC, true
	rs.val[RegRSP], rs.known[RegRSP] = regs.SP, true
	rs.val[RegRBP], rs.known[RegRBP] = regs.BP, true
	res.PCs = append(res.PCs, regs.PC)
	code, _ := mods.(CodeMap)
	exact := !opt.LeafIsReturnAddress // a sampled PC is the instruction itself
	for {
		pc := rs.val[RegRA]
		if len(res.PCs) >= maxDepth {
			return res.stop(ReasonDepth, pc)
		}
		lookup := pc
		if !exact && lookup > 0 {
			// A return address points after the call, maybe past the end of
			// a noreturn function's FDE: look up the call instruction.
			lookup--
		}
		var next regSet
		var reason Reason
		var signal bool
		mod, ok := mods.ModuleFor(lookup)
		if !ok {
			reason = ReasonNoModule
			if code != nil {
				if _, file := code.CodeAt(lookup); file {
					reason = ReasonNoCFI // a file without CFI (a stripped Go binary)
				}
			}
		} else {
			var row Row
			var found bool
			var err error
			row, found, err = mod.Table.RowAt(lookup - mod.Bias)
			switch {
			case err != nil:
				reason = ReasonBadCFI
			case !found:
				reason = ReasonNoCFI
			default:
				next, reason = step(&row, &rs, stack)
				signal = row.Signal
				if reason == ReasonEnd && next.known[RegRA] && next.val[RegRA] != 0 && code != nil {
					// CFI is exact, but a stale or corrupt stack is not:
					// the caller must be code.
					if exec, _ := code.CodeAt(next.val[RegRA]); !exec {
						reason = ReasonBadReturnAddress
						res.Unmapped = next.val[RegRA]
					}
				}
			}
		}
		if reason == ReasonNoCFI || reason == ReasonNoModule {
			if !opt.FramePointerFallback {
				return res.stop(reason, pc)
			}
			if code != nil {
				if exec, _ := code.CodeAt(lookup); !exec {
					// Not code at all (a sample inside exec still has
					// the old program's registers): nothing to check
					// a frame pointer or an epilogue against.
					return res.stop(ReasonNoModule, pc)
				}
			}
			next, reason = stepWithoutCFI(code, &rs, stack, pc, reason)
		}
		if reason != ReasonEnd {
			return res.stop(reason, pc)
		}
		if !next.known[RegRA] {
			return res // outermost frame: return address undefined
		}
		ra := next.val[RegRA]
		if ra == 0 {
			return res // a zeroed return address also ends thread stacks
		}
		if !signal && next.val[RegRSP] <= rs.val[RegRSP] {
			return res.stop(ReasonLoop, pc)
		}
		res.PCs = append(res.PCs, ra)
		rs = next
		exact = signal
	}
}

func (r Result) stop(reason Reason, pc uint64) Result {
	r.Reason, r.StopPC = reason, pc
	return r
}

// step applies one CFI row: computes the CFA and the caller's registers.
// It returns ReasonEnd when the caller's frame is ready.
func step(row *Row, rs *regSet, stack Stack) (regSet, Reason) {
	var next regSet
	var cfa uint64
	if row.CFA.expr != nil {
		v, err := evalExpr(row.CFA.expr, rs, stack.read, nil)
		if err != nil {
			return next, exprReason(err)
		}
		cfa = v
	} else {
		base, ok := rs.get(row.CFA.reg)
		if !ok {
			return next, ReasonUnknownReg
		}
		cfa = base + uint64(row.CFA.off)
	}
	for reg := uint64(0); reg < NumRegs; reg++ {
		rule := row.Regs[reg]
		var v uint64
		ok := false
		switch rule.kind {
		case ruleUnspecified:
			if reg == RegRSP {
				v, ok = cfa, true // the caller's SP is the CFA on x86-64
			} else if reg != RegRA {
				v, ok = rs.get(reg)
			}
		case ruleSame:
			v, ok = rs.get(reg)
		case ruleUndefined:
		case ruleOffset:
			v, ok = stack.read(cfa+uint64(rule.off), 8)
			if !ok && reg == RegRA {
				return next, ReasonOutsideStack
			}
		case ruleValOffset:
			v, ok = cfa+uint64(rule.off), true
		case ruleRegister:
			v, ok = rs.get(uint64(rule.reg))
		case ruleExpr, ruleValExpr:
			c := cfa
			addr, err := evalExpr(rule.expr, rs, stack.read, &c)
			if err != nil {
				if reg == RegRA || reg == RegRSP {
					return next, exprReason(err)
				}
				break
			}
			if rule.kind == ruleValExpr {
				v, ok = addr, true
			} else {
				v, ok = stack.read(addr, 8)
				if !ok && (reg == RegRA || reg == RegRSP) {
					return next, ReasonOutsideStack
				}
			}
		}
		next.val[reg], next.known[reg] = v, ok
	}
	if !next.known[RegRSP] {
		next.val[RegRSP], next.known[RegRSP] = cfa, true
	}
	return next, ReasonEnd
}

// maxStackSpan bounds how far above rsp a frame pointer may point and still
// be taken for a frame beyond the copied window (8 MiB, the usual stack
// limit) rather than for a value that is no frame address.
const maxStackSpan = 8 << 20

// stepWithoutCFI unwinds a frame that has no CFI (why says which: no_cfi or
// no_module). Every way is checked, none guessed: the frame pointer when it
// points into the stack above rsp and [rbp+8] is a return address (executable,
// after a call); else the frame's epilogue when the code can be read and runs
// straight to its ret; else, in a file's code, rbp = 0 marks the outermost
// frame (the psABI's convention: _start clears it, and so do runtimes for
// their thread roots). Otherwise the walk stops with the frame pointer's
// reason.
func stepWithoutCFI(code CodeMap, rs *regSet, stack Stack, pc uint64, why Reason) (regSet, Reason) {
	next, reason := stepFramePointer(rs, stack)
	if reason == ReasonEnd {
		reason = checkReturnAddress(code, next.val[RegRA])
		if next.val[RegRA] == 0 && next.val[RegRBP] != 0 {
			reason = ReasonBadReturnAddress // a chain ends with both zero
		}
		if reason == ReasonEnd {
			return next, ReasonEnd
		}
	}
	if code != nil {
		if e, ok := stepEpilogue(code, rs, stack, pc); ok && checkReturnAddress(code, e.val[RegRA]) == ReasonEnd {
			return e, ReasonEnd
		}
	}
	if bp, ok := rs.get(RegRBP); ok && bp == 0 && why == ReasonNoCFI {
		return regSet{}, ReasonEnd // return address unknown: the outermost frame
	}
	if reason == ReasonNoModule || reason == ReasonNoCFI {
		reason = why
	}
	return next, reason
}

// stepFramePointer unwinds one frame of code compiled with frame pointers:
// [rbp] is the caller's rbp and [rbp+8] the return address. A frame pointer
// must be aligned and lie above rsp, inside the copied window (else the
// frame is deeper than the copy, outside_stack) or at most maxStackSpan
// above rsp; anything else is no frame pointer (bad_frame_pointer).
func stepFramePointer(rs *regSet, stack Stack) (regSet, Reason) {
	var next regSet
	bp, ok := rs.get(RegRBP)
	if !ok {
		return next, ReasonUnknownReg
	}
	sp, _ := rs.get(RegRSP)
	if bp == 0 || bp%8 != 0 || bp < sp || bp-sp > maxStackSpan {
		return next, ReasonBadFramePointer
	}
	savedBP, ok1 := stack.read(bp, 8)
	ra, ok2 := stack.read(bp+8, 8)
	if !ok1 || !ok2 {
		return next, ReasonOutsideStack
	}
	next.val[RegRBP], next.known[RegRBP] = savedBP, true
	next.val[RegRA], next.known[RegRA] = ra, true
	next.val[RegRSP], next.known[RegRSP] = bp+16, true
	return next, ReasonEnd
}

// checkReturnAddress vouches for a return address no CFI produced: it must
// lie in executable memory and follow a call instruction (when the code can
// be read). 0 passes: it ends thread stacks.
func checkReturnAddress(code CodeMap, ra uint64) Reason {
	if ra == 0 || code == nil {
		return ReasonEnd
	}
	if exec, _ := code.CodeAt(ra); !exec {
		return ReasonBadReturnAddress
	}
	if call, known := CallPrecedes(code, ra); known && !call && !goexitReturn(code, ra) {
		return ReasonBadReturnAddress
	}
	return ReasonEnd
}

// goexitReturn recognizes the one return address no call made: Go gives
// each goroutine's first function runtime.goexit+1 as its return address,
// between the NOP goexit opens with and the call that ends the goroutine.
func goexitReturn(code CodeMap, ra uint64) bool {
	var buf [16]byte
	if code.ReadCode(ra-1, buf[:]) < 6 || buf[0] != 0x90 {
		return false
	}
	in, err := x86asm.Decode(buf[1:], 64)
	return err == nil && in.Op == x86asm.CALL
}

func exprReason(err error) Reason {
	switch err {
	case errStackRead:
		return ReasonOutsideStack
	case errNoReg:
		return ReasonUnknownReg
	}
	return ReasonBadCFI
}

// Counts tallies walk outcomes by reason; safe for concurrent use.
type Counts struct {
	n [numReasons]atomic.Uint64
}

// Add counts one walk.
func (c *Counts) Add(r Result) {
	if r.Reason < numReasons {
		c.n[r.Reason].Add(1)
	}
}

// Map returns the non-zero counts by reason name (for manifest drops).
func (c *Counts) Map() map[string]uint64 {
	out := map[string]uint64{}
	for i := range c.n {
		if v := c.n[i].Load(); v > 0 {
			out[reasonNames[i]] = v
		}
	}
	return out
}

// Total is the number of walks counted.
func (c *Counts) Total() uint64 {
	var t uint64
	for i := range c.n {
		t += c.n[i].Load()
	}
	return t
}
