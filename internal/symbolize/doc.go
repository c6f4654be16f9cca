// Package symbolize turns code addresses into function names: process
// memory maps, ELF symbol tables, Go's pclntab, C++/Rust demangling, kernel
// symbols from kallsyms, and debug files found by build id. It is pure Go
// and portable, so the recorder uses it on the node and the analysis verbs
// use it later with --debug-dir. ELF files come from the workload and are
// parsed as hostile input: size limits and recover() around the parsers.
package symbolize
