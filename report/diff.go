package report

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/bpfsnap/bpfsnap/analyze"
)

// Rows printed by the terminal comparison; --json has the full lists.
const (
	diffTextEndpoints = 20
	diffTextFunctions = 15
	diffTextSites     = 10
	// whatChangedEndpoints is how many regressed endpoints the "what
	// changed" summary names.
	whatChangedEndpoints = 2
)

// WhatChanged sums a comparison up in a few sentences, the most important
// first: the endpoints whose tail grew most (p99 added × rate; by at least
// 1 ms and 10%), error
// rates that rose, endpoints gone, the functions whose share of the CPU
// moved beyond noise, CPU use, and the leak site that grew most. The
// sentences hold workload strings: escape them where they are shown.
func WhatChanged(d *analyze.Diff) []string {
	var out []string
	if h := d.HTTP; h != nil {
		// A client and a server on the node see the same requests: name
		// a route once.
		named := map[[2]string]bool{}
		for i := range h.Endpoints {
			e := &h.Endpoints[i]
			if e.Impact <= 0 || len(named) == whatChangedEndpoints {
				break
			}
			if named[[2]string{e.Method, e.Route}] || (e.Change != nil && !tailGrew(e)) {
				continue
			}
			named[[2]string{e.Method, e.Route}] = true
			if e.Base == nil {
				out = append(out, fmt.Sprintf("new endpoint %s: p99 %s at %.1f req/s", endpointName(e), fmtMs(e.New.P99), e.New.RateRPS))
				continue
			}
			out = append(out, fmt.Sprintf("%s: p99 %s → %s (%s) at %.1f req/s%s", endpointName(e), fmtMs(e.Base.P99), fmtMs(e.New.P99), signedMs(e.Change.P99), e.New.RateRPS, causeText(e.Change)))
		}
		var errs, gone *analyze.EndpointDiff
		for i := range h.Endpoints {
			e := &h.Endpoints[i]
			if e.Change != nil && e.Change.ErrorPct >= 1 && e.New.Errors >= 5 && (errs == nil || e.Change.ErrorPct > errs.Change.ErrorPct) {
				errs = e
			}
			if e.New == nil && (gone == nil || e.Base.RateRPS > gone.Base.RateRPS) {
				gone = e
			}
		}
		if errs != nil {
			out = append(out, fmt.Sprintf("%s: errors %.1f%% → %.1f%%", endpointName(errs), errs.Base.ErrorPct, errs.New.ErrorPct))
		}
		if gone != nil {
			out = append(out, fmt.Sprintf("%s no longer seen (was %.1f req/s)", endpointName(gone), gone.Base.RateRPS))
		}
	}
	if c := d.CPU; c != nil {
		var up, down *analyze.FunctionDiff
		for i := range c.Functions {
			f := &c.Functions[i]
			if !f.Significant {
				continue
			}
			if f.Change > 0 && (up == nil || f.Change > up.Change) {
				up = f
			}
			if f.Change < 0 && (down == nil || f.Change < down.Change) {
				down = f
			}
		}
		for _, f := range []*analyze.FunctionDiff{up, down} {
			if f != nil {
				out = append(out, fmt.Sprintf("CPU: %s self %.1f%% → %.1f%% of samples (%+.1f points)", f.Name, f.BaseShare, f.NewShare, f.Change))
			}
		}
		if c.BaseCores > 0 && c.NewCores > 0 && (c.NewCores > 1.1*c.BaseCores || c.NewCores < c.BaseCores/1.1) {
			out = append(out, fmt.Sprintf("CPU use %.2f → %.2f cores", c.BaseCores, c.NewCores))
		}
	}
	if o := d.OffCPU; o != nil {
		if grew(o.BaseRunqueue, o.NewRunqueue, 20) {
			out = append(out, fmt.Sprintf("CPU contention: threads waited %.0f → %.0f ms/s in the run queue", o.BaseRunqueue, o.NewRunqueue))
		}
		var top *analyze.OffCPUClassDiff
		for i := range o.Classes {
			c := &o.Classes[i]
			if grew(c.BaseBlocked, c.NewBlocked, 50) && (top == nil || c.NewBlocked-c.BaseBlocked > top.NewBlocked-top.BaseBlocked) {
				top = c
			}
		}
		if top != nil {
			out = append(out, fmt.Sprintf("off-CPU: threads blocked %.0f → %.0f ms/s in %s waits", top.BaseBlocked, top.NewBlocked, top.Class))
		}
	}
	if m := d.Mem; m != nil && len(m.Sites) > 0 {
		s := &m.Sites[0]
		what := "grew by"
		if s.Base == nil {
			what = "new, holds"
		}
		out = append(out, fmt.Sprintf("memory: %s in %s %s %s at the end of the window", siteName(s), s.Process, what, HumanBytes(s.GrowthBytes)))
	}
	if len(out) == 0 {
		out = append(out, "nothing changed beyond noise")
	}
	return out
}

