package main

import (
	"fmt"
	"os"
	"runtime/pprof"
	"time"

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
	// --memprofile writes the live heap every 10 s (the last one taken
	// before the window ends shows what a long capture holds).
	var memProfile string
	root.PersistentFlags().StringVar(&memProfile, "memprofile", "", "write a Go heap profile of this bpfsnap run to FILE every 10 s")
	root.PersistentFlags().MarkHidden("memprofile")
	root.PersistentPreRunE = func(*cobra.Command, []string) error {
		if memProfile != "" {
			go writeHeapProfiles(memProfile, 10*time.Second)
		}
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
		newDiffCmd(),
		newRecoverCmd(),
		newDoctorCmd(),
		newTriggerCmd(),
		newVersionCmd(),
	)
	return root
}

// writeHeapProfiles replaces file with a heap profile every interval.
func writeHeapProfiles(file string, interval time.Duration) {
	for {
		time.Sleep(interval)
		f, err := os.Create(file + ".tmp")
		if err != nil {
			return
		}
		err = pprof.WriteHeapProfile(f)
		f.Close()
		if err == nil {
			os.Rename(file+".tmp", file)
		}
	}
}
