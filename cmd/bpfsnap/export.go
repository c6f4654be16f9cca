package main

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/bpfsnap/bpfsnap/analyze"
	"github.com/bpfsnap/bpfsnap/report"
)

func newExportCmd() *cobra.Command {
	var (
		flags  analysisFlags
		out    string
		format string
	)
	cmd := &cobra.Command{
		Use:   "export ARCHIVE --format pprof|folded|json -o FILE",
		Short: "Export the CPU samples as a pprof profile, folded stacks or JSON",
		Long: `export writes the archive's CPU samples for other tools:
  pprof   a gzipped pprof profile (go tool pprof, speedscope, Grafana Pyroscope):
          functions with files and lines, mappings with build ids, sample
          types samples/count and cpu/nanoseconds, pid and comm labels
  folded  folded stacks, one "process;frame;...;leaf COUNT" line per stack
  json    the cpu section of analyze --json plus the folded stacks`,
		Example: "  bpfsnap export incident.bpfsnap --format pprof -o cpu.pb.gz && go tool pprof -top cpu.pb.gz",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if format != "pprof" && format != "folded" && format != "json" {
				return fmt.Errorf("--format %q: use pprof, folded or json", format)
			}
			if format == "pprof" && (out == "" || out == "-") {
				if f, ok := cmd.OutOrStdout().(*os.File); ok && term.IsTerminal(int(f.Fd())) {
					return errNoOutput
				}
			}
			return writeCPU(cmd, args[0], out, &flags, func(w io.Writer, s *analyze.Summary) error {
				return report.WriteCPUExport(w, s, format)
			})
		},
	}
	flags.bind(cmd)
	cmd.Flags().StringVarP(&out, "output", "o", "", "write to this file (standard output if omitted, except pprof on a terminal)")
	cmd.Flags().StringVar(&format, "format", "pprof", "pprof, folded or json")
	return cmd
}

var errNoOutput = errors.New("refusing to write a binary profile to a terminal: use -o FILE")
