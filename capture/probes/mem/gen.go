//go:build linux

package mem

// The stem is lowercase so the generated objects and types stay inside this
// package; -type gives Go twins of the records and of the C enums (record
// kinds, allocator functions, drop reasons), so the contract has one
// source: mem.bpf.c.
//go:generate go tool bpf2go -tags linux -target amd64 -type mem_event -type free_batch -type mem_kind -type alloc_fn -type mem_drop bpf mem.bpf.c -- -I../include -Wall -Werror
