package main

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/bpfsnap/bpfsnap/analyze"
	"github.com/bpfsnap/bpfsnap/formats"
	"github.com/bpfsnap/bpfsnap/report"
)

func newExportCmd() *cobra.Command {
	var (
		flags  analysisFlags
		out    string
		format string
	)
	cmd := &cobra.Command{
		Use:   "export ARCHIVE --format pprof|folded|json -o FILE\n  bpfsnap export --format parquet-dataset -o DIR ARCHIVE...",
		Short: "Export CPU samples for profilers, or archives as a Parquet dataset for query engines",
		Long: `export writes the archive's CPU samples for other tools:
  pprof   a gzipped pprof profile (go tool pprof, speedscope, Grafana Pyroscope):
          functions with files and lines, mappings with build ids, sample
          types samples/count and cpu/nanoseconds, pid and comm labels
  folded  folded stacks, one "process;frame;...;leaf COUNT" line per stack
  json    the cpu section of analyze --json plus the folded stacks
or every table of every archive given, for DuckDB, Spark, Trino, ClickHouse:
  parquet-dataset  DIR/table=NAME/host=HOST/capture=ID/part-N.parquet, the
                   columns of docs/format.md, plus the captures and drops
                   tables; docs/cookbook.md has the incident questions as SQL`,
		Example: "  bpfsnap export incident.bpfsnap --format pprof -o cpu.pb.gz && go tool pprof -top cpu.pb.gz\n" +
			"  bpfsnap export --format parquet-dataset -o fleet/ node-*.bpfsnap && duckdb -c \"SELECT * FROM read_parquet('fleet/table=captures/*/*/*.parquet', hive_partitioning=true)\"",
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if format == "parquet-dataset" {
				if out == "" || out == "-" {
					return errors.New("--format parquet-dataset writes a directory: give it with -o DIR")
				}
				st, err := formats.WriteDataset(out, args)
				if err != nil {
					return err
				}
				fmt.Fprintf(cmd.ErrOrStderr(), "wrote %d archives to %s: %d files, %d rows, %s\n", st.Archives, report.TerminalSafe(out), st.Files, st.Rows, report.HumanBytes(st.Bytes))
				return nil
			}
			if len(args) != 1 {
				return fmt.Errorf("--format %s exports one archive (%d given); parquet-dataset takes many", format, len(args))
			}
			if format != "pprof" && format != "folded" && format != "json" {
				return fmt.Errorf("--format %q: use pprof, folded, json or parquet-dataset", format)
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
	cmd.Flags().StringVar(&format, "format", "pprof", "pprof, folded, json, or parquet-dataset (many archives into -o DIR)")
	return cmd
}

var errNoOutput = errors.New("refusing to write a binary profile to a terminal: use -o FILE")
