package unwind

import (
	"errors"
	"fmt"
)

// section is one CFI section of an ELF file: .eh_frame or .debug_frame.
type section struct {
	data  []byte
	addr  uint64 // virtual address of data[0] (0 for .debug_frame)
	debug bool   // .debug_frame: absolute CIE pointers, different CIE id
}

// cie is a Common Information Entry: what FDEs share.
type cie struct {
	codeAlign uint64
	dataAlign int64
	raReg     uint64
	fdeEnc    uint8
	hasAug    bool // 'z': FDEs carry an augmentation data length
	signal    bool // 'S': frames of this CIE are signal trampolines
	initial   []byte
}

// fde is a Frame Description Entry: the CFI program of one address range.
type fde struct {
	start, end uint64
	cie        *cie
	program    []byte
}

var errNotFDE = errors.New("unwind: entry is a CIE")

// entryAt reads the header of the CFI entry at off: its body (after the
// length) and the offset of the next entry. A zero length terminates .eh_frame.
func (s *section) entryAt(off uint64) (body []byte, bodyOff, next uint64, err error) {
	if off >= uint64(len(s.data)) {
		return nil, 0, 0, errTruncated
	}
	r := reader{b: s.data, off: int(off)}
	length := uint64(r.u32())
	if length == 0xffffffff {
		length = r.u64()
	}
	if r.err != nil {
		return nil, 0, 0, r.err
	}
	bodyOff = uint64(r.off)
	if length == 0 {
		return nil, bodyOff, bodyOff, nil
	}
	body = r.bytes(length)
	if r.err != nil {
		return nil, 0, 0, r.err
	}
	return body, bodyOff, uint64(r.off), nil
}

// is64 reports whether the entry at off uses the 64-bit DWARF format.
func (s *section) is64(off uint64) bool {
	return off+4 <= uint64(len(s.data)) && s.data[off] == 0xff && s.data[off+1] == 0xff &&
		s.data[off+2] == 0xff && s.data[off+3] == 0xff
}

// parseCIE decodes the CIE whose entry starts at off.
func (s *section) parseCIE(off uint64) (*cie, error) {
	body, bodyOff, _, err := s.entryAt(off)
	if err != nil {
		return nil, err
	}
	if body == nil {
		return nil, errTruncated
	}
	wide := s.is64(off)
	r := reader{b: body}
	var id uint64
	if wide {
		id = r.u64()
	} else {
		id = uint64(r.u32())
	}
	isCIE := id == 0
	if s.debug {
		isCIE = (wide && id == ^uint64(0)) || (!wide && id == 0xffffffff)
	}
	if !isCIE {
		return nil, errNotFDE
	}
	c := &cie{fdeEnc: peAbsptr}
	version := r.u8()
	if version != 1 && version != 3 && version != 4 {
		return nil, fmt.Errorf("unwind: CIE version %d", version)
	}
	aug := r.cstring()
	if version == 4 {
		if addrSize := r.u8(); addrSize != 8 {
			return nil, fmt.Errorf("unwind: CIE address size %d", addrSize)
		}
		r.u8() // segment selector size
	}
	c.codeAlign = r.uleb()
	c.dataAlign = r.sleb()
	if version == 1 {
		c.raReg = uint64(r.u8())
	} else {
		c.raReg = r.uleb()
	}
	if len(aug) > 0 && aug[0] == 'z' {
		c.hasAug = true
		augLen := r.uleb()
		ar := reader{b: r.bytes(augLen)}
		// The 'z' data is parsed with absolute addresses of the body.
		augAddr := s.addr + bodyOff + uint64(r.off) - augLen
		for _, ch := range aug[1:] {
			switch ch {
			case 'L':
				ar.u8()
			case 'P':
				enc := ar.u8()
				if _, err := ar.pointer(enc&^peIndirect, augAddr, 0); err != nil {
					return nil, err
				}
			case 'R':
				c.fdeEnc = ar.u8()
			case 'S':
				c.signal = true
			case 'B', 'G':
			default:
				// An unknown letter means we cannot know the layout of what
				// follows; 'z' lets us skip it as a whole.
			}
		}
	} else if aug != "" && aug != "eh" {
		return nil, fmt.Errorf("unwind: unsupported CIE augmentation %q", aug)
	} else if aug == "eh" {
		r.u64() // GCC 2.x exception table pointer
	}
	if r.err != nil {
		return nil, r.err
	}
	if c.codeAlign == 0 {
		c.codeAlign = 1
	}
	c.initial = body[r.off:]
	return c, nil
}

// parseFDE decodes the FDE whose entry starts at off. cieFor resolves the
// CIE by its section offset (cached by the caller).
func (s *section) parseFDE(off uint64, cieFor func(uint64) (*cie, error)) (*fde, uint64, error) {
	body, bodyOff, next, err := s.entryAt(off)
	if err != nil {
		return nil, 0, err
	}
	if body == nil {
		return nil, next, errTruncated
	}
	wide := s.is64(off)
	r := reader{b: body}
	var ptr uint64
	if wide {
		ptr = r.u64()
	} else {
		ptr = uint64(r.u32())
	}
	var cieOff uint64
	if s.debug {
		if (wide && ptr == ^uint64(0)) || (!wide && ptr == 0xffffffff) {
			return nil, next, errNotFDE
		}
		cieOff = ptr
	} else {
		if ptr == 0 {
			return nil, next, errNotFDE
		}
		// .eh_frame: the pointer is relative to the CIE pointer field.
		if ptr > bodyOff {
			return nil, next, errTruncated
		}
		cieOff = bodyOff - ptr
	}
	c, err := cieFor(cieOff)
	if err != nil {
		return nil, next, err
	}
	addr := s.addr + bodyOff
	sub := reader{b: body, off: r.off}
	start, err := sub.pointer(c.fdeEnc, addr, 0)
	if err != nil {
		return nil, next, err
	}
	length, err := sub.pointer(c.fdeEnc&0x0f, addr, 0)
	if err != nil {
		return nil, next, err
	}
	if c.hasAug {
		sub.bytes(sub.uleb())
	}
	if sub.err != nil {
		return nil, next, sub.err
	}
	return &fde{start: start, end: start + length, cie: c, program: body[sub.off:]}, next, nil
}
