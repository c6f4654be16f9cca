package report

import (
	"bytes"
	_ "embed"
	"fmt"
	"html/template"
	"path/filepath"

	"github.com/bpfsnap/bpfsnap/analyze"
)

var (
	// diffTemplate defines the comparison's parts of the page (cmp-*),
	// called from html.tmpl; each renders nothing without a baseline.
	//go:embed diff.tmpl
	diffTemplate string
	//go:embed diff.css
	diffCSS string
)

// Rows of the report's comparison tables.
const (
	comparedFunctions = 20
	comparedSites     = 10
)

// compareView is one archive's comparison with the baseline, as the page
// shows it.
type compareView struct {
	Diff     *analyze.Diff
	BaseName string
	BaseHost string
	Changes  []string
	// Gone are the endpoints only the baseline saw.
	Gone      []analyze.EndpointDiff
	Flame     template.HTML
	Functions []analyze.FunctionDiff
	Sites     []analyze.MemSiteDiff
}

// AddBaseline adds the comparison of this archive (the Diff's NEW side)
// with a baseline to its part of the report: deltas in the endpoint table,
// a differential flame graph beside the plain one, the functions and leak
// sites that changed, and a "what changed" card.
func (h *HTMLArchive) AddBaseline(d *analyze.Diff) error {
	v := &compareView{Diff: d, BaseName: filepath.Base(d.Base.Archive), BaseHost: d.Base.Host, Changes: WhatChanged(d)}
	if d.HTTP != nil {
		keys := h.Summary.EndpointKeys()
		for i := range h.Endpoints {
			h.Endpoints[i].Baseline = d.HTTP.Find(keys[i])
		}
		for _, e := range d.HTTP.Endpoints {
			if e.New == nil {
				v.Gone = append(v.Gone, e)
			}
		}
	}
	if d.CPU != nil {
		v.Functions = d.CPU.Functions[:min(comparedFunctions, len(d.CPU.Functions))]
		if stacks, err := d.RequireCPU(); err == nil {
			root := DiffFlameTree(stacks)
			var b bytes.Buffer
			err := WriteFlameGraph(&b, root, DiffFlameOptions(root, FlameOptions{
				Title:      "CPU: differential vs baseline " + v.BaseName,
				Subtitle:   diffSubtitle(root),
				OmitScript: true, MinWidth: wholeMinWidth, Width: 1160,
			}))
			if err != nil {
				return err
			}
			v.Flame = template.HTML(b.String())
		}
	}
	if d.Mem != nil {
		v.Sites = d.Mem.Sites[:min(comparedSites, len(d.Mem.Sites))]
	}
	h.Compare = v
	return nil
}

// compareFuncs are the template functions of the comparison's parts.
var compareFuncs = template.FuncMap{
	"signedMs":  signedMs,
	"causeText": causeText,
	"points":    func(v float64) string { return fmt.Sprintf("%+.1f", v) },
	"ratio": func(v float64) string {
		if v == 0 {
			return ""
		}
		return fmt.Sprintf("×%.2f", v)
	},
	"sbytes": func(v int64) string {
		if v < 0 {
			return "-" + HumanBytes(-v)
		}
		return "+" + HumanBytes(v)
	},
}
