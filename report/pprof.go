package report

import (
	"io"
	"strings"
	"time"

	"github.com/google/pprof/profile"

	"github.com/bpfsnap/bpfsnap/analyze"
	"github.com/bpfsnap/bpfsnap/formats"
	"github.com/bpfsnap/bpfsnap/internal/safetext"
)

// PprofOptions describes the capture the profile came from.
type PprofOptions struct {
	// Start and Duration of the (sliced) window, for pprof's header.
	Start    time.Time
	Duration time.Duration
}

// BuildPprof converts a CPU profile to pprof's model: one location per
// frame (function name, file, line; the mapping with its build id; inlined
// functions as extra lines of the location they were inlined into), sample
// values "samples/count" and "cpu/nanoseconds" (samples × the sampling
// period, when the archive records the frequency), and pid / process name as
// labels so `pprof -tagfocus` can select a process.
func BuildPprof(p *analyze.CPUProfile, opts PprofOptions) *profile.Profile {
	period := p.PeriodNs
	prof := &profile.Profile{
		SampleType:        []*profile.ValueType{{Type: "samples", Unit: "count"}, {Type: "cpu", Unit: "nanoseconds"}},
		PeriodType:        &profile.ValueType{Type: "cpu", Unit: "nanoseconds"},
		Period:            period,
		DefaultSampleType: "cpu",
		DurationNanos:     int64(opts.Duration),
	}
	if !opts.Start.IsZero() {
		prof.TimeNanos = opts.Start.UnixNano()
	}
	if period == 0 {
		prof.DefaultSampleType = "samples"
	}
	type mapKey struct{ file, buildID string }
	type funcKey struct{ name, file string }
	mappings := map[mapKey]*profile.Mapping{}
	functions := map[funcKey]*profile.Function{}
	locations := map[*formats.Frame]*profile.Location{}
	noStack := &profile.Location{}

	mappingFor := func(f *formats.Frame) *profile.Mapping {
		k := mapKey{printable(f.Module), printable(f.BuildID)}
		if k.file == "" {
			k.file = "[unknown]"
		}
		m := mappings[k]
		if m == nil {
			m = &profile.Mapping{ID: uint64(len(prof.Mapping) + 1), File: k.file, BuildID: k.buildID,
				// Addresses below are file offsets (user) or kernel
				// addresses; the mapping spans them all.
				Start: 0, Limit: ^uint64(0), HasFunctions: true, HasFilenames: true, HasLineNumbers: true}
			mappings[k] = m
			prof.Mapping = append(prof.Mapping, m)
		}
		return m
	}
	functionFor := func(name, file string) *profile.Function {
		k := funcKey{name, file}
		fn := functions[k]
		if fn == nil {
			fn = &profile.Function{ID: uint64(len(prof.Function) + 1), Name: name, SystemName: name, Filename: file}
			functions[k] = fn
			prof.Function = append(prof.Function, fn)
		}
		return fn
	}
	// locationFor makes one location per code address: f with the
	// functions inlined into it (inl, innermost first), as pprof's
	// several lines per location (the last one the function the others
	// were inlined into).
	locationFor := func(f *formats.Frame, inl []*formats.Frame) *profile.Location {
		loc := locations[f]
		if loc == nil {
			addr := f.FileOffset
			if f.Kernel {
				addr = f.Address
			}
			loc = &profile.Location{ID: uint64(len(prof.Location) + 1), Mapping: mappingFor(f), Address: addr}
			line := func(g *formats.Frame) profile.Line {
				return profile.Line{Function: functionFor(analyze.FunctionName(g), printable(g.File)), Line: int64(g.Line)}
			}
			for _, g := range inl {
				loc.Line = append(loc.Line, line(g))
			}
			loc.Line = append(loc.Line, line(f))
			locations[f] = loc
			prof.Location = append(prof.Location, loc)
		}
		return loc
	}
	for i := range p.Stacks {
		s := &p.Stacks[i]
		sample := &profile.Sample{
			Value:    []int64{int64(s.Count), int64(s.Count) * period},
			Label:    map[string][]string{"process": {p.StackProcess(s)}},
			NumLabel: map[string][]int64{"pid": {int64(s.PID)}},
		}
		for i := 0; i < len(s.Frames); i++ {
			j := i
			for j < len(s.Frames)-1 && s.Frames[j].Inlined {
				j++ // inlined frames go into the location of the frame they were inlined into
			}
			sample.Location = append(sample.Location, locationFor(s.Frames[j], s.Frames[i:j]))
			i = j
		}
		if len(s.Frames) == 0 {
			if noStack.ID == 0 {
				noStack.ID = uint64(len(prof.Location) + 1)
				noStack.Line = []profile.Line{{Function: functionFor("[no stack]", "")}}
				prof.Location = append(prof.Location, noStack)
			}
			sample.Location = []*profile.Location{noStack}
		}
		prof.Sample = append(prof.Sample, sample)
	}
	return prof
}

// printable keeps workload strings that pprof prints (file and module
// paths) from carrying terminal control sequences: control characters
// become '?', invalid UTF-8 U+FFFD. Function names are already clean
// (analyze.FrameName).
func printable(s string) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	return strings.Map(func(r rune) rune {
		if safetext.Unsafe(r) {
			return '?'
		}
		return r
	}, s)
}

// WritePprof writes the profile gzip-compressed, as `go tool pprof` reads it.
func WritePprof(w io.Writer, p *analyze.CPUProfile, opts PprofOptions) error {
	prof := BuildPprof(p, opts)
	if err := prof.CheckValid(); err != nil {
		return err
	}
	return prof.Write(w)
}
