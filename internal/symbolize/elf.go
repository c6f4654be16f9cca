package symbolize

import (
	"bytes"
	"debug/elf"
	"debug/gosym"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/ianlancetaylor/demangle"
)

// Limits for hostile binaries: real symbol tables and pclntabs are far
// smaller; anything larger is skipped rather than loaded.
const (
	maxSectionBytes = 512 << 20
	maxSymbols      = 20_000_000
)

// Location is what an address resolves to.
type Location struct {
	Function string
	File     string
	Line     int
	// Inlined marks a function inlined into the next (outer) location of
	// a ResolveFrames result.
	Inlined bool
}

// Binary is an opened ELF file ready to resolve file offsets.
type Binary struct {
	BuildID string
	loads   []elf.ProgHeader
	syms    []symbol
	gotab   *gosym.Table
	// DWARF line table (dwarfline.go), for binaries built with -g.
	lines     []lineRow
	lineFiles []string
	// Inlined subroutines from .debug_info (dwarfinline.go); nil without.
	inlines *inlineIndex
}

type symbol struct {
	addr, size uint64
	name       string
}

// OpenBinary parses an ELF from r (typically an *os.File kept open while the
// process that maps it may exit).
func OpenBinary(r io.ReaderAt) (b *Binary, err error) {
	defer func() {
		if p := recover(); p != nil {
			b, err = nil, fmt.Errorf("malformed ELF: %v", p)
		}
	}()
	f, err := elf.NewFile(r)
	if err != nil {
		return nil, err
	}
	b = &Binary{BuildID: buildID(f)}
	for _, p := range f.Progs {
		if p.Type == elf.PT_LOAD {
			b.loads = append(b.loads, p.ProgHeader)
		}
	}
	b.loadSymbols(f)
	b.loadGo(f)
	b.loadLines(f, b.gotab == nil)
	return b, nil
}

// ReadBuildID returns the GNU build id of an ELF without loading its symbols
// (cheap enough to call for every binary a process maps).
func ReadBuildID(r io.ReaderAt) (id string) {
	defer func() {
		if recover() != nil {
			id = ""
		}
	}()
	f, err := elf.NewFile(r)
	if err != nil {
		return ""
	}
	return buildID(f)
}

// OpenFile opens and parses the ELF at path.
func OpenFile(path string) (*Binary, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return OpenBinary(f)
}

func (b *Binary) loadSymbols(f *elf.File) {
	for _, load := range []func() ([]elf.Symbol, error){f.Symbols, f.DynamicSymbols} {
		syms, err := loadWithin(f, load)
		if err != nil {
			continue
		}
		for _, s := range syms {
			if elf.ST_TYPE(s.Info) != elf.STT_FUNC || s.Value == 0 {
				continue
			}
			b.syms = append(b.syms, symbol{addr: s.Value, size: s.Size, name: s.Name})
		}
		if len(b.syms) > 0 {
			break // .symtab is a superset of .dynsym when present
		}
	}
	sort.Slice(b.syms, func(i, j int) bool { return b.syms[i].addr < b.syms[j].addr })
}

// loadWithin refuses symbol tables whose declared size is hostile.
func loadWithin(f *elf.File, load func() ([]elf.Symbol, error)) ([]elf.Symbol, error) {
	for _, s := range f.Sections {
		if (s.Type == elf.SHT_SYMTAB || s.Type == elf.SHT_DYNSYM) && s.Size > maxSectionBytes {
			return nil, fmt.Errorf("symbol table of %d bytes", s.Size)
		}
	}
	syms, err := load()
	if len(syms) > maxSymbols {
		return nil, fmt.Errorf("%d symbols", len(syms))
	}
	return syms, err
}

// loadGo reads Go's pclntab, which even stripped Go binaries keep: it
// gives function names, files and lines without DWARF.
func (b *Binary) loadGo(f *elf.File) {
	pcln := f.Section(".gopclntab")
	text := f.Section(".text")
	if pcln == nil || text == nil || pcln.Size > maxSectionBytes {
		return
	}
	data, err := pcln.Data()
	if err != nil {
		return
	}
	tab, err := gosym.NewTable(nil, gosym.NewLineTable(data, text.Addr))
	if err != nil {
		return
	}
	b.gotab = tab
}

// Vaddr converts a file offset to the ELF virtual address it is loaded at.
func (b *Binary) Vaddr(off uint64) (uint64, bool) {
	for _, p := range b.loads {
		if off >= p.Off && off < p.Off+p.Filesz {
			return off - p.Off + p.Vaddr, true
		}
	}
	return 0, false
}

// Resolve returns the function at a file offset: the function the code
// was compiled into, with the source line of that function (for code of an
// inlined function, the line of the inlined call). ResolveFrames also
// gives the inlined functions.
func (b *Binary) Resolve(off uint64) (Location, bool) {
	v, ok := b.Vaddr(off)
	if !ok {
		return Location{}, false
	}
	return b.ResolveVaddr(v)
}