// tailGrew tells a p99 that grew from one that moved a little: by at least
// a millisecond and a tenth.
func tailGrew(e *analyze.EndpointDiff) bool {
	return e.Change.P99 >= 1 && e.Change.P99 >= 0.1*e.Base.P99
}

// grew tells a figure that grew by half and by at least floor.
func grew(base, cur, floor float64) bool {
	return cur-base >= floor && cur >= 1.5*base
}

// causeText names the part of a request's time that grew (", mostly
// sleep: +300 ms per request"), or "".
func causeText(c *analyze.EndpointChange) string {
	if c == nil || c.Cause == "" {
		return ""
	}
	what := c.Cause
	switch what {
	case "on_cpu":
		what = "on the CPU"
	case "runqueue":
		what = "waiting for a CPU"
	default:
		what = "blocked: " + what
	}
	return fmt.Sprintf(", mostly %s (%s per request)", what, signedMs(c.TimeSplit[c.Cause]))
}

func endpointName(e *analyze.EndpointDiff) string {
	who := e.Process
	if e.Workload != "" {
		who = e.Workload + " " + e.Process
	}
	return fmt.Sprintf("%s %s (%s, %s)", e.Method, e.Route, e.Role, who)
}

func siteName(s *analyze.MemSiteDiff) string {
	if len(s.Stack) == 0 {
		return "[no stack]"
	}
	return s.Stack[0]
}

func signedMs(v float64) string {
	if v < 0 {
		return "-" + fmtMs(-v)
	}
	return "+" + fmtMs(v)
}

