// Package analyze turns an archive's raw rows into answers: process
// records, and (as probe sets land) latency percentiles, folded stacks and
// leak candidates. It is pure Go, reads archives only through formats/, and
// builds on every OS.
package analyze
