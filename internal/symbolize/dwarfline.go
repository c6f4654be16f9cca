package symbolize

import (
	"debug/dwarf"
	"debug/elf"
	"sort"
	"strings"
)

// maxLineRows bounds the DWARF line table kept per binary (hostile input).
const maxLineRows = 20_000_000

// lineRow is one row of a DWARF line table: code from addr up to the next
// row's address comes from file:line.
type lineRow struct {
	addr uint64
	file int32 // index into Binary.lineFiles
	line int32
	end  bool // end_sequence: no code from here on
}

// loadLines reads the DWARF line tables (.debug_line) of binaries built with
// -g, so C/C++ frames carry file:line like Go frames do, and the inlined
// subroutines of .debug_info (dwarfinline.go), so inlined functions become
// frames of their own. Binaries without DWARF (most distribution binaries;
// their debug files are found later by build id) are skipped.
//
// Go binaries take their lines from the pclntab (withLines false): only
// the inlined subroutines are read, which the Go linker describes in
// DWARF too (binaries not built with -ldflags=-w).
func (b *Binary) loadLines(f *elf.File, withLines bool) {
	defer func() { recover() }() // a malformed table costs the lines, not the symbols
	for _, name := range []string{".debug_info", ".debug_line"} {
		if f.Section(name) == nil {
			return
		}
	}
	// debug/elf decompresses every DWARF section in full: bound their
	// total (Size is the uncompressed size of a compressed section), so a
	// compressed bomb costs the lines, not the recorder's memory.
	var total uint64
	for _, s := range f.Sections {
		if strings.HasPrefix(s.Name, ".debug_") || strings.HasPrefix(s.Name, ".zdebug_") {
			total += s.Size
		}
	}
	if total > maxSectionBytes {
		return
	}
	d, err := f.DWARF()
	if err != nil {
		return
	}
	files := map[string]int32{}
	intern := func(name string) int32 {
		idx, ok := files[name]
		if !ok {
			idx = int32(len(b.lineFiles))
			files[name] = idx
			b.lineFiles = append(b.lineFiles, name)
		}
		return idx
	}
	ix := &inlineIndex{}
	var rows []lineRow
	r := d.Reader()
	for {
		cu, err := r.Next()
		if err != nil || cu == nil {
			break
		}
		if cu.Tag != dwarf.TagCompileUnit {
			r.SkipChildren()
			continue
		}
		lr, err := d.LineReader(cu)
		if err != nil {
			lr = nil
		}
		var e dwarf.LineEntry
		for lr != nil && withLines && lr.Next(&e) == nil {
			if len(rows) >= maxLineRows {
				break
			}
			name := ""
			if e.File != nil {
				name = e.File.Name
			}
			rows = append(rows, lineRow{addr: e.Address, file: intern(name), line: int32(e.Line), end: e.EndSequence})
		}
		// DW_AT_call_file indexes the unit's file table: the header's,
		// plus (DWARF < 5) files the line program defines as it goes,
		// which compilers no longer emit.
		var unitFiles []*dwarf.LineFile
		if lr != nil {
			unitFiles = lr.Files()
		}
		fileOf := func(i int64) int32 {
			if i < 0 || i >= int64(len(unitFiles)) || unitFiles[i] == nil {
				return -1
			}
			return intern(unitFiles[i].Name)
		}
		if cu.Children {
			ix.walkCU(d, r, fileOf)
		}
	}
	sort.SliceStable(rows, func(i, j int) bool { return rows[i].addr < rows[j].addr })
	b.lines = rows
	if len(ix.funcs) > 0 {
		ix.finish(d, b.hasSymbol)
		b.inlines = ix
	}
}

// lineAt returns the source position of an ELF virtual address.
func (b *Binary) lineAt(v uint64) (string, int, bool) {
	i := sort.Search(len(b.lines), func(i int) bool { return b.lines[i].addr > v }) - 1
	if i < 0 || b.lines[i].end || b.lines[i].line <= 0 {
		return "", 0, false
	}
	return b.lineFiles[b.lines[i].file], int(b.lines[i].line), true
}
