package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/bpfsnap/bpfsnap/analyze"
	"github.com/bpfsnap/bpfsnap/report"
)

func newReportCmd() *cobra.Command {
	var (
		flags    analysisFlags
		output   string
		baseline string
		base     sideFlags
	)
	cmd := &cobra.Command{
		Use:   "report ARCHIVE... [-o report.html]",
		Short: "Write one self-contained HTML report for one or more archives",
		Long: `report analyzes one or more archives (e.g. one per node) and writes ONE HTML
page with everything inline: summary and warnings, HTTP latency per endpoint
with charts, interactive CPU flame graphs per time slice, and downloads of the
folded stacks and JSON summary. It opens offline in any current browser.

With --baseline BASE each archive is also compared with BASE (as bpfsnap diff
does): deltas in the endpoint table, a differential flame graph beside the
plain one, the functions and leak sites that changed, and a "what changed"
card. The selectors apply to BASE too; --base-X replaces one for BASE.`,
		Example: "  bpfsnap report incident.bpfsnap -o incident.html\n  bpfsnap report node-a.bpfsnap node-b.bpfsnap -o incident.html\n" +
			"  bpfsnap report --baseline before.bpfsnap after.bpfsnap -o after.html",
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			req := flags.request(analyze.AllSections)
			var baseSummary *analyze.Summary
			if baseline != "" {
				var err error
				if baseSummary, err = analyze.Load(baseline, base.request(cmd, req)); err != nil {
					return fmt.Errorf("baseline: %w", err)
				}
			}
			req.Slices = report.DefaultSlices
			var parts []*report.HTMLArchive
			for _, path := range args {
				s, err := analyze.Load(path, req)
				if err != nil {
					return err
				}
				part, err := report.BuildHTMLArchive(s)
				if err != nil {
					return err
				}
				if baseSummary != nil {
					if err := part.AddBaseline(analyze.Compare(baseSummary, s)); err != nil {
						return err
					}
				}
				parts = append(parts, part)
			}
			w, finish, err := openOutput(cmd, output)
			if err != nil {
				return err
			}
			if err := finish(report.WriteHTML(w, parts, report.HTMLOptions{Version: version})); err != nil {
				return err
			}
			if output != "-" {
				fmt.Fprintf(cmd.ErrOrStderr(), "wrote %s\n", output)
			}
			return nil
		},
	}
	flags.bind(cmd)
	base.bind(cmd, "base")
	cmd.Flags().StringVar(&baseline, "baseline", "", "compare every archive with this one (before the deploy, a healthy node)")
	cmd.Flags().StringVarP(&output, "output", "o", "report.html", "HTML file to write (- for stdout)")
	return cmd
}
