// Package unwind walks user stacks of x86-64 ELF code that has no frame
// pointers, using the DWARF call frame information (CFI) compilers emit in
// .eh_frame (always present for C/C++ on Linux: exceptions and backtrace(3)
// need it) and .debug_frame.
//
// The input is what a sampler can copy cheaply at the moment of the sample:
// three registers (rip, rsp, rbp) and a window of the thread's stack starting
// at rsp. Unwind interprets the CFI rows for each PC (CFA = register+offset or
// a DWARF expression, register save rules, signal frames) and stops with a
// Reason when it cannot go on, so every incomplete stack is counted by cause.
//
// The package is pure Go and portable: it never touches /proc or ptrace
// itself; callers hand it the ELF tables and the process's mappings.
package unwind
