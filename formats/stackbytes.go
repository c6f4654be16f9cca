package formats

// TableStackBytes holds the raw user stack copies of --unwind dwarf samples.
// Written only with capture --keep-stack-bytes: stack memory can hold
// secrets (keys, passwords, request bodies), so by default the bytes are
// unwound on the node and dropped.
const TableStackBytes = "stack_bytes" // StackBytes

// StackBytes is one sample's copied user registers and stack memory, for
// re-unwinding the sample elsewhere (e.g. with debug files).
type StackBytes struct {
	TimeNs uint64 `parquet:"time_ns"`
	PID    uint32 `parquet:"pid"`
	TID    uint32 `parquet:"tid"`
	// StackID is the stack the capture unwound the bytes to.
	StackID uint64 `parquet:"stack_id"`
	IP      uint64 `parquet:"ip"`
	SP      uint64 `parquet:"sp"` // address of Bytes[0]
	BP      uint64 `parquet:"bp"`
	Bytes   []byte `parquet:"bytes"`
}
