// Poisson byte sampling, decided in the kernel so that an unsampled event
// costs no ring record and no stack walk. Shared by the probe sets that
// weigh events by bytes (mem: allocations; growth: pages made resident).
//
// Each CPU counts down an exponentially distributed number of bytes (mean
// sample_bytes); the event that crosses zero is sampled and the count is
// drawn again. By the exponential's memorylessness an event of s bytes is
// sampled with probability 1 - exp(-s/N), independently of the others,
// and user space gives its row the weight 1/that
// (formats.MemSampleWeight).
#pragma once

#include "common.h"

// Set by user space before load.
// sample_bytes: mean bytes between samples; 0 records every event.
const volatile __u64 sample_bytes = 0;
// log2_mantissa[j] = log2(1 + (j + 0.5) / 256) in 16.16 fixed point, filled
// by user space (recorder.Log2MantissaTable): the table behind the
// exponential draw below.
const volatile __u32 log2_mantissa[256];

// Bytes left until the next sample, per CPU.
struct sample_state {
	__s64 left;
	__u64 init;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct sample_state);
} sample_state SEC(".maps");

// draw_interval returns an exponentially distributed byte count with mean
// sample_bytes: -ln(U) * N for U uniform in (0, 1), computed in fixed
// point as (32 - log2(u)) * ln 2 for a 32-bit random u, with log2's
// fraction from the 256-entry mantissa table (error < 0.3%).
static __always_inline __u64 draw_interval(void)
{
	__u32 u = bpf_get_prandom_u32() | 1;
	__u32 x = u, l = 0;
	if (x >= 1 << 16) { x >>= 16; l += 16; }
	if (x >= 1 << 8) { x >>= 8; l += 8; }
	if (x >= 1 << 4) { x >>= 4; l += 4; }
	if (x >= 1 << 2) { x >>= 2; l += 2; }
	if (x >= 1 << 1) { l += 1; }
	// The 8 bits after the leading one.
	__u32 j = l >= 8 ? (u >> (l - 8)) & 255 : (u << (8 - l)) & 255;
	// -log2(u / 2^32) in 16.16, then times ln 2 (45426 / 65536).
	__u64 nlog2 = ((__u64)(32 - l) << 16) - log2_mantissa[j & 255];
	__u64 nln = (nlog2 * 45426) >> 16;
	__u64 n = (sample_bytes * nln) >> 16;
	return n ? n : 1;
}

// sample_bytes_of decides whether an event of size bytes is recorded.
static __always_inline bool sample_bytes_of(__u64 size)
{
	if (!sample_bytes)
		return true;
	__u32 zero = 0;
	struct sample_state *st = bpf_map_lookup_elem(&sample_state, &zero);
	if (!st)
		return true;
	if (!st->init) {
		st->init = 1;
		st->left = draw_interval();
	}
	st->left -= (__s64)size;
	if (st->left > 0)
		return false;
	// The distance from the end of this event to the next sample point
	// is again exponential (memorylessness).
	st->left = draw_interval();
	return true;
}
