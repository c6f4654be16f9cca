package symbolize

import (
	"debug/dwarf"
	"sort"
)

// Limits for hostile DWARF: real binaries stay far below them (a -g build
// of a large C++ program has a few million inlined ranges).
const (
	maxInlineRanges = 16_000_000
	// MaxInlineDepth bounds the inlined functions reported for one address.
	MaxInlineDepth = 32
)

// inlineIndex answers "which inlined functions does this address belong
// to" from the DW_TAG_inlined_subroutine entries of .debug_info. Each
// function with code (DW_TAG_subprogram with ranges) is a scope; the
// inlined subroutines nested in it form a tree (an inlined call inside an
// inlined function is its child) and their address ranges nest the same
// way, so the inlined chain of an address is the deepest subroutine whose
// ranges hold it and that subroutine's ancestors.
//
// Names are resolved once the walk is done (finish), so the DWARF data
// itself (tens or hundreds of MiB for a large -g build) is not kept.
type inlineIndex struct {
	funcs  []funcRange   // sorted by lo
	scopes []scopeInfo   // by scope id
	subs   []inlineSub   // by sub id; a parent comes before its children
	ranges []inlineRange // sorted by (scope, lo)
	names  map[dwarf.Offset]string
}

type funcRange struct {
	lo, hi uint64
	scope  int32
}

type scopeInfo struct {
	entry         dwarf.Offset // the DW_TAG_subprogram, to name it
	first, nRange int32        // its slice of inlineIndex.ranges
}

type inlineSub struct {
	origin   dwarf.Offset // DW_AT_abstract_origin: the inlined function
	callFile int32        // index into Binary.lineFiles, -1 when unknown
	callLine int32
	parent   int32 // enclosing inlined subroutine, -1 when directly in the scope
	depth    int32 // 1 when directly in the scope
}

type inlineRange struct {
	lo, hi uint64
	scope  int32
	sub    int32
}

// inlineFrame is one inlined function holding an address: its name entry
// and where it was called from (in the next outer function).
type inlineFrame struct {
	origin   dwarf.Offset
	callFile int32
	callLine int32
}

// walkCU records the function scopes and inlined subroutines of one
// compilation unit, whose entry r has just returned. fileOf maps the
// unit's DW_AT_call_file values to Binary.lineFiles indexes.
func (ix *inlineIndex) walkCU(d *dwarf.Data, r *dwarf.Reader, fileOf func(int64) int32) {
	type open struct{ scope, sub int32 }
	stack := []open{{-1, -1}}
	for len(stack) > 0 {
		e, err := r.Next()
		if err != nil || e == nil {
			return
		}
		if e.Tag == 0 { // end of a sibling list
			stack = stack[:len(stack)-1]
			continue
		}
		cur := stack[len(stack)-1]
		next := cur
		switch e.Tag {
		case dwarf.TagSubprogram:
			rs := codeRanges(d, e)
			if len(rs) == 0 || len(ix.funcs)+len(rs) > maxInlineRanges {
				// A declaration or an abstract instance (the inlined
				// function's description): no code of its own. (Or a
				// hostile file past the limit.)
				if e.Children {
					r.SkipChildren()
				}
				continue
			}
			id := int32(len(ix.scopes))
			ix.scopes = append(ix.scopes, scopeInfo{entry: e.Offset})
			for _, rg := range rs {
				ix.funcs = append(ix.funcs, funcRange{lo: rg[0], hi: rg[1], scope: id})
			}
			next = open{id, -1}
		case dwarf.TagInlinedSubroutine:
			rs := codeRanges(d, e)
			origin, ok := e.Val(dwarf.AttrAbstractOrigin).(dwarf.Offset)
			if cur.scope < 0 || len(rs) == 0 || !ok || len(ix.ranges)+len(rs) > maxInlineRanges {
				if e.Children {
					r.SkipChildren()
				}
				continue
			}
			callFile, _ := e.Val(dwarf.AttrCallFile).(int64)
			callLine, _ := e.Val(dwarf.AttrCallLine).(int64)
			depth := int32(1)
			if cur.sub >= 0 {
				depth = ix.subs[cur.sub].depth + 1
			}
			id := int32(len(ix.subs))
			ix.subs = append(ix.subs, inlineSub{origin: origin, callFile: fileOf(callFile),
				callLine: int32(min(max(callLine, 0), 1<<31-1)), parent: cur.sub, depth: depth})
			for _, rg := range rs {
				ix.ranges = append(ix.ranges, inlineRange{lo: rg[0], hi: rg[1], scope: cur.scope, sub: id})
			}
			next = open{cur.scope, id}
		case dwarf.TagLexDwarfBlock, dwarf.TagNamespace, dwarf.TagModule,
			dwarf.TagTryDwarfBlock, dwarf.TagCatchDwarfBlock:
			// Scopes that hold code-bearing entries: walk into them.
		default:
			// Variables, parameters, types, call sites: nothing inlined
			// below them; skipping keeps the walk fast.
			if e.Children {
				r.SkipChildren()
			}
			continue
		}
		if e.Children {
			stack = append(stack, next)
		}
	}
}

