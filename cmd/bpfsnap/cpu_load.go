package main

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/bpfsnap/bpfsnap/analyze"
	"github.com/bpfsnap/bpfsnap/formats"
)

// cpuInput is an archive's CPU profile with what the renderers need to
// describe it.
type cpuInput struct {
	path     string
	manifest *formats.Manifest
	opts     analyze.Options
	profile  *analyze.CPUProfile
}

// loadCPU opens an archive and loads its CPU samples under the analysis
// flags. An archive without samples, or a filter that keeps none, is an
// error naming the archive: an empty flame graph would look like an idle
// machine.
func loadCPU(path string, flags *analysisFlags) (*cpuInput, error) {
	a, err := formats.Open(path)
	if err != nil {
		return nil, err
	}
	defer a.Close()
	m := a.Manifest()
	opts, err := flags.options(a)
	if err != nil {
		return nil, err
	}
	if !a.HasTable(formats.TableCPUSamples) {
		return nil, fmt.Errorf("%s has no CPU samples (capture with -p cpu)", path)
	}
	p, err := analyze.LoadCPU(a, opts)
	if err != nil {
		return nil, err
	}
	if p.Samples == 0 {
		if filtered(opts.Filter) {
			return nil, fmt.Errorf("%s: no CPU samples match %s", path, describeFilter(opts.Filter))
		}
		return nil, fmt.Errorf("%s has no CPU samples (capture with -p cpu)", path)
	}
	return &cpuInput{path: path, manifest: m, opts: opts, profile: p}, nil
}

func filtered(f analyze.Filter) bool { return len(f.PIDs) > 0 || f.From > 0 || f.To > 0 }

// describeFilter says in words what the analysis was restricted to.
func describeFilter(f analyze.Filter) string {
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

// slice returns the start and length of the analyzed part of the window.
func (c *cpuInput) slice() (time.Time, time.Duration) {
	w := c.manifest.Window
	start := w.StartWall.Add(c.opts.Filter.From)
	end := w.Duration()
	if c.opts.Filter.To > 0 && c.opts.Filter.To < end {
		end = c.opts.Filter.To
	}
	if end < c.opts.Filter.From {
		return start, 0
	}
	return start, end - c.opts.Filter.From
}

var errNoOutput = errors.New("refusing to write a binary profile to a terminal: use -o FILE")
