package main

import (
	"errors"
	"io"

	"github.com/spf13/cobra"

	"github.com/bpfsnap/bpfsnap/analyze"
	"github.com/bpfsnap/bpfsnap/report"
)

func newFlamegraphCmd() *cobra.Command {
	var (
		flags   analysisFlags
		out     string
		folded  bool
		perPID  bool
		title   string
		minWide float64
		offCPU  bool
		diff    bool
		sides   diffSides
	)
	cmd := &cobra.Command{
		Use:   "flamegraph ARCHIVE [-o FILE.svg] [--folded] | flamegraph --diff BASE NEW",
		Short: "Draw an interactive SVG flame graph (or folded stacks) of the CPU samples",
		Long: `flamegraph turns an archive's CPU samples into a self-contained interactive
SVG flame graph (click a frame to zoom, "Reset zoom", "Search" or Ctrl-F with
the matched percentage, tooltips with samples and percentage), or with
--folded into folded stacks ("process;frame;...;leaf COUNT", root first,
kernel frames suffixed _[k]) for other tools.

With --off-cpu it draws where threads waited instead (capture -p offcpu),
weighted by microseconds off the CPU: under each process a frame per wait
class ([lock], [disk], [network], [sleep], [page_fault], [idle],
[preempted], [other]), then the stack the thread blocked in, and a last
[run queue] frame for the wait for a CPU after the wakeup.

With --diff BASE NEW it draws a differential flame graph of the CPU samples:
widths are NEW's samples, colours the change of each frame's self share of
the samples (red grown, blue shrunk, grey within sampling noise); --folded
then prints "stack BASE_COUNT NEW_COUNT" lines, as FlameGraph's
difffolded.pl does. --base-X and --new-X replace a selector on one side.`,
		Example: "  bpfsnap flamegraph incident.bpfsnap -o cpu.svg\n" +
			"  bpfsnap flamegraph incident.bpfsnap --pid 4242 --from 5s --to 10s -o slice.svg\n" +
			"  bpfsnap flamegraph incident.bpfsnap --folded > cpu.folded\n" +
			"  bpfsnap flamegraph incident.bpfsnap --off-cpu -o offcpu.svg\n" +
			"  bpfsnap flamegraph --diff before.bpfsnap after.bpfsnap -o diff.svg",
		Args: func(cmd *cobra.Command, args []string) error {
			if diff {
				return cobra.ExactArgs(2)(cmd, args)
			}
			return cobra.ExactArgs(1)(cmd, args)
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			if diff {
				if perPID || offCPU {
					return errors.New("--diff compares CPU samples by name: not with --per-pid (pids differ between captures) or --off-cpu")
				}
				base, cur := sides.requests(cmd, flags.request(analyze.SectionCPU))
				return writeCPUDiff(cmd, args, out, base, cur, report.CPUFlameOptions{Folded: folded, Title: title, MinWidth: minWide})
			}
			if offCPU {
				return writeOffCPU(cmd, args[0], out, &flags, report.OffCPUFlameOptions{Folded: folded, Title: title, MinWidth: minWide})
			}
			return writeCPU(cmd, args[0], out, &flags, func(w io.Writer, s *analyze.Summary) error {
				return report.WriteCPUFlameGraph(w, s, report.CPUFlameOptions{Folded: folded, PerPID: perPID, Title: title, MinWidth: minWide})
			})
		},
	}
	flags.bind(cmd)
	sides.bind(cmd)
	f := cmd.Flags()
	f.BoolVar(&diff, "diff", false, "compare two archives, BASE NEW: a differential flame graph")
	f.StringVarP(&out, "output", "o", "", "write to this file instead of standard output")
	f.BoolVar(&folded, "folded", false, "print folded stacks instead of SVG")
	f.BoolVar(&perPID, "per-pid", false, "name the root frame of each stack comm-PID, keeping same-named processes apart")
	f.StringVar(&title, "title", "", "title of the graph")
	f.Float64Var(&minWide, "min-width", 0.1, "omit frames narrower than this many pixels")
	f.BoolVar(&offCPU, "off-cpu", false, "draw off-CPU time (where threads blocked or waited for a CPU) instead of CPU samples")
	return cmd
}

// writeOffCPU draws the off-CPU flame graph: the off-CPU section only,
// refused before the output file is created when it is empty.
func writeOffCPU(cmd *cobra.Command, archive, path string, flags *analysisFlags, o report.OffCPUFlameOptions) error {
	req := flags.request(analyze.SectionOffCPU)
	req.Slices = 0
	s, err := analyze.Load(archive, req)
	if err != nil {
		return err
	}
	if _, err := s.RequireOffCPU(); err != nil {
		return err
	}
	w, finish, err := openOutput(cmd, path)
	if err != nil {
		return err
	}
	return finish(report.WriteOffCPUFlameGraph(w, s, o))
}