// codeRanges returns an entry's address ranges without the empty ones and
// those of code the linker discarded (relocated to 0).
func codeRanges(d *dwarf.Data, e *dwarf.Entry) [][2]uint64 {
	rs, err := d.Ranges(e)
	if err != nil {
		return nil
	}
	out := rs[:0]
	for _, r := range rs {
		if r[0] != 0 && r[1] > r[0] {
			out = append(out, r)
		}
	}
	return out
}

// finish sorts the index for lookups and names every inlined function,
// and the functions for which hasSymbol says the ELF symbols have no name;
// called once after every unit.
func (ix *inlineIndex) finish(d *dwarf.Data, hasSymbol func(addr uint64) bool) {
	sort.Slice(ix.funcs, func(i, j int) bool { return ix.funcs[i].lo < ix.funcs[j].lo })
	sort.SliceStable(ix.ranges, func(i, j int) bool {
		a, b := &ix.ranges[i], &ix.ranges[j]
		if a.scope != b.scope {
			return a.scope < b.scope
		}
		return a.lo < b.lo
	})
	for i := 0; i < len(ix.ranges); {
		s := ix.ranges[i].scope
		j := i
		for j < len(ix.ranges) && ix.ranges[j].scope == s {
			j++
		}
		ix.scopes[s].first, ix.scopes[s].nRange = int32(i), int32(j-i)
		i = j
	}
	ix.names = map[dwarf.Offset]string{}
	r := d.Reader()
	for _, sub := range ix.subs {
		if _, ok := ix.names[sub.origin]; !ok {
			ix.names[sub.origin] = entryName(r, sub.origin)
		}
	}
	for _, f := range ix.funcs {
		if e := ix.scopes[f.scope].entry; !hasSymbol(f.lo) {
			if _, ok := ix.names[e]; !ok {
				ix.names[e] = entryName(r, e)
			}
		}
	}
}

// scopeAt returns the function scope whose code holds v.
func (ix *inlineIndex) scopeAt(v uint64) (int32, bool) {
	i := sort.Search(len(ix.funcs), func(i int) bool { return ix.funcs[i].lo > v }) - 1
	// Ranges of distinct functions do not overlap in linked code, but a
	// hostile or odd file may nest them: look back a little.
	for k := i; k >= 0 && k > i-4; k-- {
		if v >= ix.funcs[k].lo && v < ix.funcs[k].hi {
			return ix.funcs[k].scope, true
		}
	}
	return -1, false
}

// chainAt returns the inlined functions holding v, innermost first (empty
// when v is code of the function itself).
func (ix *inlineIndex) chainAt(v uint64) []inlineFrame {
	scope, ok := ix.scopeAt(v)
	if !ok {
		return nil
	}
	sc := ix.scopes[scope]
	rs := ix.ranges[sc.first : sc.first+sc.nRange]
	end := sort.Search(len(rs), func(i int) bool { return rs[i].lo > v })
	best := int32(-1)
	for _, r := range rs[:end] {
		if v < r.hi && (best < 0 || ix.subs[r.sub].depth > ix.subs[best].depth) {
			best = r.sub
		}
	}
	var out []inlineFrame
	for s := best; s >= 0 && len(out) < MaxInlineDepth; s = ix.subs[s].parent {
		sub := ix.subs[s]
		out = append(out, inlineFrame{origin: sub.origin, callFile: sub.callFile, callLine: sub.callLine})
	}
	return out
}

// scopeName names the function scope holding v from DWARF (for code
// without an ELF symbol).
func (ix *inlineIndex) scopeName(v uint64) string {
	scope, ok := ix.scopeAt(v)
	if !ok {
		return ""
	}
	return ix.name(ix.scopes[scope].entry)
}

// name returns the name finish resolved for an entry.
func (ix *inlineIndex) name(off dwarf.Offset) string { return ix.names[off] }

// entryName returns the function an entry describes: its linkage name
// demangled (qualified C++ and Rust names, like the ELF symbols), else its
// DW_AT_name, following DW_AT_abstract_origin and DW_AT_specification (a
// concrete or inlined instance points at the abstract one, which may point
// at a declaration inside a class).
func entryName(r *dwarf.Reader, off dwarf.Offset) (name string) {
	defer func() {
		if recover() != nil {
			name = ""
		}
	}()
	plain := ""
	for at, hop := off, 0; hop < 8; hop++ {
		r.Seek(at)
		e, err := r.Next()
		if err != nil || e == nil {
			break
		}
		for _, a := range []dwarf.Attr{dwarf.AttrLinkageName, dwarf.Attr(0x2007)} { // DW_AT_MIPS_linkage_name
			if ln, ok := e.Val(a).(string); ok && ln != "" {
				return Demangle(ln)
			}
		}
		if n, ok := e.Val(dwarf.AttrName).(string); ok && n != "" && plain == "" {
			plain = n
		}
		next, ok := e.Val(dwarf.AttrAbstractOrigin).(dwarf.Offset)
		if !ok {
			next, ok = e.Val(dwarf.AttrSpecification).(dwarf.Offset)
		}
		if !ok || next == at {
			break
		}
		at = next
	}
	return plain
}
