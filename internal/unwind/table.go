package unwind

import (
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"sync"
)

// Limits for hostile ELF files.
const (
	maxSectionBytes = 128 << 20
	maxFDEs         = 4 << 20
)

// ErrNoCFI means the ELF file carries neither .eh_frame nor .debug_frame.
var ErrNoCFI = errors.New("unwind: no call frame information")

// Table is the call frame information of one ELF file, indexed by PC (as a
// virtual address of the file, before any load bias). It is safe for
// concurrent use.
type Table struct {
	eh    *section
	debug *section
	// hdr is the .eh_frame_hdr search table (initial_loc, fde) pairs encoded
	// datarel sdata4, used when present instead of indexing every FDE.
	hdr     []byte
	hdrAddr uint64
	// index holds FDEs found by a full scan (sections without a usable hdr),
	// sorted by start.
	index []indexEntry

	mu   sync.Mutex
	cies map[cieKey]*cie
}

type indexEntry struct {
	start, end uint64
	off        uint64
	debug      bool
}

type cieKey struct {
	off   uint64
	debug bool
}

// LoadFile reads the CFI of the ELF file at path.
func LoadFile(path string) (*Table, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	ef, err := elf.NewFile(f)
	if err != nil {
		return nil, err
	}
	return Load(ef)
}

// Load reads the CFI of an ELF file. The file is untrusted: sizes are bounded
// and a parser panic becomes an error.
func Load(f *elf.File) (t *Table, err error) {
	defer func() {
		if r := recover(); r != nil {
			t, err = nil, fmt.Errorf("unwind: malformed ELF: %v", r)
		}
	}()
	if f.Machine != elf.EM_X86_64 || f.Class != elf.ELFCLASS64 {
		return nil, fmt.Errorf("unwind: %v/%v not supported (x86-64 only)", f.Machine, f.Class)
	}
	t = &Table{cies: make(map[cieKey]*cie)}
	if s := f.Section(".eh_frame"); s != nil && s.Type != elf.SHT_NOBITS {
		data, err := sectionData(s)
		if err != nil {
			return nil, err
		}
		t.eh = &section{data: data, addr: s.Addr}
	}
	if s := f.Section(".debug_frame"); s != nil && s.Type != elf.SHT_NOBITS {
		data, err := sectionData(s)
		if err != nil {
			return nil, err
		}
		t.debug = &section{data: data, debug: true}
	}
	if t.eh == nil && t.debug == nil {
		return nil, ErrNoCFI
	}
	if t.eh != nil {
		if s := f.Section(".eh_frame_hdr"); s != nil && s.Type != elf.SHT_NOBITS {
			if data, err := sectionData(s); err == nil {
				t.useHdr(data, s.Addr)
			}
		}
		if t.hdr == nil {
			if err := t.scan(t.eh); err != nil {
				return nil, err
			}
		}
	}
	if t.debug != nil {
		if err := t.scan(t.debug); err != nil && t.eh == nil {
			return nil, err
		}
	}
	return t, nil
}

func sectionData(s *elf.Section) ([]byte, error) {
	if s.Size > maxSectionBytes {
		return nil, fmt.Errorf("unwind: section %s too large (%d bytes)", s.Name, s.Size)
	}
	data, err := io.ReadAll(io.LimitReader(s.Open(), maxSectionBytes+1))
	if err != nil {
		return nil, err
	}
	if len(data) > maxSectionBytes {
		return nil, fmt.Errorf("unwind: section %s too large", s.Name)
	}
	return data, nil
}

// useHdr adopts the .eh_frame_hdr binary search table when it has the
// encoding every linker emits (datarel|sdata4) and points into .eh_frame.
func (t *Table) useHdr(data []byte, addr uint64) {
	r := reader{b: data}
	version, ptrEnc, countEnc, tableEnc := r.u8(), r.u8(), r.u8(), r.u8()
	if r.err != nil || version != 1 || tableEnc != peDatarel|peSdata4 {
		return
	}
	ehPtr, err := r.pointer(ptrEnc, addr, addr)
	if err != nil || ehPtr != t.eh.addr {
		return
	}
	count, err := r.pointer(countEnc, addr, addr)
	if err != nil || count > maxFDEs || count*8 > uint64(r.left()) {
		return
	}
	t.hdr = data[r.off : r.off+int(count)*8]
	t.hdrAddr = addr
}

