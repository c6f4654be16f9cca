package unwind

import (
	"debug/elf"
	"os"
	"sort"
	"sync"

	"github.com/bpfsnap/bpfsnap/internal/symbolize"
)

// Cache loads each ELF file's CFI once, shared by every process mapping it.
// Failures are cached too, so a file without CFI is opened only once.
type Cache struct {
	mu    sync.Mutex
	files map[string]*cachedFile
}

type cachedFile struct {
	table *Table
	loads []elf.ProgHeader
	err   error
}

// NewCache returns an empty cache.
func NewCache() *Cache { return &Cache{files: make(map[string]*cachedFile)} }

func (c *Cache) file(path string) *cachedFile {
	c.mu.Lock()
	defer c.mu.Unlock()
	if cf, ok := c.files[path]; ok {
		return cf
	}
	cf := &cachedFile{}
	c.files[path] = cf
	f, err := os.Open(path)
	if err != nil {
		cf.err = err
		return cf
	}
	defer f.Close()
	ef, err := elf.NewFile(f)
	if err != nil {
		cf.err = err
		return cf
	}
	for _, p := range ef.Progs {
		if p.Type == elf.PT_LOAD {
			cf.loads = append(cf.loads, p.ProgHeader)
		}
	}
	cf.table, cf.err = Load(ef)
	return cf
}

// Table returns the CFI of the file at path (nil and the error when it has none).
func (c *Cache) Table(path string) (*Table, error) {
	cf := c.file(path)
	return cf.table, cf.err
}

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
}

type procMapping struct {
	start, end uint64
	mod        Module
}

// NewProcess builds the modules of a process from its /proc/PID/maps lines.
// root is prepended to each path (e.g. "/proc/PID/root" so binaries inside
// containers resolve); mappings whose file has no CFI are left out and
// their PCs stop walks with ReasonNoModule.
func NewProcess(cache *Cache, root string, maps []symbolize.Mapping) *Process {
	p := &Process{}
	for _, m := range maps {
		if !m.Executable() || !m.FileBacked() {
			continue
		}
		cf := cache.file(root + m.Path)
		if cf.table == nil {
			continue
		}
		bias, ok := LoadBias(cf.loads, m.Start, m.Offset)
		if !ok {
			continue
		}
		p.maps = append(p.maps, procMapping{start: m.Start, end: m.End, mod: Module{Table: cf.table, Bias: bias}})
	}
	sort.Slice(p.maps, func(i, j int) bool { return p.maps[i].start < p.maps[j].start })
	return p
}

// ModuleFor implements Modules.
func (p *Process) ModuleFor(pc uint64) (Module, bool) {
	i := sort.Search(len(p.maps), func(i int) bool { return p.maps[i].end > pc })
	if i < len(p.maps) && pc >= p.maps[i].start {
		return p.maps[i].mod, true
	}
	return Module{}, false
}
