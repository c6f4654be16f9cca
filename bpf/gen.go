//go:build linux

package bpf

// One line per probe set. -type names the event structs whose Go twins the
// recorder decodes. CO-RE against the committed include/vmlinux.h.
//go:generate go tool bpf2go -tags linux -target amd64 -type process_event Process process.bpf.c -- -I./include -Wall -Werror
//go:generate go tool bpf2go -tags linux -target amd64 -type cpu_sample CPU cpu.bpf.c -- -I./include -Wall -Werror
//go:generate go tool bpf2go -tags linux -target amd64 -type http_event -type http_msg HTTP http.bpf.c -- -I./include -Wall -Werror
//go:generate go tool bpf2go -tags linux -target amd64 -type unwind_sample Unwind unwind.bpf.c -- -I./include -Wall -Werror
//go:generate go tool bpf2go -tags linux -target amd64 -type mem_event -type free_batch Mem mem.bpf.c -- -I./include -Wall -Werror
