//go:build linux

package process

// The stem is lowercase so the generated objects and types stay inside this
// package; -type gives Go twins of the record and of the C enums (record
// kinds, drop reasons), so the contract has one source: process.bpf.c.
//go:generate go tool bpf2go -tags linux -target amd64 -type process_event -type proc_kind -type proc_drop bpf process.bpf.c -- -I../include -Wall -Werror
