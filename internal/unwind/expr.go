package unwind

import "errors"

// Limits on DWARF expressions: CFI expressions are a handful of operations
// (PLT entries, stack realignment, signal frames); anything larger is hostile.
const (
	maxExprStack = 64
	maxExprSteps = 1024
)

var (
	errExpr      = errors.New("unwind: unsupported or malformed DWARF expression")
	errNoReg     = errors.New("unwind: expression reads an unknown register")
	errStackRead = errors.New("unwind: read outside the copied stack")
)

// regSet is the register state of one frame during the walk.
type regSet struct {
	val   [NumRegs]uint64
	known [NumRegs]bool
}

func (rs *regSet) get(reg uint64) (uint64, bool) {
	if reg >= NumRegs || !rs.known[reg] {
		return 0, false
	}
	return rs.val[reg], true
}

// memReader reads 8 bytes of the target's memory (the copied stack window).
type memReader func(addr uint64, size int) (uint64, bool)

// evalExpr runs a DWARF expression for CFI. push, when set, is pushed first
// (the CFA, for DW_CFA_expression and DW_CFA_val_expression).
func evalExpr(expr []byte, regs *regSet, mem memReader, push *uint64) (uint64, error) {
	var stack [maxExprStack]uint64
	sp := 0
	pushv := func(v uint64) bool {
		if sp >= maxExprStack {
			return false
		}
		stack[sp] = v
		sp++
		return true
	}
	if push != nil {
		pushv(*push)
	}
	r := reader{b: expr}
	for steps := 0; r.left() > 0; steps++ {
		if steps > maxExprSteps {
			return 0, errExpr
		}
		op := r.u8()
		// Binary operators pop two values.
		binary := func(f func(a, b uint64) uint64) bool {
			if sp < 2 {
				return false
			}
			stack[sp-2] = f(stack[sp-2], stack[sp-1])
			sp--
			return true
		}
		ok := true
		switch {
		case op >= 0x30 && op <= 0x4f: // DW_OP_lit0..31
			ok = pushv(uint64(op - 0x30))
		case op >= 0x50 && op <= 0x6f: // DW_OP_reg0..31 (value of the register)
			v, known := regs.get(uint64(op - 0x50))
			if !known {
				return 0, errNoReg
			}
			ok = pushv(v)
		case op >= 0x70 && op <= 0x8f: // DW_OP_breg0..31 offset
			v, known := regs.get(uint64(op - 0x70))
			off := r.sleb()
			if !known {
				return 0, errNoReg
			}
			ok = pushv(v + uint64(off))
		default:
			switch op {
			case 0x03: // DW_OP_addr
				ok = pushv(r.u64())
			case 0x06, 0x94: // DW_OP_deref, DW_OP_deref_size
				size := 8
				if op == 0x94 {
					size = int(r.u8())
				}
				if sp < 1 || size < 1 || size > 8 {
					return 0, errExpr
				}
				v, okm := mem(stack[sp-1], size)
				if !okm {
					return 0, errStackRead
				}
				stack[sp-1] = v
			case 0x08:
				ok = pushv(uint64(r.u8()))
			case 0x09:
				ok = pushv(uint64(int64(int8(r.u8()))))
			case 0x0a:
				ok = pushv(uint64(r.u16()))
			case 0x0b:
				ok = pushv(uint64(int64(int16(r.u16()))))
			case 0x0c:
				ok = pushv(uint64(r.u32()))
			case 0x0d:
				ok = pushv(uint64(int64(int32(r.u32()))))
			case 0x0e, 0x0f:
				ok = pushv(r.u64())
			case 0x10: // DW_OP_constu
				ok = pushv(r.uleb())
			case 0x11: // DW_OP_consts
				ok = pushv(uint64(r.sleb()))
			case 0x12: // dup
				ok = sp >= 1 && pushv(stack[sp-1])
			case 0x13: // drop
				ok = sp >= 1
				if ok {
					sp--
				}
			case 0x14: // over
				ok = sp >= 2 && pushv(stack[sp-2])
			case 0x15: // pick
				i := int(r.u8())
				ok = i < sp && pushv(stack[sp-1-i])
			case 0x16: // swap
				ok = sp >= 2
				if ok {
					stack[sp-1], stack[sp-2] = stack[sp-2], stack[sp-1]
				}
			case 0x17: // rot
				ok = sp >= 3
				if ok {
					stack[sp-1], stack[sp-2], stack[sp-3] = stack[sp-2], stack[sp-3], stack[sp-1]
				}
			case 0x19: // abs
				ok = sp >= 1
				if ok && int64(stack[sp-1]) < 0 {
					stack[sp-1] = -stack[sp-1]
				}
			case 0x1a:
				ok = binary(func(a, b uint64) uint64 { return a & b })
			case 0x1b: // div (signed)
				if sp >= 2 && stack[sp-1] == 0 {
					return 0, errExpr
				}
				ok = binary(func(a, b uint64) uint64 { return uint64(int64(a) / int64(b)) })
			case 0x1c:
				ok = binary(func(a, b uint64) uint64 { return a - b })
			case 0x1d: // mod
				if sp >= 2 && stack[sp-1] == 0 {
					return 0, errExpr
				}
				ok = binary(func(a, b uint64) uint64 { return a % b })
			case 0x1e:
				ok = binary(func(a, b uint64) uint64 { return a * b })
			case 0x1f: // neg
				ok = sp >= 1
				if ok {
					stack[sp-1] = -stack[sp-1]
				}
			case 0x20: // not
				ok = sp >= 1
				if ok {
					stack[sp-1] = ^stack[sp-1]
				}
			case 0x21:
				ok = binary(func(a, b uint64) uint64 { return a | b })
			case 0x22:
				ok = binary(func(a, b uint64) uint64 { return a + b })
			case 0x23: // plus_uconst
				ok = sp >= 1
				if ok {
					stack[sp-1] += r.uleb()
				}
			case 0x24:
				ok = binary(func(a, b uint64) uint64 {
					if b >= 64 {
						return 0
					}
					return a << b
				})
			case 0x25:
				ok = binary(func(a, b uint64) uint64 {
					if b >= 64 {
						return 0
					}
					return a >> b
				})
			case 0x26:
				ok = binary(func(a, b uint64) uint64 {
					if b >= 64 {
						b = 63
					}
					return uint64(int64(a) >> b)
				})
			case 0x27:
				ok = binary(func(a, b uint64) uint64 { return a ^ b })
			case 0x28, 0x2f: // bra, skip
				off := int(int16(r.u16()))
				take := op == 0x2f
				if op == 0x28 {
					if sp < 1 {
						return 0, errExpr
					}
					take = stack[sp-1] != 0
					sp--
				}
				if take {
					dst := r.off + off
					if dst < 0 || dst > len(expr) {
						return 0, errExpr
					}
					r.off = dst
				}
			case 0x29, 0x2a, 0x2b, 0x2c, 0x2d, 0x2e: // eq ge gt le lt ne (signed)
				ok = binary(func(a, b uint64) uint64 {
					x, y := int64(a), int64(b)
					var t bool
					switch op {
					case 0x29:
						t = x == y
					case 0x2a:
						t = x >= y
					case 0x2b:
						t = x > y
					case 0x2c:
						t = x <= y
					case 0x2d:
						t = x < y
					case 0x2e:
						t = x != y
					}
					if t {
						return 1
					}
					return 0
				})
			case 0x90: // regx
				v, known := regs.get(r.uleb())
				if !known {
					return 0, errNoReg
				}
				ok = pushv(v)
			case 0x92: // bregx
				reg := r.uleb()
				off := r.sleb()
				v, known := regs.get(reg)
				if !known {
					return 0, errNoReg
				}
				ok = pushv(v + uint64(off))
			case 0x96: // nop
			default:
				return 0, errExpr
			}
		}
		if !ok || r.err != nil {
			return 0, errExpr
		}
	}
	if sp < 1 {
		return 0, errExpr
	}
	return stack[sp-1], nil
}
