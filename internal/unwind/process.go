package unwind

import (
	"debug/elf"
	"io"
	"os"
	"sort"
	"sync"

	"github.com/bpfsnap/bpfsnap/internal/symbolize"
)

// Binary is the CFI of one ELF file and its loadable segments (to compute a
// mapping's load bias). Table is nil when the file has no usable CFI (Err).
type Binary struct {
	Table *Table
	Loads []elf.ProgHeader
	Err   error
}

// Cache loads each ELF file's CFI once, shared by every process mapping it.
// Failures are cached too, so a file without CFI is opened only once.
type Cache struct {
	mu    sync.Mutex
	files map[any]*Binary
}

// NewCache returns an empty cache.
func NewCache() *Cache { return &Cache{files: make(map[any]*Binary)} }

// Get returns the binary cached under key, loading it with open on first use.
func (c *Cache) Get(key any, open func() (io.ReaderAt, error)) *Binary {
	c.mu.Lock()
	defer c.mu.Unlock()
	if b, ok := c.files[key]; ok {
		return b
	}
	b := &Binary{}
	c.files[key] = b
	r, err := open()
	if err != nil {
		b.Err = err
		return b
	}
	ef, err := elf.NewFile(r)
	if err != nil {
		b.Err = err
		return b
	}
	for _, p := range ef.Progs {
		if p.Type == elf.PT_LOAD {
			b.Loads = append(b.Loads, p.ProgHeader)
		}
	}
	b.Table, b.Err = Load(ef)
	// Load copied the sections it needs: a file opened here can go.
	if cl, ok := r.(io.Closer); ok {
		cl.Close()
	}
	return b
}

// File returns the binary at path (cached by path).
func (c *Cache) File(path string) *Binary {
	return c.Get(path, func() (io.ReaderAt, error) { return os.Open(path) })
}

// Mapping returns the binary of a mapping by its path (for processes in the
// caller's mount namespace; capture/ passes files it holds open instead).
func (c *Cache) Mapping(m symbolize.Mapping) *Binary { return c.File(m.Path) }

// LoadBias returns the difference between run-time addresses in a mapping
// and the file's virtual addresses, from the PT_LOAD segment that holds the
// mapping's file offset (works for PIE, shared libraries and fixed executables).
func LoadBias(loads []elf.ProgHeader, mapStart, mapOffset uint64) (uint64, bool) {
	for _, p := range loads {
		if mapOffset >= p.Off && mapOffset < p.Off+p.Filesz {
			return mapStart - mapOffset + p.Off - p.Vaddr, true
		}
	}
	return 0, false
}

// Process is the set of executable mappings of one process, for Unwind.
type Process struct {
	maps []procMapping // sorted by start
	exec []execRange   // every executable mapping, with or without CFI, sorted by start
	code func(addr uint64, buf []byte) int
}

type execRange struct {
	start, end uint64
	file       bool
}

type procMapping struct {
	start, end uint64
	mod        Module
}

// NewProcess builds the modules of a process from its /proc/PID/maps lines;
// binary returns the CFI of a mapping's file (nil to skip it). Mappings
// without CFI are left out: their PCs stop walks with ReasonNoModule (or
// use the frame-pointer fallback).
func NewProcess(maps []symbolize.Mapping, binary func(symbolize.Mapping) *Binary) *Process {
	p := &Process{}
	for _, m := range maps {
		if m.Executable() {
			p.exec = append(p.exec, execRange{m.Start, m.End, m.FileBacked()})
		}
		if !m.Executable() || !m.FileBacked() {
			continue
		}
		b := binary(m)
		if b == nil || b.Table == nil {
			continue
		}
		bias, ok := LoadBias(b.Loads, m.Start, m.Offset)
		if !ok {
			continue
		}
		p.maps = append(p.maps, procMapping{start: m.Start, end: m.End, mod: Module{Table: b.Table, Bias: bias}})
	}
	sort.Slice(p.maps, func(i, j int) bool { return p.maps[i].start < p.maps[j].start })
	sort.Slice(p.exec, func(i, j int) bool { return p.exec[i].start < p.exec[j].start })
	return p
}

// SetCodeReader lets walks read the process's instructions (read fills buf
// with the bytes at addr and returns how many it could read): steps
// without CFI are then checked (a return address must follow a call) and
// code without frame pointers or CFI (JIT trampolines) can be unwound by
// reading its epilogue. Without it those checks are skipped.
func (p *Process) SetCodeReader(read func(addr uint64, buf []byte) int) { p.code = read }

// CodeAt implements CodeMap.
func (p *Process) CodeAt(pc uint64) (exec, file bool) {
	i := sort.Search(len(p.exec), func(i int) bool { return p.exec[i].end > pc })
	if i < len(p.exec) && pc >= p.exec[i].start {
		return true, p.exec[i].file
	}
	return false, false
}

// ReadCode implements CodeMap.
func (p *Process) ReadCode(addr uint64, buf []byte) int {
	if p.code == nil {
		return 0
	}
	if exec, _ := p.CodeAt(addr); !exec {
		return 0
	}
	return p.code(addr, buf)
}

// ModuleFor implements Modules.
func (p *Process) ModuleFor(pc uint64) (Module, bool) {
	i := sort.Search(len(p.maps), func(i int) bool { return p.maps[i].end > pc })
	if i < len(p.maps) && pc >= p.maps[i].start {
		return p.maps[i].mod, true
	}
	return Module{}, false
}
