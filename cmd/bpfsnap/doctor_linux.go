package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/bpfsnap/bpfsnap/capture"
)

func newDoctorCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "doctor [--json]",
		Short: "Check which eBPF features work here, by loading and attaching test programs",
		Long: `doctor reports the kernel, BTF, privileges, perf_event_paranoid and tracefs
(mounting it when root and missing), then loads and attaches one test program
of every kind bpfsnap uses and says plainly what will not work and why.
It exits 0 when a capture can run.`,
		Example: "  sudo bpfsnap doctor\n  sudo bpfsnap doctor --json | jq '.checks[] | select(.ok | not)'",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			r := capture.Doctor()
			out := cmd.OutOrStdout()
			if asJSON {
				enc := json.NewEncoder(out)
				enc.SetIndent("", "  ")
				if err := enc.Encode(r); err != nil {
					return err
				}
			} else {
				fmt.Fprintf(out, "kernel %s\n\n", r.Kernel)
				tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
				for _, c := range r.Checks {
					mark := "ok"
					if !c.OK {
						mark = "NO"
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\n", mark, c.Name, c.Detail)
					if !c.OK && c.Affects != "" {
						fmt.Fprintf(tw, "\t\t-> not available: %s\n", c.Affects)
					}
				}
				tw.Flush()
				fmt.Fprintln(out, "\nprobe sets")
				for _, v := range r.Sets {
					if v.OK {
						fmt.Fprintf(tw, "ok\t%s\t\n", v.Name)
					} else {
						fmt.Fprintf(tw, "NO\t%s\t%s\n", v.Name, v.Reason)
					}
				}
				tw.Flush()
				if r.CanRun {
					fmt.Fprintln(out, "\ncapture can run on this machine.")
				}
			}
			if !r.CanRun {
				return errors.New("capture cannot run here: a required check failed (see above)")
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "machine-readable output")
	return cmd
}
