package report

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/bpfsnap/bpfsnap/analyze"
	"github.com/bpfsnap/bpfsnap/formats"
)

// WriteSummaryText prints the summary `analyze` shows on a terminal: the
// window, warnings, and per probe set the worst endpoints, the hot
// functions and the leak candidates. Every workload string goes through
// TerminalSafe.
func WriteSummaryText(out io.Writer, s *analyze.Summary) {
	safe := TerminalSafe
	m := s.Manifest
	fmt.Fprintf(out, "%s: %s on %s (kernel %s), %d processes\n", safe(s.Archive),
		m.Window.Duration().Round(time.Millisecond), safe(m.Host), safe(m.Kernel), len(s.Processes))
	for _, w := range s.Warnings {
		fmt.Fprintf(out, "warning: %s\n", safe(w))
	}
	if h := s.HTTP; h != nil {
		fmt.Fprintf(out, "\nHTTP: %d requests (%d unanswered at the end of the window", h.Requests, h.Unanswered)
		if h.EndUnknown > 0 {
			fmt.Fprintf(out, ", %d without their response's last byte", h.EndUnknown)
		}
		fmt.Fprintln(out, "), slowest p99 first")
		if h.TLSUndecoded > 0 {
			fmt.Fprintf(out, "%d TLS connections not decoded (a TLS library bpfsnap does not read: statically linked BoringSSL, Java, rustls...; their requests are missing)", h.TLSUndecoded)
			if h.TLSUndecodedBy != "" {
				fmt.Fprintf(out, ": %s", safe(h.TLSUndecodedBy))
			}
			fmt.Fprintln(out)
		}
		if h.NamesUnknown > 0 {
			fmt.Fprintf(out, "%d HTTP/2 requests without a name (their connection's header compression began before the window): under %s\n", h.NamesUnknown, formats.PathNameUnknown)
		}
		if h.Measure == analyze.MeasureFirstByte {
			fmt.Fprintln(out, "latency: to the response's first byte (this archive's recorder saw no more)")
		} else {
			fmt.Fprintln(out, "latency: request's first byte to response's last byte; ttfb: to its first byte; busy: the rate over the span the endpoint was seen")
		}
		tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "count\terr\trps\tbusy\tp50 ms\tp90 ms\tp99 ms\tp99.9 ms\tmax ms\tttfb p50\tttfb p99\t  role method route (process)")
		for i, e := range h.Endpoints {
			if i == 20 {
				break
			}
			proto := ""
			if e.Protocol != "" && (e.Protocol != formats.ProtocolHTTP1 || e.TLS) {
				proto = " [" + ProtocolLabel(e) + "]"
			}
			fmt.Fprintf(tw, "%d\t%d\t%.1f\t%.1f\t%.2f\t%.2f\t%.2f\t%.2f\t%.2f\t%.2f\t%.2f\t  %s %s %s%s (%s [%d])\n", e.Count, e.Errors, e.RateRPS, e.BusyRPS,
				e.P50, e.P90, e.P99, e.P999, e.Max, e.TTFBP50, e.TTFBP99, e.Role, safe(e.Method), safe(e.Route), proto, safe(e.Process), e.PID)
		}
		tw.Flush()
		writeTimeSplitsText(out, h)
	}
	writeCPUText(out, s.CPU)
	writeOffCPUText(out, s.OffCPU)
	writeJITText(out, s.JIT)
	writeGrowthText(out, s.Growth)
	if mem := s.Mem; mem != nil {
		fmt.Fprintf(out, "\nMemory: %d allocations, %d frees (%d of blocks from before the window); outstanding at the end: %s in %d blocks\n",
			mem.Allocations, mem.Frees, mem.FreesOfUnknown, HumanBytes(int64(mem.OutstandingBytes)), mem.OutstandingBlocks)
		for i, l := range mem.Leaks {
			if i == 10 {
				break
			}
			trend := "flat"
			if l.Steady {
				trend = "growing"
			}
			site := "[no stack]"
			if len(l.Stack) > 0 {
				site = strings.Join(l.Stack[:min(3, len(l.Stack))], " < ")
			}
			fmt.Fprintf(out, "  %10s in %6d blocks, oldest %5.1fs, %-7s %s [%d]: %s\n", HumanBytes(int64(l.Bytes)), l.Allocations,
				l.OldestAgeS, trend, safe(l.Process), l.PID, safe(site))
		}
		if mem.Estimated {
			fmt.Fprintf(out, "  (estimates: byte-sampled, one sample per %s allocated on average)\n", HumanBytes(int64(mem.SampleBytes)))
		}
		for _, o := range mem.OutsideLibc {
			by := o.Runtime
			if by == "" {
				by = "an allocator of its own"
			}
			fmt.Fprintf(out, "  %s [%d] allocates outside libc (%s): %s of its own mappings grew steadily (%s mapped or reserved), %d allocations through libc; %s\n",
				safe(o.Process), o.PID, safe(by), HumanBytes(int64(o.GrowingBytes)), HumanBytes(int64(o.MappedBytes)), o.LibcAllocations, o.Hint)
		}
		if mem.Maps > 0 || mem.Unmaps > 0 {
			fmt.Fprintf(out, "Mappings: %d mmap/brk, %d munmap (%d of memory from before the window); outstanding: %s mapped by the program, %s by the allocator\n",
				mem.Maps, mem.Unmaps, mem.UnmapsOfUnknown, HumanBytes(int64(mem.MappedBytes)), HumanBytes(int64(mem.AllocatorMappedBytes)))
			for i, l := range mem.Mappings {
				if i == 5 || l.ByAllocator {
					break
				}
				site := "[no stack]"
				if len(l.Stack) > 0 {
					site = strings.Join(l.Stack[:min(3, len(l.Stack))], " < ")
				}
				fmt.Fprintf(out, "  %10s in %6d %-4s regions, oldest %5.1fs, %s [%d]: %s\n", HumanBytes(int64(l.Bytes)), l.Allocations,
					l.Kind, l.OldestAgeS, safe(l.Process), l.PID, safe(site))
			}
		}
	}
}

