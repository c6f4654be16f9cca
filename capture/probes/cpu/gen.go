//go:build linux

package cpu

// Two objects: cpu.bpf.c walks frame pointers in the kernel (--unwind fp),
// unwind.bpf.c copies the user stack for the recorder's CFI walk (auto,
// dwarf). Lowercase stems keep the generated code inside this package; -type
// gives Go twins of the records and of the drop-reason enums.
//go:generate go tool bpf2go -tags linux -target amd64 -type cpu_sample -type cpu_drop bpf cpu.bpf.c -- -I../include -Wall -Werror
//go:generate go tool bpf2go -tags linux -target amd64 -type unwind_sample -type unwind_drop dwarf unwind.bpf.c -- -I../include -Wall -Werror
