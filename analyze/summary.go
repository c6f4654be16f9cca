package analyze

import (
	"fmt"

	"github.com/bpfsnap/bpfsnap/formats"
)

// Summary is everything `bpfsnap analyze` computes for one archive; its JSON
// form is the `analyze --json` document and the report's data. Each probe
// set's analysis adds its own section (cpu, http, mem), nil when the archive
// has no data for it.
type Summary struct {
	Archive   string            `json:"archive"`
	Manifest  *formats.Manifest `json:"manifest"`
	Processes []Process         `json:"processes"`
	Warnings  []string          `json:"warnings"`
	CPU       *CPUSummary       `json:"cpu,omitempty"`
	HTTP      *HTTPSummary      `json:"http,omitempty"`
	Mem       *MemSummary       `json:"mem,omitempty"`
}

// Options configures Analyze.
type Options struct {
	Filter Filter
	// DebugDir holds debug files looked up by build id, for frames the
	// capture could not resolve.
	DebugDir string
}

// Analyze runs every analysis that applies to the archive.
func Analyze(a *formats.Archive, opts Options) (*Summary, error) {
	m := a.Manifest()
	s := &Summary{Archive: a.Path(), Manifest: m}
	var err error
	if s.Processes, err = Processes(a); err != nil {
		return nil, err
	}
	s.Warnings = Warnings(m)
	if a.HasTable(formats.TableCPUSamples) {
		prof, err := LoadCPU(a, opts)
		if err != nil {
			return nil, err
		}
		s.CPU = prof.Summarize()
	}
	if s.HTTP, err = HTTP(a, opts, s.Processes); err != nil {
		return nil, err
	}
	if s.Mem, err = Mem(a, opts, s.Processes); err != nil {
		return nil, err
	}
	return s, nil
}

// Warnings lists everything that makes the archive's data incomplete, in
// sentences for people: probe sets that failed, drops, a crashed capture.
func Warnings(m *formats.Manifest) []string {
	var out []string
	for _, p := range m.Probes {
		if !p.Attached {
			out = append(out, "probe set "+p.Name+" did not attach: "+p.Error)
		}
	}
	for _, d := range m.SortedDrops() {
		out = append(out, formatDrop(d))
	}
	out = append(out, m.Warnings...)
	if !m.Complete {
		out = append(out, "the capture is still running or crashed: this is a partial archive")
	}
	return out
}

// dropMeanings says in words what a counter means; counters not listed
// are events that were lost.
var dropMeanings = map[string]string{
	"stacks.unsymbolized_frames":    "distinct stack frames could not be symbolized (shown as module+offset)",
	"capture.warnings_suppressed":   "further capture warnings were not kept (the first 100 are listed)",
	"http.no_response":              "HTTP requests had no response before the window ended",
	"http.response_without_request": "HTTP responses had no request in the window (connection began earlier); not counted as requests",
	"http.unparsed":                 "HTTP-looking messages could not be parsed",
	"http.truncated_path":           "HTTP paths were longer than the captured bytes and are cut",
	"http.unattributed":             "HTTP requests could not be attributed to a process (no message seen in the owner's context); a targeted capture leaves them out",
	"http.coalesced":                "TCP segments carried more than one HTTP message; only the first of each was seen, so pairing on those connections may be off",
	"http.retransmitted":            "HTTP messages were seen again in TCP retransmissions and counted once (not lost)",
	"http.pending_full":             "HTTP requests were paired in user space because the kernel's pending table was full (not lost)",
	"cpu.unwind_no_module":          "user stacks stopped at code outside any mapped file (JIT, vdso); kept up to there",
	"cpu.unwind_no_cfi":             "user stacks stopped at a function without unwind info (.eh_frame); kept up to there",
	"cpu.unwind_outside_stack":      "user stacks were deeper than the copied stack (--stack-size); kept up to there",
	"cpu.unwind_depth":              "user stacks were cut at the depth limit",
	"cpu.unwind_loop":               "user stacks stopped at a corrupt frame (stack pointer did not move); kept up to there",
	"cpu.unwind_bad_cfi":            "user stacks stopped at malformed unwind info; kept up to there",
	"cpu.unwind_unknown_register":   "user stacks stopped at a frame whose unwind rule needs a register not sampled; kept up to there",
	"cpu.user_regs_missing":         "samples had no user registers (no user stack copied)",
}

func formatDrop(d formats.DropCount) string {
	if m, ok := dropMeanings[d.Reason]; ok {
		return fmt.Sprintf("%s: %d %s", d.Reason, d.Count, m)
	}
	return fmt.Sprintf("%s: %d events lost", d.Reason, d.Count)
}
