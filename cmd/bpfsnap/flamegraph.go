package main

import (
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"github.com/bpfsnap/bpfsnap/analyze"
	"github.com/bpfsnap/bpfsnap/formats"
	"github.com/bpfsnap/bpfsnap/report"
)

func newFlameGraphCmd() *cobra.Command {
	var (
		flags  analysisFlags
		output string
		folded bool
	)
	cmd := &cobra.Command{
		Use:   "flamegraph ARCHIVE [-o FILE.svg] [--folded] [--pid PID] [--from T --to T]",
		Short: "Draw CPU samples as an interactive SVG flame graph, or print folded stacks",
		Long: `flamegraph aggregates the archive's CPU samples by stack. By default it writes
a self-contained interactive SVG (click to zoom, Ctrl-F or the search button to
highlight, hover for counts); --folded prints "process;frame;...;leaf COUNT"
lines (root first, kernel frames marked _[k]) for other tools.`,
		Example: `  bpfsnap flamegraph incident.bpfsnap -o cpu.svg
  bpfsnap flamegraph incident.bpfsnap --folded --pid 4242 --from 10s --to 20s`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			a, err := formats.Open(args[0])
			if err != nil {
				return err
			}
			defer a.Close()
			opts, err := flags.options(a.Manifest())
			if err != nil {
				return err
			}
			procs, err := analyze.Processes(a)
			if err != nil {
				return err
			}
			prof, _, err := analyze.CPUProfile(a, opts, procs)
			if err != nil {
				return err
			}
			if prof == nil || prof.Total == 0 {
				return fmt.Errorf("%s has no CPU samples%s (capture with -p cpu)", args[0], filterNote(opts))
			}
			var out io.Writer = cmd.OutOrStdout()
			if output != "" {
				f, err := os.Create(output)
				if err != nil {
					return err
				}
				defer f.Close()
				out = f
			}
			lines := analyze.Folded(prof)
			if folded {
				_, err = io.WriteString(out, analyze.FoldedText(lines))
				return err
			}
			return report.WriteFlameGraph(out, lines, report.FlameGraphOptions{
				Title: "CPU: " + a.Manifest().Host,
				Unit:  "samples",
			})
		},
	}
	flags.bind(cmd)
	cmd.Flags().StringVarP(&output, "output", "o", "", "write to this file instead of stdout")
	cmd.Flags().BoolVar(&folded, "folded", false, "print folded stacks instead of SVG")
	return cmd
}

func filterNote(o analyze.Options) string {
	if len(o.Filter.PIDs) > 0 || o.Filter.From > 0 || o.Filter.To > 0 {
		return " matching the filter"
	}
	return ""
}
