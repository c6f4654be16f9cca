//go:build linux

package http

// The stem is lowercase so the generated objects and types stay inside this
// package; -type gives Go twins of the records and of the C enums (record
// kinds, drop reasons, uprobe cookies), so the contract has one source:
// http.bpf.c and its headers framing.h and walk.h.
//go:generate go tool bpf2go -tags linux -target amd64 -type rec_head -type http_event -type h2_event -type go_h2_event -type http_sock -type http_dir -type http_req -type http_kind -type http_drop -type http_flag -type tls_fn -type go_h2_fn -type tls_key -type sock_cgroup -type handed_key bpf http.bpf.c -- -I../include -Wall -Werror
