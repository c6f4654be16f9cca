//go:build linux

package main

import (
	"fmt"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/bpfsnap/bpfsnap/capture/recorder"
	"github.com/bpfsnap/bpfsnap/report"
)

func newTriggerCmd() *cobra.Command {
	var (
		output string
		wait   time.Duration
	)
	cmd := &cobra.Command{
		Use:   "trigger [--output FILE]",
		Short: "Make a running flight recorder (capture --ring) dump its last window",
		Long: `trigger finds the flight recorder running on this machine (capture --ring
registers itself in /run/bpfsnap) and asks it to write an archive of its last
window beside its -o, as SIGUSR1 does; it waits for the archive and prints
its path. With several recorders running, --output picks one.`,
		Example: "  sudo bpfsnap trigger\n  sudo bpfsnap trigger --output /var/tmp/node.bpfsnap",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			var match []recorder.RecorderInfo
			for _, r := range recorder.RunningRecorders() {
				if output == "" || sameFile(r.Output, output) {
					match = append(match, r)
				}
			}
			switch {
			case len(match) == 0 && output != "":
				return fmt.Errorf("no flight recorder writing %s is running", output)
			case len(match) == 0:
				return fmt.Errorf("no flight recorder is running (start one with bpfsnap capture --ring DURATION)")
			case len(match) > 1:
				var names []string
				for _, r := range match {
					names = append(names, fmt.Sprintf("%s (pid %d)", r.Output, r.PID))
				}
				return fmt.Errorf("%d flight recorders are running; pick one with --output: %s", len(match), strings.Join(names, ", "))
			}
			r := match[0]
			if err := syscall.Kill(r.PID, syscall.SIGUSR1); err != nil {
				return fmt.Errorf("signalling the recorder (pid %d): %w", r.PID, err)
			}
			deadline := time.Now().Add(wait)
			for time.Now().Before(deadline) {
				time.Sleep(100 * time.Millisecond)
				for _, now := range recorder.RunningRecorders() {
					if now.PID == r.PID && now.Dumps > r.Dumps {
						fmt.Fprintln(cmd.OutOrStdout(), report.TerminalSafe(now.LastDump))
						return nil
					}
				}
			}
			return fmt.Errorf("asked the recorder (pid %d) to dump; no archive after %s (it may be writing a queued one)", r.PID, wait)
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "", "the -o of the recorder to trigger, when several run")
	cmd.Flags().DurationVar(&wait, "wait", 60*time.Second, "how long to wait for the archive")
	return cmd
}

func sameFile(a, b string) bool {
	x, err1 := filepath.Abs(a)
	y, err2 := filepath.Abs(b)
	return err1 == nil && err2 == nil && x == y
}