// ProtocolLabel names an endpoint's protocol for people: HTTP/1.x, HTTP/2
// or gRPC, with " · TLS" when read from a TLS library ("" for archives of
// format 1, which did not record it).
func ProtocolLabel(e analyze.HTTPEndpoint) string {
	var p string
	switch e.Protocol {
	case formats.ProtocolHTTP1:
		p = "HTTP/1.x"
	case formats.ProtocolHTTP2:
		p = "HTTP/2"
	case formats.ProtocolGRPC:
		p = "gRPC"
	default:
		p = e.Protocol
	}
	if e.TLS {
		p += " · TLS"
	}
	return p
}

// Rows printed in the terminal summary; --json has the full lists.
const (
	cpuTopProcesses = 10
	cpuTopFunctions = 15
)

// writeCPUText prints the cpu section: sample totals, the busiest processes and
// the top functions by self samples.
func writeCPUText(out io.Writer, c *analyze.CPUSummary) {
	if c == nil {
		return
	}
	safe := TerminalSafe
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
	if u := c.Unwind; u != nil {
		fmt.Fprintf(out, "  %s\n", unwindLine(u))
	}
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

// writeJITText says, for each process whose JIT code stayed unnamed, how
// to have its runtime name it.
func writeJITText(out io.Writer, jit []analyze.JITProcess) {
	for _, j := range jit {
		if j.Hint == "" {
			continue
		}
		rt := j.Runtime
		if rt == "" {
			rt = "unknown runtime"
		}
		fmt.Fprintf(out, "  %s [%d]: %d of %d samples in JIT code (%s) have unnamed frames: %s\n",
			TerminalSafe(j.Process), j.PID, j.Samples-j.NamedSamples, j.Samples, TerminalSafe(rt), j.Hint)
	}
}

// unwindLine says how many user stacks reached their thread's root.
func unwindLine(u *analyze.CPUUnwind) string {
	s := fmt.Sprintf("user stacks reaching a thread root: %.1f%% (%d of %d, --unwind %s", u.RootedPct, u.Rooted, u.Walks, TerminalSafe(u.Mode))
	if u.Rooted < u.Walks {
		s += "; the others stop early, counted in the cpu.unwind_* drops"
	}
	return s + ")"
}

// maxListedProcesses keeps the human output to a screenful; --json has all.
const maxListedProcesses = 40

// WriteInspectionText prints what `inspect` shows on a terminal.
func WriteInspectionText(out io.Writer, doc *analyze.Inspection) {
	m := doc.Manifest
	safe := TerminalSafe
	fmt.Fprintf(out, "archive   %s\n", safe(doc.Path))
	fmt.Fprintf(out, "format    v%d, bpfsnap %s, complete=%v", m.FormatVersion, safe(m.BpfsnapVersion), m.Complete)
	if m.Recovered {
		fmt.Fprint(out, " (recovered)")
	}
	fmt.Fprintf(out, "\nhost      %s, kernel %s, %s\n", safe(m.Host), safe(m.Kernel), safe(m.Arch))
	fmt.Fprintf(out, "window    %s, %s (%s)\n", m.Window.StartWall.Format(time.RFC3339), m.Window.Duration().Round(time.Millisecond), safe(m.Window.EndReason))
	var probes []string
	for _, p := range m.Probes {
		s := p.Name
		if !p.Attached {
			s += " (FAILED: " + p.Error + ")"
		}
		probes = append(probes, s)
	}
	fmt.Fprintf(out, "probes    %s\n", safe(strings.Join(probes, ", ")))
	if len(m.Targets.PIDs) > 0 || len(m.Targets.Command) > 0 {
		fmt.Fprintf(out, "targets   pids %v command %s\n", m.Targets.PIDs, safe(strings.Join(m.Targets.Command, " ")))
	}
	if u := analyze.CPUUnwindOf(m); u != nil {
		fmt.Fprintf(out, "cpu       %s\n", unwindLine(u))
	}
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(out, "\ntables")
	fmt.Fprintln(tw, "name\trows\tbytes\tchunks\t")
	for _, t := range doc.Tables {
		fmt.Fprintf(tw, "%s\t%d\t%s\t%d\t\n", t.Name, t.Rows, HumanBytes(t.Bytes), t.Chunks)
	}
	tw.Flush()
	fmt.Fprintln(out, "\ndrops")
	drops := m.SortedDrops()
	if len(drops) == 0 {
		fmt.Fprintln(out, "  none")
	}
	for _, d := range drops {
		// The class and meaning come from formats' drop catalog: lost
		// events read differently from a stack cut short.
		r, _ := formats.LookupDrop(d.Reason)
		meaning := r.Meaning
		if meaning == "" {
			meaning = "not in this version's catalog"
		}
		fmt.Fprintf(out, "  %-32s %d  %s: %s\n", safe(d.Reason), d.Count, r.Class, meaning)
	}
	for _, w := range m.Warnings {
		fmt.Fprintf(out, "warning: %s\n", safe(w))
	}
	fmt.Fprintf(out, "\nprocesses (%d)\n", len(doc.Processes))
	tw = tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  pid\tppid\tcomm\texe\tcgroup\texit")
	for i, p := range doc.Processes {
		if i == maxListedProcesses {
			fmt.Fprintf(tw, "  ... %d more (--json lists all)\n", len(doc.Processes)-i)
			break
		}
		exit := ""
		if p.Exited {
			exit = fmt.Sprintf("%d", p.ExitCode)
		}
		fmt.Fprintf(tw, "  %d\t%d\t%s\t%s\t%s\t%s\n", p.PID, p.PPID, safe(p.Comm), safe(p.Exe), safe(p.Cgroup), exit)
	}
	tw.Flush()
}
