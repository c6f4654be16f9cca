// Package report renders analyses for people: terminal text, JSON, and (as
// they land) SVG flame graphs, pprof and the self-contained HTML report.
// Everything that comes from a workload (names, URLs, symbols) is escaped
// for the context it is written into. Pure Go, builds on every OS.
package report
