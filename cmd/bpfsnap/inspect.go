package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/bpfsnap/bpfsnap/analyze"
	"github.com/bpfsnap/bpfsnap/formats"
	"github.com/bpfsnap/bpfsnap/report"
)

// inspectOutput is the --json document; its field names are part of the
// CLI's contract.
type inspectOutput struct {
	Manifest  *formats.Manifest   `json:"manifest"`
	Tables    []formats.TableInfo `json:"tables"`
	Processes []inspectProcess    `json:"processes"`
}

type inspectProcess struct {
	analyze.Process
	StartTime string `json:"start_time,omitempty"`
	ExitTime  string `json:"exit_time,omitempty"`
}

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
			a, err := formats.Open(args[0])
			if err != nil {
				return err
			}
			defer a.Close()
			tables, err := a.Tables()
			if err != nil {
				return err
			}
			procs, err := analyze.Processes(a)
			if err != nil {
				return err
			}
			m := a.Manifest()
			doc := inspectOutput{Manifest: m, Tables: tables, Processes: make([]inspectProcess, 0, len(procs))}
			for _, p := range procs {
				ip := inspectProcess{Process: p}
				if p.StartNs != 0 {
					ip.StartTime = m.Window.WallTime(p.StartNs).Format(time.RFC3339Nano)
				}
				if p.Exited {
					ip.ExitTime = m.Window.WallTime(p.ExitNs).Format(time.RFC3339Nano)
				}
				doc.Processes = append(doc.Processes, ip)
			}
			if asJSON {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(doc)
			}
			printInspect(cmd.OutOrStdout(), a.Path(), doc)
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "machine-readable output")
	return cmd
}

// maxListedProcesses keeps the human output to a screenful; --json has all.
const maxListedProcesses = 40

func printInspect(out io.Writer, path string, doc inspectOutput) {
	m := doc.Manifest
	safe := report.TerminalSafe
	fmt.Fprintf(out, "archive   %s\n", safe(path))
	fmt.Fprintf(out, "format    v%d, bpfsnap %s, complete=%v", m.FormatVersion, safe(m.BpfsnapVersion), m.Complete)
	if m.Recovered {
		fmt.Fprint(out, " (recovered)")
	}
	fmt.Fprintf(out, "\nhost      %s, kernel %s, %s\n", safe(m.Host), safe(m.Kernel), safe(m.Arch))
	fmt.Fprintf(out, "window    %s, %s (%s)\n", m.Window.StartWall.Format(time.RFC3339), m.Window.Duration().Round(time.Millisecond), safe(m.Window.EndReason))
	var probes []string
	for _, p := range m.Probes {
		s := p.Name
		if !p.Attached {
			s += " (FAILED: " + p.Error + ")"
		}
		probes = append(probes, s)
	}
	fmt.Fprintf(out, "probes    %s\n", safe(strings.Join(probes, ", ")))
	if len(m.Targets.PIDs) > 0 || len(m.Targets.Command) > 0 {
		fmt.Fprintf(out, "targets   pids %v command %s\n", m.Targets.PIDs, safe(strings.Join(m.Targets.Command, " ")))
	}
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(out, "\ntables")
	fmt.Fprintln(tw, "name\trows\tbytes\tchunks\t")
	for _, t := range doc.Tables {
		fmt.Fprintf(tw, "%s\t%d\t%s\t%d\t\n", t.Name, t.Rows, report.HumanBytes(t.Bytes), t.Chunks)
	}
	tw.Flush()
	fmt.Fprintln(out, "\ndrops")
	drops := m.SortedDrops()
	if len(drops) == 0 {
		fmt.Fprintln(out, "  none")
	}
	for _, d := range drops {
		// The class and meaning come from formats' drop catalog: lost
		// events read differently from a stack cut short.
		r, _ := formats.LookupDrop(d.Reason)
		meaning := r.Meaning
		if meaning == "" {
			meaning = "not in this version's catalog"
		}
		fmt.Fprintf(out, "  %-32s %d  %s: %s\n", safe(d.Reason), d.Count, r.Class, meaning)
	}
	for _, w := range m.Warnings {
		fmt.Fprintf(out, "warning: %s\n", safe(w))
	}
	fmt.Fprintf(out, "\nprocesses (%d)\n", len(doc.Processes))
	tw = tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  pid\tppid\tcomm\texe\tcgroup\texit")
	for i, p := range doc.Processes {
		if i == maxListedProcesses {
			fmt.Fprintf(tw, "  ... %d more (--json lists all)\n", len(doc.Processes)-i)
			break
		}
		exit := ""
		if p.Exited {
			exit = fmt.Sprintf("%d", p.ExitCode)
		}
		fmt.Fprintf(tw, "  %d\t%d\t%s\t%s\t%s\t%s\n", p.PID, p.PPID, safe(p.Comm), safe(p.Exe), safe(p.Cgroup), exit)
	}
	tw.Flush()
}
