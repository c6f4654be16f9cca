//go:build linux

package recorder

import "math"

// Log2MantissaTable is the table behind the kernel's exponential draw of
// byte sampling (capture/probes/include/sample.h, its log2_mantissa):
// log2(1 + (j + 0.5) / 256) in 16.16 fixed point. Probe sets that sample
// by bytes (mem, growth) set it before loading their object.
func Log2MantissaTable() [256]uint32 {
	var t [256]uint32
	for j := range t {
		t[j] = uint32(math.Round(math.Log2(1+(float64(j)+0.5)/256) * 65536))
	}
	return t
}
