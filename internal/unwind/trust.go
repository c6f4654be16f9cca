package unwind

// A frame-pointer walk done by the kernel (bpf_get_stack) follows rbp
// through every frame, including code built without frame pointers
// (distribution libcrypto, libpython), where rbp holds data: the "return
// addresses" it yields then point nowhere and show up as long runs of
// [unknown] frames. These helpers decide how much of such a walk to trust.

// Executable reports whether pc lies in an executable mapping of the
// process (file-backed or anonymous, so JIT code counts).
func (p *Process) Executable(pc uint64) bool {
	for _, r := range p.exec {
		if pc >= r[0] && pc < r[1] {
			return true
		}
	}
	return false
}

// TrustedFramePointer returns the prefix of the kernel's frame-pointer walk
// fp (leaf first) that can be believed, and whether it was cut. A frame is
// believed while its address lies in an executable mapping; the walk is
// rejected entirely (nil) when it disagrees with the CFI walk cfi on a frame
// both produced, since the CFI walk is exact where it has rows and a
// disagreement means rbp was not a frame pointer there.
func TrustedFramePointer(p *Process, cfi, fp []uint64) (trusted []uint64, cut bool) {
	for i := 1; i < len(cfi) && i < len(fp); i++ {
		if cfi[i] != fp[i] {
			return nil, true
		}
	}
	for i, pc := range fp {
		if i > 0 && !p.Executable(pc) {
			return fp[:i], true
		}
	}
	return fp, false
}
