package symbolize

import (
	"bufio"
	"io"
	"strconv"
	"strings"
)

// Mapping is one line of /proc/PID/maps.
type Mapping struct {
	Start, End uint64
	Perms      string
	Offset     uint64
	Dev        string
	Inode      uint64
	Path       string
}

// Executable reports whether the mapping holds code.
func (m Mapping) Executable() bool { return strings.Contains(m.Perms, "x") }

// FileBacked reports whether the mapping comes from a file on disk (not
// anonymous memory, the stack, [vdso], ...).
func (m Mapping) FileBacked() bool {
	return m.Inode != 0 && strings.HasPrefix(m.Path, "/")
}

// FileOffset converts an address inside the mapping to an offset in the
// mapped file.
func (m Mapping) FileOffset(addr uint64) uint64 { return addr - m.Start + m.Offset }

// maxMapsLines bounds a maps file we are willing to parse.
const maxMapsLines = 1 << 20

// ParseMaps reads the /proc/PID/maps format.
func ParseMaps(r io.Reader) ([]Mapping, error) {
	var out []Mapping
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	for sc.Scan() && len(out) < maxMapsLines {
		if m, ok := parseMapsLine(sc.Text()); ok {
			out = append(out, m)
		}
	}
	return out, sc.Err()
}

func parseMapsLine(line string) (Mapping, bool) {
	// start-end perms offset dev inode   path (path may contain spaces)
	var m Mapping
	fields := strings.Fields(line)
	if len(fields) < 5 {
		return m, false
	}
	lo, hi, ok := strings.Cut(fields[0], "-")
	if !ok {
		return m, false
	}
	var err1, err2, err3, err4 error
	m.Start, err1 = strconv.ParseUint(lo, 16, 64)
	m.End, err2 = strconv.ParseUint(hi, 16, 64)
	m.Offset, err3 = strconv.ParseUint(fields[2], 16, 64)
	m.Inode, err4 = strconv.ParseUint(fields[4], 10, 64)
	if err1 != nil || err2 != nil || err3 != nil || err4 != nil || m.End < m.Start {
		return m, false
	}
	m.Perms, m.Dev = fields[1], fields[3]
	if len(fields) > 5 {
		// Keep the path exactly, spaces included: it is what follows the
		// fifth field. (Searching for the inode's text instead finds an
		// inode of "0" inside the address of [vdso] and [stack] lines.)
		m.Path = strings.TrimSpace(afterFields(line, 5))
	}
	return m, true
}

// afterFields returns line after its first n space-separated fields.
func afterFields(line string, n int) string {
	i := 0
	for ; n > 0; n-- {
		for i < len(line) && (line[i] == ' ' || line[i] == '\t') {
			i++
		}
		for i < len(line) && line[i] != ' ' && line[i] != '\t' {
			i++
		}
	}
	return line[i:]
}

// Find returns the mapping that contains addr.
func Find(maps []Mapping, addr uint64) (Mapping, bool) {
	// Maps are sorted by address in /proc; a binary search would do, but
	// processes have a few hundred mappings and this runs once per new
	// frame, not per sample.
	for _, m := range maps {
		if addr >= m.Start && addr < m.End {
			return m, true
		}
	}
	return Mapping{}, false
}
