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
		growth  bool
	)
	cmd := &cobra.Command{
		Use:   "flamegraph ARCHIVE [-o FILE.svg] [--folded]",
		Short: "Draw an interactive SVG flame graph (or folded stacks) of the CPU samples, or of memory growth",
		Long: `flamegraph turns an archive's CPU samples into a self-contained interactive
SVG flame graph (click a frame to zoom, "Reset zoom", "Search" or Ctrl-F with
the matched percentage, tooltips with samples and percentage), or with
--folded into folded stacks ("process;frame;...;leaf COUNT", root first,
kernel frames suffixed _[k]) for other tools. With --growth it draws the
memory growth of a -p growth capture instead: each stack as wide as the
bytes it made resident (page faults and the other growth of anonymous and
shared memory), folded counts in bytes.`,
		Example: "  bpfsnap flamegraph incident.bpfsnap -o cpu.svg\n" +
			"  bpfsnap flamegraph incident.bpfsnap --growth -o growth.svg\n" +
			"  bpfsnap flamegraph incident.bpfsnap --pid 4242 --from 5s --to 10s -o slice.svg\n" +
			"  bpfsnap flamegraph incident.bpfsnap --folded > cpu.folded",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts := report.CPUFlameOptions{Folded: folded, PerPID: perPID, Title: title, MinWidth: minWide}
			if growth {
				if perPID {
					return errors.New("--per-pid applies to CPU flame graphs, not --growth")
				}
				return writeGrowth(cmd, args[0], out, &flags, func(w io.Writer, s *analyze.Summary) error {
					return report.WriteGrowthFlameGraph(w, s, opts)
				})
			}
			return writeCPU(cmd, args[0], out, &flags, func(w io.Writer, s *analyze.Summary) error {
				return report.WriteCPUFlameGraph(w, s, opts)
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
	f.BoolVar(&growth, "growth", false, "draw the memory growth (-p growth) instead: stacks weighted by the bytes they made resident")
	return cmd
}
