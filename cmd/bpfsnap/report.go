package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/bpfsnap/bpfsnap/analyze"
	"github.com/bpfsnap/bpfsnap/report"
)

func newReportCmd() *cobra.Command {
	var (
		flags  analysisFlags
		output string
	)
	cmd := &cobra.Command{
		Use:   "report ARCHIVE... [-o report.html]",
		Short: "Write one self-contained HTML report for one or more archives",
		Long: `report analyzes one or more archives (e.g. one per node) and writes ONE HTML
page with everything inline: summary and warnings, HTTP latency per endpoint
with charts, interactive CPU flame graphs per time slice, and downloads of the
folded stacks and JSON summary. It opens offline in any current browser.`,
		Example: "  bpfsnap report incident.bpfsnap -o incident.html\n  bpfsnap report node-a.bpfsnap node-b.bpfsnap -o incident.html",
		Args:    cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			req := flags.request(analyze.AllSections)
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
	cmd.Flags().StringVarP(&output, "output", "o", "report.html", "HTML file to write (- for stdout)")
	return cmd
}
