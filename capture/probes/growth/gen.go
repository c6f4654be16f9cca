//go:build linux

package growth

// The stem is lowercase so the generated objects and types stay inside this
// package; -type gives Go twins of the record, its kinds and flags, and the
// drop reasons, so the contract has one source: growth.bpf.c.
//go:generate go tool bpf2go -tags linux -target amd64 -type growth_event -type growth_kind -type growth_flag -type growth_drop -type growth_total bpf growth.bpf.c -- -I../include -Wall -Werror
