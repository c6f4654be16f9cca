//go:build linux

package offcpu

// The stem is lowercase so the generated objects and types stay inside this
// package; -type gives Go twins of the records, the per-thread state (read
// at the end for what is still accumulated) and the C enums (record kinds,
// flags, drop reasons), so the contract has one source: offcpu.bpf.c.
//go:generate go tool bpf2go -tags linux -target amd64 -type offcpu_interval -type offcpu_stack -type thread_state -type offcpu_kind -type offcpu_flag -type offcpu_drop bpf offcpu.bpf.c -- -I../include -Wall -Werror
