package symbolize

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sort"
	"strconv"
)

// JITSymbol names a range of code a runtime generated at run time (JIT
// compiled methods, interpreter trampolines), as the runtime wrote it to
// its perf map or jitdump file.
type JITSymbol struct {
	Start, Size uint64
	Name        string
}

// Contains reports whether addr lies in the symbol's code.
func (s JITSymbol) Contains(addr uint64) bool {
	return addr >= s.Start && addr-s.Start < s.Size
}

// Limits for hostile files: the runtimes write names of at most a few KiB
// (a Java signature with long generic types), and perf maps of services
// that ran for days with --perf-basic-prof reach gigabytes, of which a
// capture needs only the lines naming its frames (the caller's callback
// keeps those).
const (
	maxPerfMapLine  = 64 << 10
	maxJITDumpName  = 64 << 10
	maxJITDumpBytes = 4 << 30
)

// ParsePerfMap reads perf's JIT map format (/tmp/perf-PID.map, written by
// node --perf-basic-prof, a JVM's Compiler.perfmap, python -X perf,
// DOTNET_PerfMapEnabled): one "START SIZE NAME" line per symbol, START and
// SIZE in hex with or without 0x, NAME the rest of the line (it may hold
// spaces). Each symbol is handed to keep in file order, later lines
// describing newer code; malformed and overlong lines are skipped and
// counted, and so is a last line without its newline (the runtime was
// writing it). It stops after limit bytes.
func ParsePerfMap(r io.Reader, limit int64, keep func(JITSymbol)) (skipped int, err error) {
	if limit <= 0 {
		limit = maxJITDumpBytes
	}
	br := bufio.NewReaderSize(io.LimitReader(r, limit), 64<<10)
	var line []byte
	tooLong := false
	for {
		chunk, err := br.ReadSlice('\n')
		if len(line)+len(chunk) > maxPerfMapLine+1 {
			tooLong, line = true, line[:0]
		} else if !tooLong {
			line = append(line, chunk...)
		}
		switch {
		case err == bufio.ErrBufferFull:
			continue // the line goes on
		case err == io.EOF:
			if len(line) > 0 || tooLong {
				skipped++ // no newline: cut by the limit, or being written
			}
			return skipped, nil
		case err != nil:
			return skipped, err
		}
		if tooLong {
			skipped++
		} else if s, ok := parsePerfMapLine(line[:len(line)-1]); ok {
			keep(s)
		} else {
			skipped++
		}
		line, tooLong = line[:0], false
	}
}

func parsePerfMapLine(line []byte) (JITSymbol, bool) {
	start, rest, ok := hexField(line)
	if !ok {
		return JITSymbol{}, false
	}
	size, rest, ok := hexField(rest)
	if !ok || size == 0 || start+size < start {
		return JITSymbol{}, false
	}
	name := string(bytes.TrimRight(bytes.TrimLeft(rest, " \t"), " \t\r"))
	if name == "" {
		return JITSymbol{}, false
	}
	return JITSymbol{Start: start, Size: size, Name: name}, true
}

// hexField parses a hex number (optional 0x) at the start of b, after
// leading blanks, and returns it with the rest of b.
func hexField(b []byte) (uint64, []byte, bool) {
	b = bytes.TrimLeft(b, " \t")
	end := bytes.IndexAny(b, " \t")
	if end < 0 {
		end = len(b)
	}
	f := b[:end]
	if len(f) > 2 && f[0] == '0' && (f[1] == 'x' || f[1] == 'X') {
		f = f[2:]
	}
	v, err := strconv.ParseUint(string(f), 16, 64)
	if err != nil {
		return 0, nil, false
	}
	return v, b[end:], true
}

// jitdump record ids (perf's tools/perf/util/jitdump.h).
const (
	jitCodeLoad  = 0
	jitCodeMove  = 1
	jitCodeClose = 3
	jitdumpMagic = 0x4A695444 // "JiTD" as a native-endian u32
)

// ErrNotJITDump is returned for a file that does not start with the
// jitdump magic.
var ErrNotJITDump = errors.New("not a jitdump file")

