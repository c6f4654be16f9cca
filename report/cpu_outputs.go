package report

import (
	"encoding/json"
	"fmt"
	"io"
	"path/filepath"

	"github.com/bpfsnap/bpfsnap/analyze"
)

// CPUFlameOptions is what the flamegraph verb asks for.
type CPUFlameOptions struct {
	// Folded prints folded stacks instead of the SVG.
	Folded bool
	// PerPID names each stack's root frame comm-PID.
	PerPID bool
	// Title of the SVG; "CPU flame graph: ARCHIVE" when empty.
	Title string
	// MinWidth omits frames narrower than this many pixels.
	MinWidth float64
}

// WriteCPUFlameGraph draws the summary's CPU profile as an interactive SVG
// flame graph, or folded stacks. A summary without samples is an error.
func WriteCPUFlameGraph(w io.Writer, s *analyze.Summary, o CPUFlameOptions) error {
	prof, err := s.RequireCPU()
	if err != nil {
		return err
	}
	return writeFoldedOrFlame(w, prof.Folded(analyze.FoldOptions{WithPID: o.PerPID}), o.Folded, "CPU flame graph: "+filepath.Base(s.Archive),
		FlameOptions{Title: o.Title, Subtitle: cpuSubtitle(s, prof), MinWidth: o.MinWidth})
}

// writeFoldedOrFlame writes stacks as folded lines, or as an SVG flame
// graph titled fo.Title (title when that is empty).
func writeFoldedOrFlame(w io.Writer, stacks []analyze.FoldedStack, folded bool, title string, fo FlameOptions) error {
	if folded {
		return analyze.WriteFolded(w, stacks)
	}
	if fo.Title == "" {
		fo.Title = title
	}
	return WriteFlameGraph(w, FlameTreeFromFolded(stacks), fo)
}

// cpuSubtitle describes the samples drawn: how many, from which host and
// slice, under which filter.
func cpuSubtitle(s *analyze.Summary, prof *analyze.CPUProfile) string {
	start, d := s.Span()
	sub := fmt.Sprintf("%d samples on %s, %s from %s", prof.Samples, s.Manifest.Host,
		d.Round(1e6), start.UTC().Format("2006-01-02 15:04:05 MST"))
	if f := s.Filter(); f.Narrowed() {
		sub += " (" + f.Describe() + ")"
	}
	return sub
}

// ExportFormats are the formats WriteCPUExport writes.
var ExportFormats = []string{"pprof", "folded", "json"}

// WriteCPUExport writes the summary's CPU profile for other tools: a
// gzipped pprof profile, folded stacks, or the cpu section as JSON with
// the folded stacks.
func WriteCPUExport(w io.Writer, s *analyze.Summary, format string) error {
	prof, err := s.RequireCPU()
	if err != nil {
		return err
	}
	switch format {
	case "pprof":
		start, d := s.Span()
		return WritePprof(w, prof, PprofOptions{Start: start, Duration: d})
	case "folded":
		return analyze.WriteFolded(w, prof.Folded(analyze.FoldOptions{}))
	case "json":
		doc := struct {
			Archive string                `json:"archive"`
			CPU     *analyze.CPUSummary   `json:"cpu"`
			Folded  []analyze.FoldedStack `json:"folded"`
		}{s.Archive, s.CPU, prof.Folded(analyze.FoldOptions{})}
		return WriteJSON(w, doc)
	}
	return fmt.Errorf("--format %q: use pprof, folded or json", format)
}

// WriteJSON writes v as indented JSON, the way every --json output is.
func WriteJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
