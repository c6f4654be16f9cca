// Package formats defines the bpfsnap archive: its manifest, one typed Go
// struct per Parquet table, a crash-safe writer that seals chunk files, and a
// reader that treats every archive as untrusted input.
//
// It is pure Go and never imports capture/ or bpf/, so archives can be read
// on any operating system. docs/format.md describes the layout for writers of
// a second reader.
package formats
