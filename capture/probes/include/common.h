// Shared definitions for every bpfsnap probe set.
#pragma once

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>

#define TASK_COMM_LEN 16
#define MAX_TARGETS 65536

// targets holds the thread-group ids a capture is restricted to. Every
// object declares it with the same definition; user space creates it once
// and hands the same map to each object (MapReplacements), so the process
// probe's fork tracking widens the filter for all of them.
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_TARGETS);
	__type(key, __u32);
	__type(value, __u8);
} targets SEC(".maps");

// filter_targets is set by user space before load: false captures the
// whole host, true only the tgids in targets.
const volatile bool filter_targets = false;

static __always_inline bool is_target(__u32 tgid)
{
	if (!filter_targets)
		return true;
	return bpf_map_lookup_elem(&targets, &tgid) != NULL;
}

// Each object counts what it loses in a per-CPU array indexed by a
// probe-set specific reason; user space sums the CPUs and stores the totals
// in the manifest. The add is atomic: per-CPU does not mean exclusive, as
// two programs can interleave on one CPU (a preempted tracepoint program
// and the next one), and a plain ++ lost counts under a flood.
#define DECLARE_DROPS(n)                                   \
	struct {                                           \
		__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);   \
		__uint(max_entries, n);                    \
		__type(key, __u32);                        \
		__type(value, __u64);                      \
	} drops SEC(".maps");                              \
	static __always_inline void count_drops(__u32 reason, __u64 n) \
	{                                                  \
		__u64 *v = bpf_map_lookup_elem(&drops, &reason); \
		if (v)                                     \
			__sync_fetch_and_add(v, n);        \
	}                                                  \
	static __always_inline void count_drop(__u32 reason) { count_drops(reason, 1); }

// submit_flags decides whether a ring buffer submit wakes the reader. A
// wakeup per event costs the recorder a context switch; instead the reader
// polls every 100 ms and is woken early only when the ring is a quarter
// full, so bursts are still drained before they overflow.
static __always_inline __u64 submit_flags(void *ring)
{
	__u64 avail = bpf_ringbuf_query(ring, BPF_RB_AVAIL_DATA);
	__u64 size = bpf_ringbuf_query(ring, BPF_RB_RING_SIZE);
	return avail > size / 4 ? BPF_RB_FORCE_WAKEUP : BPF_RB_NO_WAKEUP;
}
