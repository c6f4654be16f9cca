package main

import (
	"fmt"
	"os"
	"runtime/pprof"

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
	// --cpuprofile is for bpfsnap's own developers: it profiles the recorder
	// (or an analysis) with Go's profiler, which names Go functions better
	// than a capture of bpfsnap by itself would.
	var cpuProfile string
	var profileFile *os.File
	root.PersistentFlags().StringVar(&cpuProfile, "cpuprofile", "", "write a Go CPU profile of this bpfsnap run to FILE")
	root.PersistentFlags().MarkHidden("cpuprofile")
	root.PersistentPreRunE = func(*cobra.Command, []string) error {
		if cpuProfile == "" {
			return nil
		}
		f, err := os.Create(cpuProfile)
		if err != nil {
			return fmt.Errorf("cpu profile: %w", err)
		}
		profileFile = f
		return pprof.StartCPUProfile(f)
	}
	root.PersistentPostRun = func(*cobra.Command, []string) {
		if profileFile != nil {
			pprof.StopCPUProfile()
			profileFile.Close()
		}
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
