package main

import (
	"fmt"
	"io"

	"github.com/bpfsnap/bpfsnap/analyze"
	"github.com/bpfsnap/bpfsnap/report"
)

// Rows printed in the terminal summary; --json has the full lists.
const (
	cpuTopProcesses = 10
	cpuTopFunctions = 15
)

// printCPU prints the cpu section: sample totals, the busiest processes and
// the top functions by self samples.
func printCPU(out io.Writer, c *analyze.CPUSummary) {
	if c == nil {
		return
	}
	safe := report.TerminalSafe
	fmt.Fprintf(out, "\nCPU: %d samples", c.Samples)
	if c.PeriodNs > 0 {
		fmt.Fprintf(out, " at %d Hz", int64(1e9)/c.PeriodNs)
	}
	if c.SamplesWithoutStack > 0 {
		fmt.Fprintf(out, ", %d without a stack", c.SamplesWithoutStack)
	}
	if c.UnresolvedFrames > 0 {
		fmt.Fprintf(out, ", %d unresolved frames", c.UnresolvedFrames)
	}
	fmt.Fprintln(out)
	if c.Samples == 0 {
		return
	}
	fmt.Fprintf(out, "  %8s  %6s  %8s  %s\n", "PID", "SHARE", "SAMPLES", "PROCESS")
	for i, p := range c.Processes {
		if i == cpuTopProcesses {
			fmt.Fprintf(out, "  ... %d more processes\n", len(c.Processes)-i)
			break
		}
		fmt.Fprintf(out, "  %8d  %5.1f%%  %8d  %s\n", p.PID, p.Pct, p.Samples, safe(p.Comm))
	}
	fmt.Fprintf(out, "  %6s  %6s  %s\n", "SELF", "TOTAL", "FUNCTION")
	for i, f := range c.Functions {
		if i == cpuTopFunctions {
			break
		}
		fmt.Fprintf(out, "  %5.1f%%  %5.1f%%  %s\n", f.SelfPct, f.TotalPct, safe(f.Name))
	}
}
