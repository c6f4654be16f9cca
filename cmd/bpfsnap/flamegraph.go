package main

import (
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
	)
	cmd := &cobra.Command{
		Use:   "flamegraph ARCHIVE [-o FILE.svg] [--folded]",
		Short: "Draw an interactive SVG flame graph (or folded stacks) of the CPU samples",
		Long: `flamegraph turns an archive's CPU samples into a self-contained interactive
SVG flame graph (click a frame to zoom, "Reset zoom", "Search" or Ctrl-F with
the matched percentage, tooltips with samples and percentage), or with
--folded into folded stacks ("process;frame;...;leaf COUNT", root first,
kernel frames suffixed _[k]) for other tools.`,
		Example: "  bpfsnap flamegraph incident.bpfsnap -o cpu.svg\n" +
			"  bpfsnap flamegraph incident.bpfsnap --pid 4242 --from 5s --to 10s -o slice.svg\n" +
			"  bpfsnap flamegraph incident.bpfsnap --folded > cpu.folded",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return writeCPU(cmd, args[0], out, &flags, func(w io.Writer, s *analyze.Summary) error {
				return report.WriteCPUFlameGraph(w, s, report.CPUFlameOptions{Folded: folded, PerPID: perPID, Title: title, MinWidth: minWide})
			})
		},
	}
	flags.bind(cmd)
	f := cmd.Flags()
	f.StringVarP(&out, "output", "o", "", "write to this file instead of standard output")
	f.BoolVar(&folded, "folded", false, "print folded stacks instead of SVG")
	f.BoolVar(&perPID, "per-pid", false, "name the root frame of each stack comm-PID, keeping same-named processes apart")
	f.StringVar(&title, "title", "", "title of the graph")
	f.Float64Var(&minWide, "min-width", 0.1, "omit frames narrower than this many pixels")
	return cmd
}
