package analyze

import (
	"fmt"
	"strings"
	"time"

	"github.com/bpfsnap/bpfsnap/formats"
)

// Request is what a reading verb asks of an archive, as the user wrote it:
// the selectors are resolved against each archive by Load (time offsets
// against its window, Kubernetes names against its processes), so every
// verb honours every selector in the same way.
type Request struct {
	PIDs []uint32
	// From and To are offsets from the window start ("5s") or RFC 3339
	// times inside the window; empty means the window's start or end.
	From, To string
	// Namespace and Pod select the processes attributed to them at
	// capture time (Pod is NAME or NAMESPACE/NAME).
	Namespace, Pod string
	DebugDir       string
	// Slices splits the CPU profile into this many time slices (the
	// report's per-slice flame graphs), counted in the same pass.
	Slices int
	// Sections limits the analyses run (flamegraph and export need only
	// the CPU profile); zero runs all of them.
	Sections Sections
}

// Sections is a set of analyses.
type Sections uint8

// The analyses Analyze can run.
const (
	SectionCPU Sections = 1 << iota
	SectionHTTP
	SectionMem
	SectionOffCPU

	AllSections = SectionCPU | SectionHTTP | SectionMem | SectionOffCPU
)

func (s Sections) has(x Sections) bool { return s == 0 || s&x != 0 }

// Resolve turns the request into Options for one archive.
func (r Request) Resolve(a *formats.Archive) (Options, error) {
	m := a.Manifest()
	o := Options{DebugDir: r.DebugDir, Slices: r.Slices, Sections: r.Sections}
	o.Filter.PIDs = append([]uint32(nil), r.PIDs...)
	var err error
	if o.Filter.From, err = ParseOffset(r.From, m); err != nil {
		return o, fmt.Errorf("--from: %w", err)
	}
	if o.Filter.To, err = ParseOffset(r.To, m); err != nil {
		return o, fmt.Errorf("--to: %w", err)
	}
	if o.Filter.To > 0 && o.Filter.To <= o.Filter.From {
		return o, fmt.Errorf("--to %s is not after --from %s", r.To, r.From)
	}
	o.Filter.Namespace, o.Filter.Pod = r.Namespace, r.Pod
	if err := ResolveK8sArchive(a, &o.Filter); err != nil {
		return o, err
	}
	return o, nil
}

// Load is the reading path every verb takes: open the archive, resolve the
// request against it, run the analyses once, close. Renderers are fed the
// Summary and never open an archive themselves.
func Load(path string, r Request) (*Summary, error) {
	a, err := formats.Open(path)
	if err != nil {
		return nil, err
	}
	defer a.Close()
	opts, err := r.Resolve(a)
	if err != nil {
		return nil, err
	}
	return Analyze(a, opts)
}

// RequireCPU returns the summary's CPU profile, or an error naming the
// archive when it has no samples or the filter kept none: an empty flame
// graph would look like an idle machine.
func (s *Summary) RequireCPU() (*CPUProfile, error) {
	p := s.cpuProfile
	if p != nil && p.Samples > 0 {
		return p, nil
	}
	if p != nil && s.filter.Narrowed() {
		return nil, fmt.Errorf("%s: no CPU samples match %s", s.Archive, s.filter.Describe())
	}
	return nil, fmt.Errorf("%s has no CPU samples (capture with -p cpu)", s.Archive)
}

// Filter is the resolved filter the summary was made under.
func (s *Summary) Filter() Filter { return s.filter }

// Span returns the wall-clock start and the length of the analyzed part of
// the window (the whole window, or --from/--to).
func (s *Summary) Span() (time.Time, time.Duration) {
	w := s.Manifest.Window
	f := s.filter
	start := w.StartWall.Add(f.From)
	end := w.Duration()
	if f.To > 0 && f.To < end {
		end = f.To
	}
	if end < f.From {
		return start, 0
	}
	return start, end - f.From
}

// Narrowed reports whether the filter keeps less than the whole archive.
func (f Filter) Narrowed() bool { return len(f.PIDs) > 0 || f.From > 0 || f.To > 0 }

// Describe says in words what the filter restricts the analysis to.
func (f Filter) Describe() string {
	var parts []string
	if f.Namespace != "" {
		parts = append(parts, "namespace "+f.Namespace)
	}
	if f.Pod != "" {
		parts = append(parts, "pod "+f.Pod)
	}
	if len(f.PIDs) > 0 {
		var ps []string
		for _, p := range f.PIDs {
			ps = append(ps, fmt.Sprint(p))
		}
		parts = append(parts, "pid "+strings.Join(ps, ","))
	}
	if f.From > 0 || f.To > 0 {
		to := "end"
		if f.To > 0 {
			to = f.To.String()
		}
		parts = append(parts, fmt.Sprintf("time %s to %s", f.From, to))
	}
	if len(parts) == 0 {
		return "the whole window"
	}
	return strings.Join(parts, ", ")
}
