package main

import (
	"github.com/spf13/cobra"

	"github.com/bpfsnap/bpfsnap/analyze"
	"github.com/bpfsnap/bpfsnap/report"
)

func newInspectCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "inspect ARCHIVE [--json]",
		Short: "Show an archive's manifest, tables, drop counters and processes",
		Long: `inspect reads an archive (the .bpfsnap file, or the .partial directory of a
running or crashed capture) and prints its manifest, every table with its row
count and size, the drop counters, and the processes seen.`,
		Example: "  bpfsnap inspect incident.bpfsnap\n  bpfsnap inspect --json incident.bpfsnap | jq '.processes[] | .comm'",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			doc, err := analyze.Inspect(args[0])
			if err != nil {
				return err
			}
			if asJSON {
				return report.WriteJSON(cmd.OutOrStdout(), doc)
			}
			report.WriteInspectionText(cmd.OutOrStdout(), doc)
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "machine-readable output")
	return cmd
}
