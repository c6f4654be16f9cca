package formats

import "strings"

// TableJITSymbols holds the names runtimes gave their JIT code in perf
// maps (/tmp/perf-PID.map) and jitdump files, read by the recorder at a
// process's exit and at the end of the window: the symbols that name a
// frame of the archive's stacks, so JIT frames resolve offline.
const TableJITSymbols = "jit_symbols" // JITSymbol

// JITSymbol is one named range of a process's JIT code. A runtime reuses
// the addresses of code it freed: where two rows of a pid overlap, the
// later row (the newer line of the map) names the address.
type JITSymbol struct {
	PID   uint32 `parquet:"pid"` // host pid
	Start uint64 `parquet:"start"`
	Size  uint64 `parquet:"size"`
	Name  string `parquet:"name"`
	// Source is the file the name came from, as the process saw it
	// ("/tmp/perf-1.map" for a process that is pid 1 in its container).
	Source string `parquet:"source,dict"`
}

// JIT frames: the recorder writes the module of a frame in anonymous
// executable memory (JIT code, a runtime's trampolines) as "[jit]", or
// "[jit:RUNTIME]" when the process's mappings show the runtime (see
// JITModule). The frames table keeps such frames without a function name;
// readers name them from the jit_symbols rows of the stack's pid.
const jitModulePrefix = "[jit"

// Runtimes named in JIT modules.
const (
	RuntimeNode   = "node"
	RuntimeJava   = "java"
	RuntimePython = "python"
	RuntimeDotnet = "dotnet"
)

// JITModule is the module written for a frame in anonymous executable
// memory of a process running runtime ("" when unknown).
func JITModule(runtime string) string {
	if runtime == "" {
		return "[jit]"
	}
	return "[jit:" + runtime + "]"
}

// IsJITModule reports whether a frame's module marks JIT code, and the
// runtime it names ("" for "[jit]").
func IsJITModule(module string) (runtime string, ok bool) {
	if module == "[jit]" {
		return "", true
	}
	if strings.HasPrefix(module, jitModulePrefix+":") && strings.HasSuffix(module, "]") {
		return module[len(jitModulePrefix)+1 : len(module)-1], true
	}
	return "", false
}
