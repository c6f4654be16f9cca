package unwind

import (
	"encoding/binary"
	"errors"
)

// errTruncated is returned whenever CFI data ends in the middle of a field:
// the tables come from binaries we do not trust.
var errTruncated = errors.New("unwind: truncated call frame information")

// reader is a bounds-checked little-endian cursor over a section. Every read
// fails softly (sets err) instead of panicking.
type reader struct {
	b   []byte
	off int
	err error
}

func (r *reader) fail() {
	if r.err == nil {
		r.err = errTruncated
	}
	r.off = len(r.b)
}

func (r *reader) left() int { return len(r.b) - r.off }

func (r *reader) u8() uint8 {
	if r.left() < 1 {
		r.fail()
		return 0
	}
	v := r.b[r.off]
	r.off++
	return v
}

func (r *reader) u16() uint16 {
	if r.left() < 2 {
		r.fail()
		return 0
	}
	v := binary.LittleEndian.Uint16(r.b[r.off:])
	r.off += 2
	return v
}

func (r *reader) u32() uint32 {
	if r.left() < 4 {
		r.fail()
		return 0
	}
	v := binary.LittleEndian.Uint32(r.b[r.off:])
	r.off += 4
	return v
}

func (r *reader) u64() uint64 {
	if r.left() < 8 {
		r.fail()
		return 0
	}
	v := binary.LittleEndian.Uint64(r.b[r.off:])
	r.off += 8
	return v
}

func (r *reader) bytes(n uint64) []byte {
	if n > uint64(r.left()) {
		r.fail()
		return nil
	}
	v := r.b[r.off : r.off+int(n)]
	r.off += int(n)
	return v
}

func (r *reader) uleb() uint64 {
	var v uint64
	var shift uint
	for {
		c := r.u8()
		if r.err != nil {
			return 0
		}
		if shift < 64 {
			v |= uint64(c&0x7f) << shift
		}
		shift += 7
		if c&0x80 == 0 {
			return v
		}
	}
}

func (r *reader) sleb() int64 {
	var v int64
	var shift uint
	var c uint8
	for {
		c = r.u8()
		if r.err != nil {
			return 0
		}
		if shift < 64 {
			v |= int64(c&0x7f) << shift
		}
		shift += 7
		if c&0x80 == 0 {
			break
		}
	}
	if shift < 64 && c&0x40 != 0 {
		v |= -1 << shift
	}
	return v
}

func (r *reader) cstring() string {
	for i := r.off; i < len(r.b); i++ {
		if r.b[i] == 0 {
			s := string(r.b[r.off:i])
			r.off = i + 1
			return s
		}
	}
	r.fail()
	return ""
}

// Pointer encodings (DW_EH_PE_*) used by .eh_frame and .eh_frame_hdr.
const (
	peAbsptr   = 0x00
	peUleb128  = 0x01
	peUdata2   = 0x02
	peUdata4   = 0x03
	peUdata8   = 0x04
	peSleb128  = 0x09
	peSdata2   = 0x0a
	peSdata4   = 0x0b
	peSdata8   = 0x0c
	pePcrel    = 0x10
	peTextrel  = 0x20
	peDatarel  = 0x30
	peFuncrel  = 0x40
	peAligned  = 0x50
	peIndirect = 0x80
	peOmit     = 0xff
)

var errEncoding = errors.New("unwind: unsupported pointer encoding")

// pointer reads one encoded pointer. secAddr is the virtual address of r.b[0]
// (for pc-relative values) and dataAddr the base for data-relative ones.
// Indirect pointers would need to read the loaded image; CFI for code
// addresses never uses them, so they are rejected.
func (r *reader) pointer(enc uint8, secAddr, dataAddr uint64) (uint64, error) {
	if enc == peOmit {
		return 0, nil
	}
	fieldAddr := secAddr + uint64(r.off)
	var v uint64
	switch enc & 0x0f {
	case peAbsptr, peUdata8, peSdata8:
		v = r.u64()
	case peUleb128:
		v = r.uleb()
	case peUdata2:
		v = uint64(r.u16())
	case peUdata4:
		v = uint64(r.u32())
	case peSleb128:
		v = uint64(r.sleb())
	case peSdata2:
		v = uint64(int64(int16(r.u16())))
	case peSdata4:
		v = uint64(int64(int32(r.u32())))
	default:
		return 0, errEncoding
	}
	if r.err != nil {
		return 0, r.err
	}
	switch enc & 0x70 {
	case peAbsptr:
	case pePcrel:
		v += fieldAddr
	case peDatarel:
		v += dataAddr
	default:
		return 0, errEncoding
	}
	if enc&peIndirect != 0 {
		return 0, errEncoding
	}
	return v, nil
}

// encSize is the fixed size of a pointer encoding, or 0 when variable.
func encSize(enc uint8) int {
	switch enc & 0x0f {
	case peAbsptr, peUdata8, peSdata8:
		return 8
	case peUdata2, peSdata2:
		return 2
	case peUdata4, peSdata4:
		return 4
	}
	return 0
}
