package unwind

import (
	"errors"
	"fmt"
)

// x86-64 DWARF register numbers (System V psABI, figure 3.36).
const (
	RegRBP = 6
	RegRSP = 7
	RegRA  = 16 // the return address column (rip)
	// NumRegs covers rax..r15 plus the return address column, which is all
	// an unwinder of integer registers needs.
	NumRegs = 17
)

// ruleKind says how to recover a caller's register.
type ruleKind uint8

const (
	ruleUnspecified ruleKind = iota // not mentioned: callee-saved convention = same value
	ruleUndefined                   // cannot be recovered (RA undefined = outermost frame)
	ruleSame                        // unchanged
	ruleOffset                      // saved at CFA+off
	ruleValOffset                   // value is CFA+off
	ruleRegister                    // value is in another register
	ruleExpr                        // saved at the address computed by expr (CFA pushed first)
	ruleValExpr                     // value computed by expr (CFA pushed first)
)

type regRule struct {
	kind ruleKind
	reg  uint8
	off  int64
	expr []byte
}

// cfaRule is the Canonical Frame Address rule: register+offset or expression.
type cfaRule struct {
	reg  uint64
	off  int64
	expr []byte // non-nil: DW_CFA_def_cfa_expression
}

// Row is the CFI row in effect at one PC: how to compute the CFA and every
// tracked register of the caller.
type Row struct {
	CFA    cfaRule
	Regs   [NumRegs]regRule
	Signal bool // the frame is a signal trampoline (CIE augmentation 'S')
}

// maxStateStack bounds DW_CFA_remember_state nesting in hostile tables.
const maxStateStack = 64

var errBadCFI = errors.New("unwind: malformed CFI program")

// rowAt runs the CIE's initial instructions then the FDE's program up to pc.
func rowAt(f *fde, pc uint64) (Row, error) {
	var row Row
	row.Signal = f.cie.signal
	if err := execute(f.cie, f.cie.initial, &row, nil, ^uint64(0), f.start); err != nil {
		return row, err
	}
	initial := row
	if err := execute(f.cie, f.program, &row, &initial, pc, f.start); err != nil {
		return row, err
	}
	return row, nil
}

// execute interprets one CFI instruction stream into row, stopping once the
// location passes pc. initial is the row after the CIE (for DW_CFA_restore).
func execute(c *cie, prog []byte, row *Row, initial *Row, pc, loc uint64) error {
	r := reader{b: prog}
	var stack []Row
	setReg := func(reg uint64, rule regRule) {
		if reg < NumRegs {
			row.Regs[reg] = rule
		}
		// Registers we do not track (SSE, x87, ...) are ignored on purpose.
	}
	for r.left() > 0 {
		op := r.u8()
		var operand uint64
		if op&0xc0 != 0 {
			operand = uint64(op & 0x3f)
			op &= 0xc0
		}
		var advance uint64
		switch op {
		case 0x40: // DW_CFA_advance_loc
			advance = operand * c.codeAlign
		case 0x80: // DW_CFA_offset
			setReg(operand, regRule{kind: ruleOffset, off: int64(r.uleb()) * c.dataAlign})
		case 0xc0: // DW_CFA_restore
			if initial != nil && operand < NumRegs {
				row.Regs[operand] = initial.Regs[operand]
			}
		case 0x00: // DW_CFA_nop
		case 0x01: // DW_CFA_set_loc
			v, err := r.pointer(c.fdeEnc, 0, 0)
			if err != nil {
				return err
			}
			if v > pc {
				return nil
			}
			loc = v
		case 0x02:
			advance = uint64(r.u8()) * c.codeAlign
		case 0x03:
			advance = uint64(r.u16()) * c.codeAlign
		case 0x04:
			advance = uint64(r.u32()) * c.codeAlign
		case 0x05: // DW_CFA_offset_extended
			reg := r.uleb()
			setReg(reg, regRule{kind: ruleOffset, off: int64(r.uleb()) * c.dataAlign})
		case 0x06: // DW_CFA_restore_extended
			reg := r.uleb()
			if initial != nil && reg < NumRegs {
				row.Regs[reg] = initial.Regs[reg]
			}
		case 0x07: // DW_CFA_undefined
			setReg(r.uleb(), regRule{kind: ruleUndefined})
		case 0x08: // DW_CFA_same_value
			setReg(r.uleb(), regRule{kind: ruleSame})
		case 0x09: // DW_CFA_register
			reg := r.uleb()
			src := r.uleb()
			if src >= NumRegs {
				setReg(reg, regRule{kind: ruleUndefined})
			} else {
				setReg(reg, regRule{kind: ruleRegister, reg: uint8(src)})
			}
		case 0x0a: // DW_CFA_remember_state
			if len(stack) >= maxStateStack {
				return errBadCFI
			}
			stack = append(stack, *row)
		case 0x0b: // DW_CFA_restore_state
			if len(stack) == 0 {
				return errBadCFI
			}
			// The CFA is part of the saved state too (DWARF 5 6.4.2.4).
			*row = stack[len(stack)-1]
			stack = stack[:len(stack)-1]
		case 0x0c: // DW_CFA_def_cfa
			row.CFA = cfaRule{reg: r.uleb(), off: int64(r.uleb())}
		case 0x0d: // DW_CFA_def_cfa_register
			row.CFA.reg = r.uleb()
			row.CFA.expr = nil
		case 0x0e: // DW_CFA_def_cfa_offset
			row.CFA.off = int64(r.uleb())
		case 0x0f: // DW_CFA_def_cfa_expression
			row.CFA = cfaRule{expr: r.bytes(r.uleb())}
			if row.CFA.expr == nil {
				row.CFA.expr = []byte{}
			}
		case 0x10: // DW_CFA_expression
			reg := r.uleb()
			setReg(reg, regRule{kind: ruleExpr, expr: r.bytes(r.uleb())})
		case 0x11: // DW_CFA_offset_extended_sf
			reg := r.uleb()
			setReg(reg, regRule{kind: ruleOffset, off: r.sleb() * c.dataAlign})
		case 0x12: // DW_CFA_def_cfa_sf
			row.CFA = cfaRule{reg: r.uleb(), off: r.sleb() * c.dataAlign}
		case 0x13: // DW_CFA_def_cfa_offset_sf
			row.CFA.off = r.sleb() * c.dataAlign
		case 0x14: // DW_CFA_val_offset
			reg := r.uleb()
			setReg(reg, regRule{kind: ruleValOffset, off: int64(r.uleb()) * c.dataAlign})
		case 0x15: // DW_CFA_val_offset_sf
			reg := r.uleb()
			setReg(reg, regRule{kind: ruleValOffset, off: r.sleb() * c.dataAlign})
		case 0x16: // DW_CFA_val_expression
			reg := r.uleb()
			setReg(reg, regRule{kind: ruleValExpr, expr: r.bytes(r.uleb())})
		case 0x2e: // DW_CFA_GNU_args_size: only matters for exception landing pads
			r.uleb()
		case 0x2f: // DW_CFA_GNU_negative_offset_extended
			reg := r.uleb()
			setReg(reg, regRule{kind: ruleOffset, off: -int64(r.uleb()) * c.dataAlign})
		default:
			return fmt.Errorf("unwind: unknown CFA opcode %#x", op)
		}
		if r.err != nil {
			return r.err
		}
		if advance != 0 {
			if loc+advance > pc {
				return nil
			}
			loc += advance
		}
	}
	return nil
}
