package main

import (
	"github.com/spf13/cobra"

	"github.com/bpfsnap/bpfsnap/analyze"
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

// request maps the flags to an analysis request; analyze.Load resolves it
// against each archive, so every reading verb honours every selector.
func (f *analysisFlags) request(sections analyze.Sections) analyze.Request {
	r := analyze.Request{From: f.from, To: f.to, Namespace: f.namespace, Pod: f.pod, DebugDir: f.debugDir, Sections: sections}
	for _, p := range f.pids {
		r.PIDs = append(r.PIDs, uint32(p))
	}
	return r
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
			s, err := analyze.Load(args[0], flags.request(analyze.AllSections))
			if err != nil {
				return err
			}
			if asJSON {
				return report.WriteJSON(cmd.OutOrStdout(), s)
			}
			report.WriteSummaryText(cmd.OutOrStdout(), s)
			return nil
		},
	}
	flags.bind(cmd)
	cmd.Flags().BoolVar(&asJSON, "json", false, "machine-readable output")
	return cmd
}
