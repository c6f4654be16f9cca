package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/bpfsnap/bpfsnap/capture"
	"github.com/bpfsnap/bpfsnap/formats"
	"github.com/bpfsnap/bpfsnap/report"
)

func newCaptureCmd() *cobra.Command {
	var (
		k8sSel capture.K8sSelector
		opts   capture.Options
		probes []string
		pids   []uint
	)
	sets := capture.NewProbeSets()
	cmd := &cobra.Command{
		Use:   "capture [-p PROBES] [--pid PID[,PID]]... [-d DURATION] [-o FILE] [-- COMMAND ARGS...]",
		Short: "Record a window of eBPF events on this node into one archive",
		Long: `capture loads bpfsnap's eBPF probes, records for a fixed window and writes
one archive file. Processes are always tracked; -p selects further probe sets.
With -- COMMAND, bpfsnap starts the command, follows its process tree, and
ends the window when it exits or the duration passes. Ctrl-C ends the window
early; the archive is still finalized. Needs root (or CAP_BPF + CAP_PERFMON).`,
		Example: `  # 30 s of the default probe sets on the whole node
  sudo bpfsnap capture

  # 10 s of one process and its children
  sudo bpfsnap capture --pid 4242 -d 10s -o checkout.bpfsnap

  # profile a command from its first instruction
  sudo bpfsnap capture -d 1m -o run.bpfsnap -- ./server --port 8080

  # flight recorder: keep the last minute, dump it when a route gets slow
  # (or on SIGUSR1 / bpfsnap trigger); Ctrl-C leaves the last minute in -o
  sudo bpfsnap capture --ring 60s -p cpu,http -o node.bpfsnap --trigger 'http.p99>250ms'`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if dash := cmd.ArgsLenAtDash(); dash >= 0 {
				opts.Command = args[dash:]
				args = args[:dash]
			}
			if len(args) > 0 {
				return fmt.Errorf("unexpected argument %q (put a command to run after --)", args[0])
			}
			for _, p := range probes {
				for _, name := range strings.Split(p, ",") {
					if name = strings.TrimSpace(name); name != "" {
						opts.Probes = append(opts.Probes, name)
					}
				}
			}
			for _, p := range pids {
				if p == 0 || p > 1<<31 {
					return fmt.Errorf("--pid %d is not a valid pid", p)
				}
				opts.PIDs = append(opts.PIDs, uint32(p))
			}
			// Resolved by capture.Run: the pods' processes now, and their
			// cgroups for processes that join during the window.
			opts.K8s = k8sSel
			opts.Sets = sets
			if opts.Ring > 0 && !cmd.Flags().Changed("duration") {
				opts.Duration = 0 // a flight recorder runs until stopped
			}
			opts.Version = version
			stderr := cmd.ErrOrStderr()
			tty := isTerminal(stderr)
			opts.Warn = func(msg string) {
				if tty {
					fmt.Fprint(stderr, "\r\033[K")
				}
				fmt.Fprintf(stderr, "warning: %s\n", report.TerminalSafe(msg))
			}
			if tty {
				opts.Status = func(s capture.Status) { fmt.Fprintf(stderr, "\r\033[K%s", statusLine(s)) }
			}
			opts.Dumped = func(path, trig, detail string) {
				if tty {
					fmt.Fprint(stderr, "\r\033[K")
				}
				fmt.Fprintf(stderr, "dumped %s (trigger %s: %s)\n", report.TerminalSafe(path), report.TerminalSafe(trig), report.TerminalSafe(detail))
			}
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			res, err := capture.Run(ctx, opts)
			if tty {
				fmt.Fprint(stderr, "\r\033[K")
			}
			if err != nil {
				return err
			}
			m := res.Manifest
			drops := m.DropsByClass()
			fmt.Fprintf(cmd.OutOrStdout(), "wrote %s: %s window (%s), %d events, %s; %s, %d incomplete (stacks cut short, unnamed frames, unanswered requests; bpfsnap inspect shows which)\n",
				report.TerminalSafe(res.Output), m.Window.Duration().Round(time.Millisecond), m.Window.EndReason,
				res.Events, report.HumanBytes(res.Bytes), lostShare(drops[formats.DropLost], res.Events), drops[formats.DropIncomplete])
			return nil
		},
	}
	f := cmd.Flags()
	f.StringSliceVarP(&probes, "probes", "p", nil, "comma-separated probe sets to run (default: every cheap set)")
	f.UintSliceVar(&pids, "pid", nil, "restrict to these processes and their descendants (repeatable, comma-separated)")
	f.DurationVarP(&opts.Duration, "duration", "d", 30*time.Second, "length of the capture window")
	f.StringVarP(&opts.Output, "output", "o", "", "archive to write (default bpfsnap-<host>-<UTC time>.bpfsnap)")
	f.BoolVar(&opts.Force, "force", false, "overwrite an existing output file")
	f.StringVar(&opts.HostRoot, "host-root", "/", "where the host's /proc and /sys are mounted (when running in a pod)")
	f.StringVar(&opts.RuntimeRoot, "runtime-root", "", "where the node's /run/containerd, /run/containers and /var/log/pods are (default: --host-root)")
	f.StringVar(&k8sSel.Pod, "pod", "", "capture only this pod's processes (NAMESPACE/NAME, or several comma-separated), found on this node")
	f.StringVar(&k8sSel.Namespace, "namespace", "", "capture only processes of pods in this Kubernetes namespace")
	f.StringVar(&k8sSel.ContainerID, "container-id", "", "capture only this container's processes (id or unique prefix)")
	f.StringVar(&k8sSel.Cgroup, "cgroup", "", "capture only processes in this cgroup path (and below)")
	f.DurationVar(&opts.Ring, "ring", 0, "flight recorder: record until stopped, keep the last DURATION on disk, dump it on SIGUSR1, bpfsnap trigger or --trigger")
	f.StringArrayVar(&opts.Triggers, "trigger", nil, "with --ring: dump when a condition holds: http.pNN>DURATION, http.errors>N%, cpu>N%, oom; options after commas: route=/x, cooldown=1m, max=10 (repeatable)")
	f.BoolVar(&opts.PerfMapRequest, "perf-map-request", false, "ask live JVMs whose JIT code is on the stacks to write /tmp/perf-PID.map (as jcmd PID Compiler.perfmap) at the end of the window, so their Java methods are named")
	f.BoolVar(&opts.KeepCmdline, "keep-cmdline", false, "write command lines as they are (by default values that look like secrets, such as passwords, tokens, keys and URL userinfo, become <redacted>)")
	// Debug: shrink every ring buffer so the flood tests can overflow it.
	f.IntVar(&opts.RingPages, "ring-pages", 0, "debug: size every ring buffer to this many pages (a power of two)")
	_ = f.MarkHidden("ring-pages")
	for _, ps := range sets {
		ps.BindFlags(f)
	}
	return cmd
}

func statusLine(s capture.Status) string {
	if s.Ring > 0 {
		return fmt.Sprintf("flight recorder %s elapsed, keeping the last %s: %s on disk, %d dumps | %d events | %s | %d incomplete",
			s.Elapsed.Round(time.Second), s.Ring, report.HumanBytes(s.DiskBytes), s.Dumps, s.Events, lostShare(s.Lost, s.Events), s.Incomplete)
	}
	remain := s.Total - s.Elapsed
	if remain < 0 {
		remain = 0
	}
	return fmt.Sprintf("capturing %s elapsed, %s left | %d events | %s | %d incomplete | %s written",
		s.Elapsed.Round(time.Second), remain.Round(time.Second), s.Events, lostShare(s.Lost, s.Events), s.Incomplete, report.HumanBytes(s.Bytes))
}

// lostShare says how many events were lost and what share of all events
// (recorded + lost) that is.
func lostShare(lost, recorded uint64) string {
	if lost == 0 {
		return "0 lost"
	}
	return fmt.Sprintf("%d lost (%.2g%%)", lost, 100*float64(lost)/float64(lost+recorded))
}

func isTerminal(w any) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}
