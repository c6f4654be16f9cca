package formats

// Stack tables are shared by every probe set that records call stacks (cpu
// samples, allocations). A stack is written once and referenced by id.
const (
	TableCPUSamples = "cpu_samples" // CPUSample
	TableStacks     = "stacks"      // Stack
	TableFrames     = "frames"      // Frame
)

// CPUSample is one on-CPU sample of a thread.
type CPUSample struct {
	TimeNs   uint64 `parquet:"time_ns"`
	CPU      uint32 `parquet:"cpu"`
	PID      uint32 `parquet:"pid"` // thread-group id (host pid namespace)
	TID      uint32 `parquet:"tid"`
	CgroupID uint64 `parquet:"cgroup_id"`
	Comm     string `parquet:"comm,dict"` // thread name at sample time
	// StackID references stacks.stack_id; 0 when no stack could be
	// captured (the reason is counted in the manifest's drops).
	StackID uint64 `parquet:"stack_id"`
}

// Stack is a deduplicated call stack: frame ids leaf first, kernel frames
// (if any) before user frames.
type Stack struct {
	StackID  uint64   `parquet:"stack_id"`
	PID      uint32   `parquet:"pid"` // process the stack was first seen in
	FrameIDs []uint64 `parquet:"frame_ids,list"`
}

// Frame is one distinct code location. User frames are identified by their
// mapping's build id (or path) and file offset, so the same function in many
// processes of one binary is one frame; kernel frames by address.
type Frame struct {
	FrameID uint64 `parquet:"frame_id"`
	Kernel  bool   `parquet:"kernel"`
	// Address is the runtime address the frame was first seen at (user
	// frames: in the process given by Stack.PID).
	Address uint64 `parquet:"address"`
	// Module is the mapped file's path (as the process saw it) or
	// "[kernel]" / a kernel module name.
	Module     string `parquet:"module,dict"`
	BuildID    string `parquet:"build_id,dict"` // hex GNU build id, or ""
	FileOffset uint64 `parquet:"file_offset"`   // offset of Address in Module
	// Function is the symbol name, demangled; "" when unresolved (a reader
	// may then resolve BuildID+FileOffset from a debug file).
	Function string `parquet:"function"`
	File     string `parquet:"file"`
	Line     uint32 `parquet:"line"`
	// Inlined marks a frame that was inlined into the next (outer) frame.
	Inlined bool `parquet:"inlined"`
}
