package formats

import "math"

// TableMemEvents holds allocator calls of targeted processes (probe set
// mem), in the order the kernel recorded them.
const TableMemEvents = "mem_events" // MemEvent

// Allocation event kinds.
const (
	MemMalloc        = "malloc"
	MemCalloc        = "calloc"
	MemRealloc       = "realloc" // also reallocarray
	MemFree          = "free"
	MemMemalign      = "memalign" // aligned_alloc, memalign, valloc, pvalloc
	MemPosixMemalign = "posix_memalign"
	// Syscalls (tracepoints), not the C allocator: anonymous mappings
	// only (file mappings are page cache, not leaked memory).
	MemMmap   = "mmap"
	MemMunmap = "munmap"
	MemMremap = "mremap"
	MemBrk    = "brk"
)

// MemEvent is one allocation, free, mapping or unmapping. Replaying the
// rows in time order gives the blocks and mappings outstanding at any
// moment of the window.
type MemEvent struct {
	TimeNs uint64 `parquet:"time_ns"`
	PID    uint32 `parquet:"pid"`
	TID    uint32 `parquet:"tid"`
	Kind   string `parquet:"kind,dict"`
	// Addr is the block returned (allocations), given back (free), mapped
	// (mmap, mremap) or unmapped (munmap); brk: the new program break.
	Addr uint64 `parquet:"addr"`
	// OldAddr is the block a realloc replaced (0 for a fresh block), the
	// mapping an mremap moved, or brk's previous break.
	OldAddr uint64 `parquet:"old_addr"`
	// Size is the requested size in bytes (0 for free); the length of an
	// mmap, munmap or mremap's new mapping.
	Size uint64 `parquet:"size"`
	// OldSize is the old length of an mremap'd mapping.
	OldSize uint64 `parquet:"old_size"`
	// StackID references stacks.stack_id (leaf = the allocation's call
	// site); 0 for frees and unmaps and when no stack could be read.
	StackID uint64 `parquet:"stack_id"`
	// Weight is how many allocations this row stands for: 1, or
	// 1/(1-exp(-size/N)) under --mem-sample N byte sampling, so that
	// size × weight estimates the bytes allocated at its stack.
	Weight float64 `parquet:"weight"`
	// InAllocator marks an mmap/mremap/brk made by the C allocator itself
	// (inside a traced malloc-family call): it backs blocks that the
	// allocator rows already account for.
	InAllocator bool `parquet:"in_allocator"`
}

// MemSampleWeight is the weight of an allocation of size bytes recorded
// under Poisson byte sampling with mean sampleBytes between samples (the
// inverse of its probability of being sampled, 1 - exp(-size/N)); 1
// without sampling.
func MemSampleWeight(size, sampleBytes uint64) float64 {
	if sampleBytes == 0 || size == 0 {
		return 1
	}
	p := -math.Expm1(-float64(size) / float64(sampleBytes))
	if p <= 0 {
		return 1
	}
	return 1 / p
}