// scan indexes every FDE of a section.
func (t *Table) scan(s *section) error {
	for off := uint64(0); off < uint64(len(s.data)); {
		body, _, next, err := s.entryAt(off)
		if err != nil {
			return err
		}
		if body == nil { // zero terminator of .eh_frame
			if s.debug {
				off = next
				continue
			}
			break
		}
		f, _, err := s.parseFDE(off, func(c uint64) (*cie, error) { return t.cie(s, c) })
		if err == nil && f.end > f.start {
			if len(t.index) >= maxFDEs {
				return fmt.Errorf("unwind: more than %d FDEs", maxFDEs)
			}
			t.index = append(t.index, indexEntry{start: f.start, end: f.end, off: off, debug: s.debug})
		}
		// Bad entries are skipped: one broken FDE must not hide the rest.
		off = next
	}
	sort.Slice(t.index, func(i, j int) bool { return t.index[i].start < t.index[j].start })
	return nil
}

func (t *Table) cie(s *section, off uint64) (*cie, error) {
	key := cieKey{off, s.debug}
	t.mu.Lock()
	c, ok := t.cies[key]
	t.mu.Unlock()
	if ok {
		return c, nil
	}
	c, err := s.parseCIE(off)
	if err != nil {
		return nil, err
	}
	t.mu.Lock()
	t.cies[key] = c
	t.mu.Unlock()
	return c, nil
}

// FDEs returns how many frame descriptions the table indexes.
func (t *Table) FDEs() int { return len(t.hdr)/8 + len(t.index) }

// find returns the FDE covering pc.
func (t *Table) find(pc uint64) (*fde, error) {
	if t.hdr != nil {
		if f := t.findHdr(pc); f != nil {
			return f, nil
		}
	}
	i := sort.Search(len(t.index), func(i int) bool { return t.index[i].start > pc }) - 1
	// Overlapping ranges are rare but legal: look back a little.
	for j := i; j >= 0 && j > i-4; j-- {
		e := t.index[j]
		if pc >= e.start && pc < e.end {
			s := t.eh
			if e.debug {
				s = t.debug
			}
			f, _, err := s.parseFDE(e.off, func(c uint64) (*cie, error) { return t.cie(s, c) })
			return f, err
		}
	}
	return nil, nil
}

func (t *Table) findHdr(pc uint64) *fde {
	n := len(t.hdr) / 8
	at := func(i int) (uint64, uint64) {
		loc := t.hdrAddr + uint64(int64(int32(binary.LittleEndian.Uint32(t.hdr[i*8:]))))
		ptr := t.hdrAddr + uint64(int64(int32(binary.LittleEndian.Uint32(t.hdr[i*8+4:]))))
		return loc, ptr
	}
	i := sort.Search(n, func(i int) bool { loc, _ := at(i); return loc > pc }) - 1
	if i < 0 {
		return nil
	}
	_, ptr := at(i)
	if ptr < t.eh.addr {
		return nil
	}
	f, _, err := t.eh.parseFDE(ptr-t.eh.addr, func(c uint64) (*cie, error) { return t.cie(t.eh, c) })
	if err != nil || pc < f.start || pc >= f.end {
		return nil
	}
	return f
}

// RowAt returns the CFI row in effect at pc (a virtual address of the file).
func (t *Table) RowAt(pc uint64) (row Row, ok bool, err error) {
	defer func() {
		if r := recover(); r != nil {
			ok, err = false, fmt.Errorf("unwind: malformed CFI: %v", r)
		}
	}()
	f, err := t.find(pc)
	if err != nil || f == nil {
		return row, false, err
	}
	row, err = rowAt(f, pc)
	return row, err == nil, err
}