// WriteDiffText prints a comparison on a terminal: both sides, what
// changed, then the endpoints by impact, the functions by share change and
// the grown leak sites. Workload strings go through TerminalSafe.
func WriteDiffText(out io.Writer, d *analyze.Diff) {
	safe := TerminalSafe
	for _, s := range []struct {
		label string
		side  analyze.DiffSide
	}{{"base", d.Base}, {"new ", d.New}} {
		fmt.Fprintf(out, "%s: %s on %s, %s from %s (%s)\n", s.label, safe(s.side.Archive), safe(s.side.Host),
			time.Duration(s.side.DurationS*float64(time.Second)).Round(time.Millisecond), s.side.Start.UTC().Format("2006-01-02 15:04:05 MST"), safe(s.side.Filter))
	}
	for _, s := range []struct {
		label string
		side  analyze.DiffSide
	}{{"base", d.Base}, {"new", d.New}} {
		for _, w := range s.side.Warnings {
			fmt.Fprintf(out, "warning (%s): %s\n", s.label, safe(w))
		}
	}
	fmt.Fprintln(out, "\nWhat changed:")
	for _, c := range WhatChanged(d) {
		fmt.Fprintf(out, "  - %s\n", safe(c))
	}
	if h := d.HTTP; h != nil {
		fmt.Fprintf(out, "\nHTTP: %d → %d requests (%.1f → %.1f req/s), by p99 added × request rate\n",
			h.BaseRequests, h.NewRequests, h.BaseRateRPS, h.NewRateRPS)
		tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "p99 base\tp99 new\tchange\tp50 base\tp50 new\treq/s base\treq/s new\terr% base\terr% new\t  role method route (process)")
		for i := range h.Endpoints {
			if i == diffTextEndpoints {
				fmt.Fprintf(tw, "\t\t\t\t\t\t\t\t\t  ... %d more (--json lists all)\n", len(h.Endpoints)-i)
				break
			}
			e := &h.Endpoints[i]
			col := func(s *analyze.EndpointSide, f func(*analyze.EndpointSide) string) string {
				if s == nil {
					return "-"
				}
				return f(s)
			}
			p99 := func(s *analyze.EndpointSide) string { return fmt.Sprintf("%.2f", s.P99) }
			p50 := func(s *analyze.EndpointSide) string { return fmt.Sprintf("%.2f", s.P50) }
			rps := func(s *analyze.EndpointSide) string { return fmt.Sprintf("%.1f", s.RateRPS) }
			errp := func(s *analyze.EndpointSide) string { return fmt.Sprintf("%.1f", s.ErrorPct) }
			change := "new"
			switch {
			case e.Change != nil:
				change = fmt.Sprintf("%+.2f", e.Change.P99)
			case e.New == nil:
				change = "gone"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t  %s\n", col(e.Base, p99), col(e.New, p99), change,
				col(e.Base, p50), col(e.New, p50), col(e.Base, rps), col(e.New, rps), col(e.Base, errp), col(e.New, errp), safe(endpointName(e)+causeText(e.Change)))
		}
		tw.Flush()
	}
	if c := d.CPU; c != nil {
		fmt.Fprintf(out, "\nCPU: %d → %d samples", c.BaseSamples, c.NewSamples)
		if c.BaseCores > 0 && c.NewCores > 0 {
			fmt.Fprintf(out, " (%.2f → %.2f cores)", c.BaseCores, c.NewCores)
		}
		fmt.Fprintln(out, "; self share of each side's samples, largest change first, * beyond noise")
		fmt.Fprintf(out, "  %6s  %6s  %7s  %6s  %6s   %s\n", "BASE", "NEW", "CHANGE", "TOTAL", "TOTAL", "FUNCTION")
		for i := range c.Functions {
			if i == diffTextFunctions {
				break
			}
			f := &c.Functions[i]
			mark := " "
			if f.Significant {
				mark = "*"
			}
			fmt.Fprintf(out, "  %5.1f%%  %5.1f%%  %+6.1f%s  %5.1f%%  %5.1f%%   %s\n", f.BaseShare, f.NewShare, f.Change, mark,
				f.BaseTotalShare, f.NewTotalShare, safe(f.Name))
		}
	}
	if o := d.OffCPU; o != nil {
		fmt.Fprintf(out, "\nOff-CPU, ms per second of the window: blocked %.0f → %.0f, run queue %.0f → %.0f\n",
			o.BaseBlocked, o.NewBlocked, o.BaseRunqueue, o.NewRunqueue)
		fmt.Fprintf(out, "  %-11s  %-21s  %s\n", "CLASS", "BLOCKED (base → new)", "RUN QUEUE (base → new)")
		for _, c := range o.Classes {
			fmt.Fprintf(out, "  %-11s  %8.1f → %-8.1f    %8.1f → %-8.1f\n", c.Class, c.BaseBlocked, c.NewBlocked, c.BaseRunqueue, c.NewRunqueue)
		}
	}
	if m := d.Mem; m != nil {
		fmt.Fprintf(out, "\nMemory: outstanding heap %s → %s, mapped %s → %s; sites new or grown:\n",
			HumanBytes(int64(m.BaseOutstandingBytes)), HumanBytes(int64(m.NewOutstandingBytes)),
			HumanBytes(int64(m.BaseMappedBytes)), HumanBytes(int64(m.NewMappedBytes)))
		if len(m.Sites) == 0 {
			fmt.Fprintln(out, "  none")
		}
		for i := range m.Sites {
			if i == diffTextSites {
				break
			}
			s := &m.Sites[i]
			base := "new"
			if s.Base != nil {
				base = HumanBytes(int64(s.Base.Bytes))
			}
			site := "[no stack]"
			if len(s.Stack) > 0 {
				site = strings.Join(s.Stack[:min(3, len(s.Stack))], " < ")
			}
			fmt.Fprintf(out, "  %11s  (%s → %s)  %-4s %s: %s\n", "+"+HumanBytes(s.GrowthBytes), base, HumanBytes(int64(s.New.Bytes)),
				s.Kind, safe(s.Process), safe(site))
		}
	}
}
