package formats

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
)

// MemEvent is one allocation or free. Replaying the rows in time order
// gives the blocks outstanding at any moment of the window.
type MemEvent struct {
	TimeNs uint64 `parquet:"time_ns"`
	PID    uint32 `parquet:"pid"`
	TID    uint32 `parquet:"tid"`
	Kind   string `parquet:"kind,dict"`
	// Addr is the block returned (allocations) or given back (free).
	Addr uint64 `parquet:"addr"`
	// OldAddr is the block a realloc replaced (0 for a fresh block).
	OldAddr uint64 `parquet:"old_addr"`
	// Size is the requested size in bytes (0 for free).
	Size uint64 `parquet:"size"`
	// StackID references stacks.stack_id (leaf = the allocation's call
	// site); 0 for frees and when no stack could be read.
	StackID uint64 `parquet:"stack_id"`
	// Weight is how many allocations this row stands for: 1, or more
	// under --mem-sample byte sampling (reserved; 1 in this version).
	Weight uint32 `parquet:"weight"`
}
