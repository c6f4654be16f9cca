package unwind

import "slices"

// The kernel's frame-pointer walk (bpf_get_stack) is not limited by the
// copied stack window, so it can take a walk that ran out of copied stack
// further (deep stacks of frame-pointer code, Go). But it follows rbp
// through every frame, including code built without frame pointers
// (distribution libcrypto, libpython), where rbp holds data: the "return
// addresses" it then yields point nowhere. Only the part of it that checks
// out is used.

// ContinueWithFramePointers extends a walk that stopped at the end of the
// copied stack (ReasonOutsideStack) with the kernel's frame-pointer walk fp
// (raw return addresses, leaf first). fp is used only where it follows the
// same stack: it starts at the same sampled PC and its frames up to the
// junction are the walk's last ones, and each frame taken from it must be
// a return address that checks out (executable, after a call).
// It returns the extended result and how many frames were added; a walk
// whose last added frame is the outermost one by its CFI is complete.
func ContinueWithFramePointers(mods Modules, res Result, fp []uint64) (Result, int) {
	n := len(res.PCs)
	if res.Reason != ReasonOutsideStack || n == 0 || len(fp) < 2 {
		return res, 0
	}
	// fp[1..at] must be the walk's last at frames: the same stack, with
	// the kernel's walk having skipped the frames a frameless leaf hides
	// (at < n-1). Recursion repeats return addresses, so the longest
	// match wins: an exact frame-pointer walk matches whole.
	at := -1
	if fp[0] == res.PCs[0] {
		for j := min(n-1, len(fp)-1); j >= 0 && at < 0; j-- {
			if slices.Equal(fp[1:j+1], res.PCs[n-j:]) {
				at = j
			}
		}
	}
	if at < 0 || n > 1 && at == 0 {
		return res, 0
	}
	code, _ := mods.(CodeMap)
	added := 0
	for _, ra := range fp[at+1:] {
		if ra == 0 || checkReturnAddress(code, ra) != ReasonEnd || len(res.PCs) >= defaultMaxDepth {
			break
		}
		res.PCs = append(res.PCs, ra)
		added++
	}
	if added > 0 && Outermost(mods, res.PCs[len(res.PCs)-1]) {
		res.Reason, res.StopPC = ReasonEnd, 0
	}
	return res, added
}

// Outermost reports whether ra, a return address, is a thread's first
// frame: one whose CFI marks the return address undefined (_start, clone3),
// or Go's goroutine root (runtime.goexit+1, see goexitReturn).
func Outermost(mods Modules, ra uint64) (outer bool) {
	defer func() {
		if recover() != nil {
			outer = false // hostile tables: never a panic
		}
	}()
	if ra == 0 {
		return false
	}
	if code, ok := mods.(CodeMap); ok && goexitReturn(code, ra) {
		return true
	}
	mod, ok := mods.ModuleFor(ra - 1)
	if !ok {
		return false
	}
	row, found, err := mod.Table.RowAt(ra - 1 - mod.Bias)
	return err == nil && found && row.Regs[RegRA].kind == ruleUndefined
}

// TrustedReturnAddresses returns how many leading frames of a kernel
// frame-pointer walk (raw addresses, leaf first) check out: the sampled PC,
// then every return address up to the first that is not executable code
// following a call (--unwind fp keeps those, and stops there).
func TrustedReturnAddresses(code CodeMap, fp []uint64) int {
	for i := 1; i < len(fp); i++ {
		if fp[i] == 0 || checkReturnAddress(code, fp[i]) != ReasonEnd {
			return i
		}
	}
	return len(fp)
}
