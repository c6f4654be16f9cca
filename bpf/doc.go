// Package bpf holds bpfsnap's eBPF programs (C sources, compiled by bpf2go
// into the committed *_bpfel.go/.o files) so `go build` needs no clang.
// Run `make generate` after editing a .bpf.c file.
package bpf
