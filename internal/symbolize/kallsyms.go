package symbolize

import (
	"bufio"
	"io"
	"sort"
	"strconv"
	"strings"
)

// Kallsyms resolves kernel addresses from /proc/kallsyms.
type Kallsyms struct {
	syms []ksym
}

type ksym struct {
	addr   uint64
	name   string
	module string
}

// ParseKallsyms reads /proc/kallsyms ("addr type name [module]"). Only text
// symbols are kept. Without privileges every address reads as 0, which
// leaves nothing to resolve with.
func ParseKallsyms(r io.Reader) (*Kallsyms, error) {
	k := &Kallsyms{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 3 {
			continue
		}
		if t := f[1]; t != "t" && t != "T" && t != "w" && t != "W" {
			continue
		}
		addr, err := strconv.ParseUint(f[0], 16, 64)
		if err != nil || addr == 0 {
			continue
		}
		s := ksym{addr: addr, name: f[2]}
		if len(f) > 3 {
			s.module = strings.Trim(f[3], "[]")
		}
		k.syms = append(k.syms, s)
	}
	sort.Slice(k.syms, func(i, j int) bool { return k.syms[i].addr < k.syms[j].addr })
	return k, sc.Err()
}

// Resolve returns the function containing addr and its module ("" for the
// core kernel).
func (k *Kallsyms) Resolve(addr uint64) (name, module string, ok bool) {
	i := sort.Search(len(k.syms), func(i int) bool { return k.syms[i].addr > addr }) - 1
	if i < 0 {
		return "", "", false
	}
	return k.syms[i].name, k.syms[i].module, true
}

// Len is the number of text symbols loaded.
func (k *Kallsyms) Len() int { return len(k.syms) }
