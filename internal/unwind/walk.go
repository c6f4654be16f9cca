package unwind

import (
	"encoding/binary"
	"sync/atomic"
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
	ReasonEnd          Reason = iota // reached the outermost frame
	ReasonNoModule                   // PC not in a file-backed mapping
	ReasonNoCFI                      // the file has no CFI row for the PC
	ReasonOutsideStack               // a saved value lies beyond the copied stack
	ReasonDepth                      // the depth limit was reached
	ReasonLoop                       // the stack pointer did not move up (corrupt or cyclic)
	ReasonBadCFI                     // malformed or unsupported CFI or expression
	ReasonUnknownReg                 // the CFA depends on a register we do not have
	numReasons
)

var reasonNames = [numReasons]string{"end", "no_module", "no_cfi", "outside_stack", "depth", "loop", "bad_cfi", "unknown_register"}

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

// Options tune a walk.
type Options struct {
	// MaxDepth bounds the number of frames (default 127, as perf).
	MaxDepth int
	// FramePointerFallback follows the rbp chain for a frame whose PC has no
	// CFI (code built with frame pointers but without .eh_frame, JIT code).
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
}

// Complete reports whether the walk reached the outermost frame.
func (r Result) Complete() bool { return r.Reason == ReasonEnd }

// Unwind walks the stack described by regs and stack through the CFI of mods.
// It never panics on hostile tables or stacks.
func Unwind(mods Modules, regs Regs, stack Stack, opt Options) (res Result) {
	maxDepth := opt.MaxDepth
	if maxDepth <= 0 {
		maxDepth = 127
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
			}
		}
		if reason == ReasonNoCFI || reason == ReasonNoModule {
			if !opt.FramePointerFallback {
				return res.stop(reason, pc)
			}
			next, reason = stepFramePointer(&rs, stack, reason)
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

// stepFramePointer unwinds one frame of code compiled with frame pointers:
// [rbp] is the caller's rbp and [rbp+8] the return address.
func stepFramePointer(rs *regSet, stack Stack, why Reason) (regSet, Reason) {
	var next regSet
	bp, ok := rs.get(RegRBP)
	if !ok || bp == 0 {
		return next, why
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
