//go:build linux

package recorder

import (
	"os"
	"path/filepath"
	"sort"
	"sync"

	"github.com/bpfsnap/bpfsnap/internal/symbolize"
)

// The unwinder checks steps that no CFI vouches for by reading the code
// they land in (a return address must follow a call) and unwinds JIT stubs
// by reading their epilogue (internal/unwind's CodeMap). Code of a file
// comes from the file the recorder already holds open; anonymous code (JIT,
// CPython's -X perf trampolines) from /proc/PID/mem while the process runs.

const (
	codePageSize = 4096
	// maxCodePages bounds the page cache (2 MiB); it is emptied when full.
	// A walk reads a few pages at most, and most frames have CFI and read
	// none.
	maxCodePages = 512
)

type codePageKey struct {
	bin  *binaryRef // file code: the file and the page's file offset
	pid  uint32     // anonymous code: the process, its maps version and the page's address
	gen  int64
	page uint64
}

// codePages caches pages of code read for the unwinder.
type codePages struct {
	mu    sync.Mutex
	pages map[codePageKey][]byte
}

func (c *codePages) get(k codePageKey, read func([]byte) int) []byte {
	c.mu.Lock()
	p, ok := c.pages[k]
	c.mu.Unlock()
	if ok {
		return p
	}
	buf := make([]byte, codePageSize)
	buf = buf[:max(read(buf), 0)]
	c.mu.Lock()
	if c.pages == nil || len(c.pages) >= maxCodePages {
		c.pages = map[codePageKey][]byte{}
	}
	c.pages[k] = buf
	c.mu.Unlock()
	return buf
}

// codeMapping is one executable mapping of a snapshot with the file the
// recorder holds for it (nil for anonymous memory).
type codeMapping struct {
	m   symbolize.Mapping
	bin *binaryRef
}

// codeReader returns a reader of pid's instructions over the executable
// mappings of snapshot p. The caller holds r.mu; the reader does not need
// it (it keeps its own copy of what it reads from p).
func (r *StackRecorder) codeReader(pages *codePages, pid uint32, p *procState) func(addr uint64, buf []byte) int {
	maps := make([]codeMapping, 0, len(p.maps))
	for _, m := range p.maps {
		maps = append(maps, codeMapping{m: m, bin: p.bins[m.Start]})
	}
	sort.Slice(maps, func(i, j int) bool { return maps[i].m.Start < maps[j].m.Start })
	memPath := filepath.Join(r.s.procRoot, Itoa(pid), "mem")
	version := p.refreshed.UnixNano()
	return func(addr uint64, buf []byte) int {
		i := sort.Search(len(maps), func(i int) bool { return maps[i].m.End > addr })
		if i == len(maps) || addr < maps[i].m.Start {
			return 0
		}
		cm := maps[i]
		n := 0
		for n < len(buf) && addr+uint64(n) < cm.m.End {
			a := addr + uint64(n)
			var k codePageKey
			var read func([]byte) int
			if cm.bin != nil && cm.bin.file != nil {
				off := cm.m.FileOffset(a)
				k = codePageKey{bin: cm.bin, page: off &^ (codePageSize - 1)}
				f := cm.bin.file
				read = func(b []byte) int {
					got, _ := f.ReadAt(b, int64(k.page))
					return got
				}
			} else if !cm.m.FileBacked() {
				k = codePageKey{pid: pid, gen: version, page: a &^ (codePageSize - 1)}
				read = func(b []byte) int {
					f, err := os.Open(memPath)
					if err != nil {
						return 0
					}
					defer f.Close()
					got, _ := f.ReadAt(b, int64(k.page))
					return got
				}
			} else {
				break // a file the recorder could not open
			}
			page := pages.get(k, read)
			var at uint64
			if k.bin != nil {
				at = cm.m.FileOffset(a) - k.page
			} else {
				at = a - k.page
			}
			if at >= uint64(len(page)) {
				break
			}
			n += copy(buf[n:], page[at:])
		}
		return n
	}
}
