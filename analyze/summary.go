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
	OffCPU    *OffCPUSummary    `json:"offcpu,omitempty"`

	// cpuProfile is the profile the cpu section was made from, kept so
	// renderers (flame graphs, the report's slices) need no second pass.
	cpuProfile *CPUProfile
	// filter is the resolved filter, for renderers that describe it.
	filter Filter
	// offCPUProfile is the off-CPU profile (and its slices), for flame
	// graphs, like cpuProfile.
	offCPUProfile *OffCPUProfile
}

// CPUProfile returns the filtered CPU profile the summary was made from
// (with its time slices when Options.Slices asked for them), nil when the
// archive has no CPU samples.
func (s *Summary) CPUProfile() *CPUProfile { return s.cpuProfile }

// Options configures Analyze.
type Options struct {
	Filter Filter
	// DebugDir holds debug files looked up by build id, for frames the
	// capture could not resolve.
	DebugDir string
	// Slices, when > 0, also splits the CPU profile into this many equal
	// time slices of the filtered window (CPUProfile.Slices), counted in
	// the same pass over the samples.
	Slices int
	// Sections limits the analyses run; zero runs all of them.
	Sections Sections
	// split attributes serving threads' time to HTTP requests; set by
	// Analyze when the archive has off-CPU intervals or CPU samples.
	split *timeSplitter
}

// Analyze runs every analysis that applies to the archive.
func Analyze(a *formats.Archive, opts Options) (*Summary, error) {
	m := a.Manifest()
	s := &Summary{Archive: a.Path(), Manifest: m, filter: opts.Filter}
	var err error
	if s.Processes, err = Processes(a); err != nil {
		return nil, err
	}
	s.Warnings = Warnings(m)
	if opts.Sections.has(SectionCPU) && a.HasTable(formats.TableCPUSamples) {
		prof, err := LoadCPU(a, opts)
		if err != nil {
			return nil, err
		}
		s.CPU = prof.Summarize()
		s.cpuProfile = prof
	}
	var off *offCPUData
	if opts.Sections.has(SectionOffCPU) {
		if s.OffCPU, off, err = OffCPU(a, opts, s.Processes); err != nil {
			return nil, err
		}
		if off != nil {
			s.offCPUProfile = off.profile
		}
	}
	if opts.Sections.has(SectionHTTP) && a.HasTable(formats.TableHTTPRequests) && opts.Sections.has(SectionOffCPU) {
		// Where each request's time went (offcpu_split.go).
		if opts.split, err = newTimeSplitter(a, opts, off); err != nil {
			return nil, err
		}
	}
	if opts.Sections.has(SectionHTTP) {
		if s.HTTP, err = HTTP(a, opts, s.Processes); err != nil {
			return nil, err
		}
	}
	if opts.Sections.has(SectionMem) {
		if s.Mem, err = Mem(a, opts, s.Processes); err != nil {
			return nil, err
		}
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

// formatDrop says in words what a counter means (formats' drop catalog).
// Lost events are said to be lost, so a reader never takes a stack cut
// short for data loss or the other way round.
func formatDrop(d formats.DropCount) string {
	r, _ := formats.LookupDrop(d.Reason)
	if r.Class == formats.DropLost {
		if r.Meaning == "" {
			return fmt.Sprintf("%s: %d events lost", d.Reason, d.Count)
		}
		return fmt.Sprintf("%s: %d events lost (%s)", d.Reason, d.Count, r.Meaning)
	}
	return fmt.Sprintf("%s: %d %s", d.Reason, d.Count, r.Meaning)
}
