//go:build !linux

package main

import (
	"errors"

	"github.com/spf13/cobra"
)

var errLinuxOnly = errors.New("capturing needs Linux with eBPF; analyze, report, flamegraph and export work here")

func newCaptureCmd() *cobra.Command {
	return &cobra.Command{
		Use:                "capture",
		Short:              "Record a window of eBPF events (Linux only)",
		DisableFlagParsing: true,
		RunE:               func(*cobra.Command, []string) error { return errLinuxOnly },
	}
}

func newDoctorCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "doctor",
		Short: "Check what eBPF features this machine supports (Linux only)",
		RunE:  func(*cobra.Command, []string) error { return errLinuxOnly },
	}
}

func newTriggerCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "trigger",
		Short: "Make a running flight recorder dump its last window (Linux only)",
		RunE:  func(*cobra.Command, []string) error { return errLinuxOnly },
	}
}
