package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/bpfsnap/bpfsnap/analyze"
	"github.com/bpfsnap/bpfsnap/formats"
	"github.com/bpfsnap/bpfsnap/report"
)

// analysisFlags are shared by the verbs that analyze an archive.
type analysisFlags struct {
	pids           []uint
	from, to       string
	debugDir       string
	namespace, pod string
}

func (f *analysisFlags) bind(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.UintSliceVar(&f.pids, "pid", nil, "only these processes (repeatable, comma-separated)")
	fl.StringVar(&f.from, "from", "", "start of the time slice: offset from the window start (5s) or RFC 3339 time")
	fl.StringVar(&f.to, "to", "", "end of the time slice, like --from")
	fl.StringVar(&f.namespace, "namespace", "", "only processes of this Kubernetes namespace")
	fl.StringVar(&f.pod, "pod", "", "only processes of this pod (NAME or NAMESPACE/NAME)")
	fl.StringVar(&f.debugDir, "debug-dir", "", "directory of debug files, looked up by build id, for unresolved frames")
}

// options resolves the flags against one archive: the time bounds against
// its window and the Kubernetes selectors against its processes. Every
// reading verb calls it, so each of them honours every selector.
func (f *analysisFlags) options(a *formats.Archive) (analyze.Options, error) {
	m := a.Manifest()
	var o analyze.Options
	for _, p := range f.pids {
		o.Filter.PIDs = append(o.Filter.PIDs, uint32(p))
	}
	var err error
	if o.Filter.From, err = analyze.ParseOffset(f.from, m); err != nil {
		return o, fmt.Errorf("--from: %w", err)
	}
	if o.Filter.To, err = analyze.ParseOffset(f.to, m); err != nil {
		return o, fmt.Errorf("--to: %w", err)
	}
	if o.Filter.To > 0 && o.Filter.To <= o.Filter.From {
		return o, fmt.Errorf("--to %s is not after --from %s", f.to, f.from)
	}
	o.DebugDir = f.debugDir
	o.Filter.Namespace, o.Filter.Pod = f.namespace, f.pod
	if err := analyze.ResolveK8sArchive(a, &o.Filter); err != nil {
		return o, err
	}
	return o, nil
}

// openAndAnalyze opens one archive and runs every analysis on it.
func openAndAnalyze(path string, flags *analysisFlags) (*analyze.Summary, error) {
	a, err := formats.Open(path)
	if err != nil {
		return nil, err
	}
	defer a.Close()
	opts, err := flags.options(a)
	if err != nil {
		return nil, err
	}
	return analyze.Analyze(a, opts)
}

func newAnalyzeCmd() *cobra.Command {
	var (
		flags  analysisFlags
		asJSON bool
	)
	cmd := &cobra.Command{
		Use:   "analyze ARCHIVE [--json]",
		Short: "Summarize an archive: processes, CPU, HTTP latency, memory",
		Long: `analyze runs every analysis that applies to the archive and prints a summary:
processes, and per probe set the CPU hot functions, HTTP latency percentiles
per route and memory leak candidates. It needs no privileges and runs on any OS.`,
		Example: "  bpfsnap analyze incident.bpfsnap\n  bpfsnap analyze --json --pid 4242 --from 5s --to 15s incident.bpfsnap",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := openAndAnalyze(args[0], &flags)
			if err != nil {
				return err
			}
			if asJSON {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(s)
			}
			printSummary(cmd.OutOrStdout(), s)
			return nil
		},
	}
	flags.bind(cmd)
	cmd.Flags().BoolVar(&asJSON, "json", false, "machine-readable output")
	return cmd
}

func printSummary(out io.Writer, s *analyze.Summary) {
	safe := report.TerminalSafe
	m := s.Manifest
	fmt.Fprintf(out, "%s: %s on %s (kernel %s), %d processes\n", safe(s.Archive),
		m.Window.Duration().Round(time.Millisecond), safe(m.Host), safe(m.Kernel), len(s.Processes))
	for _, w := range s.Warnings {
		fmt.Fprintf(out, "warning: %s\n", safe(w))
	}
	if h := s.HTTP; h != nil {
		fmt.Fprintf(out, "\nHTTP: %d requests (%d unanswered at the end of the window), slowest p99 first\n", h.Requests, h.Unanswered)
		tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "count\terr\trps\tp50 ms\tp90 ms\tp99 ms\tp99.9 ms\tmax ms\t  role method route (process)")
		for i, e := range h.Endpoints {
			if i == 20 {
				break
			}
			fmt.Fprintf(tw, "%d\t%d\t%.1f\t%.2f\t%.2f\t%.2f\t%.2f\t%.2f\t  %s %s %s (%s [%d])\n", e.Count, e.Errors, e.RateRPS,
				e.P50, e.P90, e.P99, e.P999, e.Max, e.Role, safe(e.Method), safe(e.Route), safe(e.Process), e.PID)
		}
		tw.Flush()
	}
	printCPU(out, s.CPU)
	if mem := s.Mem; mem != nil {
		fmt.Fprintf(out, "\nMemory: %d allocations, %d frees (%d of blocks from before the window); outstanding at the end: %s in %d blocks\n",
			mem.Allocations, mem.Frees, mem.FreesOfUnknown, report.HumanBytes(int64(mem.OutstandingBytes)), mem.OutstandingBlocks)
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
			fmt.Fprintf(out, "  %10s in %6d blocks, oldest %5.1fs, %-7s %s [%d]: %s\n", report.HumanBytes(int64(l.Bytes)), l.Allocations,
				l.OldestAgeS, trend, safe(l.Process), l.PID, safe(site))
		}
		if mem.Estimated {
			fmt.Fprintf(out, "  (estimates: byte-sampled, one sample per %s allocated on average)\n", report.HumanBytes(int64(mem.SampleBytes)))
		}
		if mem.Maps > 0 || mem.Unmaps > 0 {
			fmt.Fprintf(out, "Mappings: %d mmap/brk, %d munmap (%d of memory from before the window); outstanding: %s mapped by the program, %s by the allocator\n",
				mem.Maps, mem.Unmaps, mem.UnmapsOfUnknown, report.HumanBytes(int64(mem.MappedBytes)), report.HumanBytes(int64(mem.AllocatorMappedBytes)))
			for i, l := range mem.Mappings {
				if i == 5 || l.ByAllocator {
					break
				}
				site := "[no stack]"
				if len(l.Stack) > 0 {
					site = strings.Join(l.Stack[:min(3, len(l.Stack))], " < ")
				}
				fmt.Fprintf(out, "  %10s in %6d %-4s regions, oldest %5.1fs, %s [%d]: %s\n", report.HumanBytes(int64(l.Bytes)), l.Allocations,
					l.Kind, l.OldestAgeS, safe(l.Process), l.PID, safe(site))
			}
		}
	}
}
