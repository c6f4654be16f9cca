package main

import (
	"github.com/spf13/cobra"
)

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:   "bpfsnap",
		Short: "Capture an eBPF snapshot of a node and analyze it anywhere",
		Long: `bpfsnap records a fixed window of kernel events on a Linux node (process
lifecycle, CPU stacks, HTTP requests, allocations) into ONE archive file, and
turns that archive, on any machine and without privileges, into latency
percentiles, flame graphs, leak reports and a self-contained HTML report.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(
		newCaptureCmd(),
		newInspectCmd(),
		newAnalyzeCmd(),
		newFlamegraphCmd(),
		newExportCmd(),
		newReportCmd(),
		newRecoverCmd(),
		newDoctorCmd(),
		newVersionCmd(),
	)
	return root
}
