package main

import (
	"github.com/spf13/cobra"

	"github.com/bpfsnap/bpfsnap/analyze"
	"github.com/bpfsnap/bpfsnap/report"
)

// sideFlags select one side of a comparison (--base-* or --new-*); each
// one given replaces the shared selector of the same name for that side,
// so two slices of one archive, or two machines' pids, compare.
type sideFlags struct {
	side           string // "base" or "new"
	pids           []uint
	from, to       string
	namespace, pod string
}

func (s *sideFlags) bind(cmd *cobra.Command, side string) {
	s.side = side
	fl := cmd.Flags()
	fl.UintSliceVar(&s.pids, side+"-pid", nil, "only these processes on the "+side+" side (replaces --pid there)")
	fl.StringVar(&s.from, side+"-from", "", "start of the "+side+" side's time slice (replaces --from there)")
	fl.StringVar(&s.to, side+"-to", "", "end of the "+side+" side's time slice (replaces --to there)")
	fl.StringVar(&s.namespace, side+"-namespace", "", "Kubernetes namespace on the "+side+" side (replaces --namespace there)")
	fl.StringVar(&s.pod, side+"-pod", "", "pod on the "+side+" side (replaces --pod there)")
}

// request is the shared request with this side's selectors applied.
func (s *sideFlags) request(cmd *cobra.Command, r analyze.Request) analyze.Request {
	changed := func(name string) bool { return cmd.Flags().Changed(s.side + "-" + name) }
	if changed("pid") {
		r.PIDs = nil
		for _, p := range s.pids {
			r.PIDs = append(r.PIDs, uint32(p))
		}
	}
	if changed("from") {
		r.From = s.from
	}
	if changed("to") {
		r.To = s.to
	}
	if changed("namespace") {
		r.Namespace = s.namespace
	}
	if changed("pod") {
		r.Pod = s.pod
	}
	return r
}

// diffSides are the per-side selectors of a comparison.
type diffSides struct{ base, cur sideFlags }

func (f *diffSides) bind(cmd *cobra.Command) {
	f.base.bind(cmd, "base")
	f.cur.bind(cmd, "new")
}

// requests applies each side's selectors to the shared request.
func (f *diffSides) requests(cmd *cobra.Command, shared analyze.Request) (base, cur analyze.Request) {
	return f.base.request(cmd, shared), f.cur.request(cmd, shared)
}

// writeCPUDiff is `flamegraph --diff`: load both sides' CPU profiles,
// refuse a side without samples before creating the output, render.
func writeCPUDiff(cmd *cobra.Command, args []string, path string, base, cur analyze.Request, o report.CPUFlameOptions) error {
	d, err := analyze.LoadDiff(args[0], base, args[1], cur)
	if err != nil {
		return err
	}
	if _, err := d.RequireCPU(); err != nil {
		return err
	}
	w, finish, err := openOutput(cmd, path)
	if err != nil {
		return err
	}
	return finish(report.WriteDiffFlameGraph(w, d, o))
}

func newDiffCmd() *cobra.Command {
	var (
		flags  analysisFlags
		sides  diffSides
		asJSON bool
	)
	cmd := &cobra.Command{
		Use:   "diff BASE NEW [--json]",
		Short: "Compare two captures: what changed between BASE and NEW",
		Long: `diff compares two archives (the healthy node and the sick one, before and
after a deploy, or two slices of one capture): HTTP endpoints matched by role,
method, route and process (or Kubernetes workload), never by pid, ranked by
p99 added × request rate; CPU functions by the change of their share of each
side's samples, with changes within sampling noise marked apart; and the
allocation sites holding more memory. --pid, --from, --to, --namespace and
--pod apply to both sides; --base-X and --new-X replace them on one side.`,
		Example: "  bpfsnap diff node-a.bpfsnap node-b.bpfsnap\n" +
			"  bpfsnap diff before.bpfsnap after.bpfsnap --json\n" +
			"  bpfsnap diff incident.bpfsnap incident.bpfsnap --base-to 10s --new-from 20s",
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			base, cur := sides.requests(cmd, flags.request(analyze.AllSections))
			d, err := analyze.LoadDiff(args[0], base, args[1], cur)
			if err != nil {
				return err
			}
			if asJSON {
				return report.WriteJSON(cmd.OutOrStdout(), d)
			}
			report.WriteDiffText(cmd.OutOrStdout(), d)
			return nil
		},
	}
	flags.bind(cmd)
	sides.bind(cmd)
	cmd.Flags().BoolVar(&asJSON, "json", false, "machine-readable output")
	return cmd
}