// ParseJITDump reads perf's jitdump format (jit-PID.dump, written by
// python -X perf_jit, node --perf-prof, the JVM's perf agents): each
// JIT_CODE_LOAD record gives a symbol, and a JIT_CODE_MOVE record moves
// the code of an earlier load to a new address (handed to keep as a new
// symbol with the load's name). Code bytes, debug and unwinding records
// are skipped. Symbols are handed to keep in file order; it stops at a
// truncated record (the runtime may still be writing) or after limit
// bytes.
func ParseJITDump(r io.Reader, limit int64, keep func(JITSymbol)) error {
	if limit <= 0 || limit > maxJITDumpBytes {
		limit = maxJITDumpBytes
	}
	br := bufio.NewReaderSize(io.LimitReader(r, limit), 64<<10)
	var hdr [40]byte
	if _, err := io.ReadFull(br, hdr[:]); err != nil {
		return ErrNotJITDump
	}
	var order binary.ByteOrder = binary.LittleEndian
	switch {
	case binary.LittleEndian.Uint32(hdr[0:]) == jitdumpMagic:
	case binary.BigEndian.Uint32(hdr[0:]) == jitdumpMagic:
		order = binary.BigEndian
	default:
		return ErrNotJITDump
	}
	hdrSize := order.Uint32(hdr[8:])
	if hdrSize < 40 || hdrSize > 1<<20 {
		return fmt.Errorf("jitdump header of %d bytes", hdrSize)
	}
	if _, err := br.Discard(int(hdrSize) - 40); err != nil {
		return nil
	}
	names := map[uint64]string{} // code index -> name, for moves
	var rec [16]byte
	for {
		if _, err := io.ReadFull(br, rec[:]); err != nil {
			return nil // end of file, or a record still being written
		}
		id, total := order.Uint32(rec[0:]), order.Uint32(rec[4:])
		if total < 16 {
			return fmt.Errorf("jitdump record of %d bytes", total)
		}
		body := int(total) - 16
		switch id {
		case jitCodeLoad:
			// pid, tid u32; vma, code_addr, code_size, code_index u64;
			// name NUL-terminated; code bytes.
			var fixed [40]byte
			if body < len(fixed) {
				return fmt.Errorf("jitdump load record of %d bytes", total)
			}
			if _, err := io.ReadFull(br, fixed[:]); err != nil {
				return nil
			}
			addr, size, index := order.Uint64(fixed[16:]), order.Uint64(fixed[24:]), order.Uint64(fixed[32:])
			rest := body - len(fixed)
			name, n, err := readCString(br, min(rest, maxJITDumpName))
			if err != nil {
				return nil
			}
			if _, err := br.Discard(rest - n); err != nil {
				return nil
			}
			if size > 0 && addr+size >= addr && name != "" {
				names[index] = name
				keep(JITSymbol{Start: addr, Size: size, Name: name})
			}
		case jitCodeMove:
			// pid, tid u32; vma, old_code_addr, new_code_addr,
			// code_size, code_index u64.
			var fixed [48]byte
			if body < len(fixed) {
				return fmt.Errorf("jitdump move record of %d bytes", total)
			}
			if _, err := io.ReadFull(br, fixed[:]); err != nil {
				return nil
			}
			addr, size, index := order.Uint64(fixed[24:]), order.Uint64(fixed[32:]), order.Uint64(fixed[40:])
			if name := names[index]; name != "" && size > 0 && addr+size >= addr {
				keep(JITSymbol{Start: addr, Size: size, Name: name})
			}
			if _, err := br.Discard(body - len(fixed)); err != nil {
				return nil
			}
		case jitCodeClose:
			return nil
		default:
			if _, err := br.Discard(body); err != nil {
				return nil
			}
		}
	}
}

// readCString reads a NUL-terminated string of at most limit bytes (the
// NUL included) and returns it with the bytes consumed.
func readCString(br *bufio.Reader, limit int) (string, int, error) {
	var b []byte
	for n := 0; n < limit; n++ {
		c, err := br.ReadByte()
		if err != nil {
			return "", n, err
		}
		if c == 0 {
			return string(b), n + 1, nil
		}
		b = append(b, c)
	}
	return string(b), limit, nil
}

// JITNamer gives each address of a set the last symbol, in the order they
// are added (file order: newer code last), that contains it. A runtime
// reuses the addresses of code it freed, so a later line for the same
// address describes what ran there most recently. Only symbols naming one
// of the addresses are kept, so a perf map of gigabytes costs the memory
// of the frames it names.
type JITNamer struct {
	addrs  []uint64
	chosen []int32 // index in syms, -1 for none
	syms   []JITSymbol
	budget int // address assignments left (hostile maps of huge symbols)
}

// maxJITAssignments bounds the work of a map whose symbols each cover
// many of the addresses (a hostile or corrupt map).
const maxJITAssignments = 64 << 20

// NewJITNamer makes a namer for the given addresses (any order, repeats
// allowed).
func NewJITNamer(addrs []uint64) *JITNamer {
	a := append([]uint64(nil), addrs...)
	sort.Slice(a, func(i, j int) bool { return a[i] < a[j] })
	out := a[:0]
	for i, v := range a {
		if i == 0 || v != a[i-1] {
			out = append(out, v)
		}
	}
	n := &JITNamer{addrs: out, chosen: make([]int32, len(out)), budget: maxJITAssignments}
	for i := range n.chosen {
		n.chosen[i] = -1
	}
	return n
}

// Add offers the next symbol of a map.
func (n *JITNamer) Add(s JITSymbol) {
	i := sort.Search(len(n.addrs), func(i int) bool { return n.addrs[i] >= s.Start })
	if i == len(n.addrs) || !s.Contains(n.addrs[i]) {
		return
	}
	idx := int32(len(n.syms))
	n.syms = append(n.syms, s)
	for ; i < len(n.addrs) && s.Contains(n.addrs[i]) && n.budget > 0; i++ {
		n.chosen[i] = idx
		n.budget--
	}
}

// Lookup returns the symbol naming addr, if any.
func (n *JITNamer) Lookup(addr uint64) (JITSymbol, bool) {
	i := sort.Search(len(n.addrs), func(i int) bool { return n.addrs[i] >= addr })
	if i == len(n.addrs) || n.addrs[i] != addr || n.chosen[i] < 0 {
		return JITSymbol{}, false
	}
	return n.syms[n.chosen[i]], true
}

// Symbols returns the symbols that name at least one address, in the
// order they were added.
func (n *JITNamer) Symbols() []JITSymbol {
	used := make([]bool, len(n.syms))
	for _, c := range n.chosen {
		if c >= 0 {
			used[c] = true
		}
	}
	var out []JITSymbol
	for i, s := range n.syms {
		if used[i] {
			out = append(out, s)
		}
	}
	return out
}
