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
//
// Code compiled from inlined functions expands to several logical frames:
// the row stacks reference names the function the code was compiled into
// (with the line of the call that was inlined), and one extra row per
// inlined function, InlineOf pointing at it, names the inlined ones. A
// reader expands each frame id of a stack into its inlined rows by
// decreasing InlineDepth, then the frame itself (leaf first, like the
// stack). Archives written before inline support have no such rows.
type Frame struct {
	FrameID uint64 `parquet:"frame_id"`
	Kernel  bool   `parquet:"kernel"`
	// Address is the runtime address the frame was first seen at (user
	// frames: in the process given by Stack.PID).
	Address uint64 `parquet:"address"`
	// Module is the mapped file's path (as the process saw it) or
	// "[kernel]" / a kernel module name; "[jit]" or "[jit:RUNTIME]" for
	// code in anonymous executable memory, named through jit_symbols
	// (jit.go).
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
	// InlineOf is set on inlined frames: the frame_id of the frame (one
	// code address, the one stacks reference) whose code they were
	// inlined into. 0 for the frames stacks reference.
	InlineOf uint64 `parquet:"inline_of"`
	// InlineDepth orders the inlined frames of one InlineOf: 1 is the
	// function inlined directly into InlineOf's function, 2 one inlined
	// into that, and so on; the deepest is the innermost (the leaf-most).
	InlineDepth uint32 `parquet:"inline_depth"`
}

// MaxInlineDepth bounds the inlined frames one code address expands to:
// real inline chains are a few levels deep, so more comes from a corrupt
// or hostile file and is cut.
const MaxInlineDepth = 32

// InlineFrameID is the frame_id of the inlined frame at depth (1 = the
// outermost inlined function) of the frame physical: writers use it so
// that the same code address gives the same ids in every archive.
func InlineFrameID(physical uint64, depth uint32) uint64 {
	// A 64-bit mix (splitmix64's finalizer) of the pair: distinct from
	// physical and from the other depths, and never 0.
	v := physical ^ (uint64(depth) * 0x9e3779b97f4a7c15)
	v ^= v >> 30
	v *= 0xbf58476d1ce4e5b9
	v ^= v >> 27
	v *= 0x94d049bb133111eb
	v ^= v >> 31
	if v == 0 || v == physical {
		v = ^physical | 1
	}
	return v
}
