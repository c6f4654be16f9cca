package unwind

// The kernel's frame-pointer walk (bpf_get_stack) is not limited by the
// copied stack window, so it can take a walk that ran out of copied stack
// further (deep stacks of frame-pointer code, Go). But it follows rbp
// through every frame, including code built without frame pointers
// (distribution libcrypto, libpython), where rbp holds data: the "return
// addresses" it then yields point nowhere. Only the part of it that checks
// out is used.

// ContinueWithFramePointers extends a walk that stopped at the end of the
// copied stack (ReasonOutsideStack) with the kernel's frame-pointer walk fp
// (raw return addresses, leaf first). fp is used only where it provably
// follows the same stack: its frames must match the walk's last two (its
// last one alone when the walk has one frame), and each frame taken from
// it must be a return address that checks out (executable, after a call).
// It returns the extended result and how many frames were added; a walk
// whose last added frame is the outermost one by its CFI is complete.
func ContinueWithFramePointers(mods Modules, res Result, fp []uint64) (Result, int) {
	n := len(res.PCs)
	if res.Reason != ReasonOutsideStack || n == 0 || len(fp) <= n {
		return res, 0
	}
	at := -1
	for j := range fp {
		if fp[j] != res.PCs[n-1] {
			continue
		}
		if n == 1 && j == 0 || n > 1 && j > 0 && fp[j-1] == res.PCs[n-2] {
			at = j
			break
		}
	}
	if at < 0 {
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

// Outermost reports whether ra, a return address, lies in a frame whose CFI
// marks the return address undefined: a thread's first frame (_start,
// clone3, runtime.goexit).
func Outermost(mods Modules, ra uint64) (outer bool) {
	defer func() {
		if recover() != nil {
			outer = false // hostile tables: never a panic
		}
	}()
	if ra == 0 {
		return false
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