// ResolveVaddr is Resolve for an ELF virtual address.
func (b *Binary) ResolveVaddr(v uint64) (Location, bool) {
	fr := b.ResolveFramesVaddr(v)
	if len(fr) == 0 {
		return Location{}, false
	}
	return fr[len(fr)-1], true
}

// ResolveFrames returns the logical frames at a file offset, innermost
// first: the inlined functions the code belongs to (Inlined set, each with
// the source line in it: for the innermost the line of the address, for
// the others the line of the call inlined into them), then the function
// the code was compiled into. Without inlining (or without the debug
// information describing it) that is one frame; nil when nothing resolves.
func (b *Binary) ResolveFrames(off uint64) []Location {
	v, ok := b.Vaddr(off)
	if !ok {
		return nil
	}
	return b.ResolveFramesVaddr(v)
}

// ResolveFramesVaddr is ResolveFrames for an ELF virtual address.
func (b *Binary) ResolveFramesVaddr(v uint64) (out []Location) {
	defer func() {
		if recover() != nil {
			out = nil
		}
	}()
	fn, file, line := "", "", 0
	if b.gotab != nil {
		// The pclntab names the function the code was compiled into and
		// gives the line of the innermost inlined code, like DWARF does.
		if f, l, g := b.gotab.PCToLine(v); g != nil {
			fn, file, line = g.Name, f, l
		}
	}
	if fn == "" {
		if s, ok := b.symbolAt(v); ok {
			fn = Demangle(s.name)
		}
		if fn == "" && b.inlines != nil {
			fn = b.inlines.scopeName(v) // code with DWARF but no symbol
		}
		if fn == "" {
			return nil
		}
		file, line, _ = b.lineAt(v)
	}
	if b.inlines != nil {
		for _, in := range b.inlines.chainAt(v) {
			// This inlined function holds the current file:line; the
			// location of its call is the next outer frame's.
			name := b.inlines.name(in.origin)
			if name == "" {
				name = "??" // as addr2line says: the chain stays right
			}
			out = append(out, Location{Function: name, File: file, Line: line, Inlined: true})
			file, line = "", int(in.callLine)
			if in.callFile >= 0 && int(in.callFile) < len(b.lineFiles) {
				file = b.lineFiles[in.callFile]
			}
		}
	}
	return append(out, Location{Function: fn, File: file, Line: line})
}

// symbolAt returns the ELF function symbol holding v.
func (b *Binary) symbolAt(v uint64) (symbol, bool) {
	i := sort.Search(len(b.syms), func(i int) bool { return b.syms[i].addr > v }) - 1
	if i >= 0 && (b.syms[i].size == 0 || v < b.syms[i].addr+b.syms[i].size) {
		return b.syms[i], true
	}
	return symbol{}, false
}

// hasSymbol reports whether code at v is named without DWARF (ELF symbols
// or the Go pclntab).
func (b *Binary) hasSymbol(v uint64) bool {
	if b.gotab != nil && b.gotab.PCToFunc(v) != nil {
		return true
	}
	_, ok := b.symbolAt(v)
	return ok
}

// Demangle turns C++ and Rust symbol names into readable ones, without
// parameter lists (they make flame graphs unreadable); other names are
// returned as they are.
func Demangle(name string) string {
	if !strings.HasPrefix(name, "_Z") && !strings.HasPrefix(name, "_R") {
		return name
	}
	return demangle.Filter(name, demangle.NoParams, demangle.NoTemplateParams)
}

// buildID reads the GNU build id note.
func buildID(f *elf.File) string {
	for _, s := range f.Sections {
		if s.Type != elf.SHT_NOTE || s.Size > 1<<16 {
			continue
		}
		data, err := s.Data()
		if err != nil {
			continue
		}
		for len(data) >= 12 {
			namesz := binary.LittleEndian.Uint32(data[0:4])
			descsz := binary.LittleEndian.Uint32(data[4:8])
			typ := binary.LittleEndian.Uint32(data[8:12])
			nameEnd := 12 + align4(namesz)
			descEnd := nameEnd + align4(descsz)
			if uint64(descEnd) > uint64(len(data)) || namesz > 1<<10 || descsz > 1<<10 {
				break
			}
			name := data[12 : 12+namesz]
			if typ == 3 && bytes.Equal(bytes.TrimRight(name, "\x00"), []byte("GNU")) { // NT_GNU_BUILD_ID
				return hex.EncodeToString(data[nameEnd : nameEnd+descsz])
			}
			data = data[descEnd:]
		}
	}
	return ""
}

func align4(n uint32) uint32 { return (n + 3) &^ 3 }

// FindDebugFile looks for a debug file of buildID in dir, in the layouts
// distributions and debuginfod caches use.
func FindDebugFile(dir, buildID string) string {
	if dir == "" || len(buildID) < 3 {
		return ""
	}
	for _, p := range []string{
		filepath.Join(dir, ".build-id", buildID[:2], buildID[2:]+".debug"),
		filepath.Join(dir, buildID[:2], buildID[2:]+".debug"),
		filepath.Join(dir, buildID+".debug"),
		filepath.Join(dir, buildID, "debuginfo"),
		filepath.Join(dir, buildID),
	} {
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() {
			return p
		}
	}
	return ""
}
