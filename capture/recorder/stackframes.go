//go:build linux

package recorder

// StackOf trims a bpf_get_stack (or frame-pointer walk) buffer to the
// frames it filled: nbytes is what the kernel wrote, 8 per frame.
func StackOf(buf []uint64, nbytes int32) []uint64 {
	n := int(nbytes) / 8
	if n <= 0 {
		return nil
	}
	return buf[:min(n, len(buf))]
}

// ReturnAddresses copies a stack (leaf first) and moves every frame but the
// leaf back by one byte: those are return addresses, which point after the
// call and may already belong to the next function or line.
func ReturnAddresses(raw []uint64) []uint64 {
	if len(raw) == 0 {
		return nil
	}
	out := make([]uint64, len(raw))
	for i, pc := range raw {
		out[i] = pc
		if i > 0 && pc > 0 {
			out[i]--
		}
	}
	return out
}
