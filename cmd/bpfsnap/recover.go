package main

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/bpfsnap/bpfsnap/formats"
	"github.com/bpfsnap/bpfsnap/report"
)

func newRecoverCmd() *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "recover DIR.partial [-o FILE]",
		Short: "Turn the .partial directory of a crashed capture into a normal archive",
		Long: `recover seals what a killed or crashed capture left behind: every sealed chunk
is kept, unsealed ones are left out and named, row counts are recounted and
the manifest is marked recovered. The .partial directory is not modified.`,
		Example: "  bpfsnap recover bpfsnap-node1-20261124T101500Z.bpfsnap.partial",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			dir := strings.TrimRight(args[0], "/")
			if output == "" {
				output = strings.TrimSuffix(dir, formats.PartialSuffix)
				if output == dir {
					output = dir + ".bpfsnap"
				}
			}
			res, err := formats.Recover(dir, output)
			if err != nil {
				return err
			}
			var rows int64
			for _, n := range res.Tables {
				rows += n
			}
			fmt.Fprintf(cmd.OutOrStdout(), "wrote %s: %d tables, %d rows", report.TerminalSafe(res.Output), len(res.Tables), rows)
			if len(res.Skipped) > 0 {
				fmt.Fprintf(cmd.OutOrStdout(), ", %d unreadable chunks left out (%s)", len(res.Skipped), report.TerminalSafe(strings.Join(res.Skipped, ", ")))
			}
			fmt.Fprintln(cmd.OutOrStdout())
			return nil
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "", "archive to write (default: the directory name without .partial)")
	return cmd
}
