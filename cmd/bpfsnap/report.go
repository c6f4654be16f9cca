package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/spf13/cobra"

	"github.com/bpfsnap/bpfsnap/analyze"
	"github.com/bpfsnap/bpfsnap/report"
)

func newReportCmd() *cobra.Command {
	var (
		flags    analysisFlags
		output   string
		baseline string
		base     sideFlags
	)
	cmd := &cobra.Command{
		Use:   "report ARCHIVE|DIR... [-o report.html]",
		Short: "Write one self-contained HTML report for one or more archives",
		Long: `report analyzes one or more archives (e.g. one per node) and writes ONE HTML
page with everything inline: summary and warnings, HTTP latency per endpoint
with charts, interactive CPU flame graphs per time slice, and downloads of the
folded stacks and JSON summary. It opens offline in any current browser.

A directory stands for every *.bpfsnap file in it. With several archives the
page starts with the fleet view: one row per node (those that lost data
first), every route's percentiles merged exactly over the requests of all
nodes beside each node's p99 and the worst node, and the CPU flame graph
merged over the nodes or of any one node. Archives are analyzed in parallel.
With --pod or --namespace, archives with no process of the selection are
left out (and listed).

With --baseline BASE each archive is also compared with BASE (as bpfsnap diff
does): deltas in the endpoint table, a differential flame graph beside the
plain one, the functions and leak sites that changed, and a "what changed"
card. The selectors apply to BASE too; --base-X replaces one for BASE.`,
		Example: "  bpfsnap report incident.bpfsnap -o incident.html\n  bpfsnap report node-a.bpfsnap node-b.bpfsnap -o incident.html\n" +
			"  bpfsnap report captures/ -o fleet.html\n" +
			"  bpfsnap report --baseline before.bpfsnap after.bpfsnap -o after.html",
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			paths, err := archivePaths(args)
			if err != nil {
				return err
			}
			req := flags.request(analyze.AllSections)
			var baseSummary *analyze.Summary
			if baseline != "" {
				if baseSummary, err = analyze.Load(baseline, base.request(cmd, req)); err != nil {
					return fmt.Errorf("baseline: %w", err)
				}
			}
			req.Slices = report.DefaultSlices
			if len(paths) > fleetSlicesUpTo {
				req.Slices = 0
			}
			parts, fleet, err := buildReport(paths, req, baseSummary)
			if err != nil {
				return err
			}
			w, finish, err := openOutput(cmd, output)
			if err != nil {
				return err
			}
			if err := finish(report.WriteHTML(w, parts, report.HTMLOptions{Version: version, Fleet: fleet})); err != nil {
				return err
			}
			if output != "-" {
				fmt.Fprintf(cmd.ErrOrStderr(), "wrote %s\n", output)
			}
			return nil
		},
	}
	flags.bind(cmd)
	base.bind(cmd, "base")
	cmd.Flags().StringVar(&baseline, "baseline", "", "compare every archive with this one (before the deploy, a healthy node)")
	cmd.Flags().StringVarP(&output, "output", "o", "report.html", "HTML file to write (- for stdout)")
	return cmd
}

// fleetSlicesUpTo is the most archives whose CPU sections get a flame
// graph per time slice: beyond it each archive keeps its whole-window
// graph only (seven graphs per node of twenty nodes would make a page of
// hundreds of megabytes; `report ARCHIVE` of one node has its slices).
const fleetSlicesUpTo = 4

// buildReport analyzes the archives in parallel (analyze.LoadEach) and lays
// out each one's part of the page as soon as its analysis is done (compared
// with baseline when there is one); with
// several archives, the fleet view is fed the same summaries, and each
// part keeps only what the page shows, so memory follows the page and the
// latency lists the fleet merges, not every archive's analysis at once.
func buildReport(paths []string, req analyze.Request, baseline *analyze.Summary) ([]*report.HTMLArchive, *analyze.FleetSummary, error) {
	parts := make([]*report.HTMLArchive, len(paths))
	var fleet *analyze.Fleet
	if len(paths) > 1 {
		fleet = analyze.NewFleet(len(paths))
	}
	err := analyze.LoadEach(paths, req, 0, func(i int, s *analyze.Summary, err error) error {
		if err != nil {
			if fleet != nil && analyze.IsNoMatch(err) {
				fleet.Skip(i, paths[i], err)
				return nil
			}
			return err
		}
		part, err := report.BuildHTMLArchive(s)
		if err != nil {
			return fmt.Errorf("%s: %w", paths[i], err)
		}
		if baseline != nil {
			if err := part.AddBaseline(analyze.Compare(baseline, s)); err != nil {
				return fmt.Errorf("%s: %w", paths[i], err)
			}
		}
		if fleet != nil {
			fleet.Add(i, s)
			part.Compact()
		}
		parts[i] = part
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	var kept []*report.HTMLArchive
	for _, p := range parts {
		if p != nil {
			kept = append(kept, p)
		}
	}
	if fleet == nil {
		return kept, nil, nil
	}
	fs := fleet.Summary()
	if len(kept) == 0 {
		return nil, nil, fmt.Errorf("no archive has a process of the selection (%s)", fs.Skipped[0].Reason)
	}
	// A fleet is several archives of the same kind of traffic: a node
	// capture beside a memory capture of one program is two reports on
	// one page, not a fleet to merge.
	serving := 0
	for _, n := range fs.Nodes {
		if n.Requests > 0 || n.CPUSamples > 0 {
			serving++
		}
	}
	if serving < 2 {
		return kept, nil, nil
	}
	return kept, fs, nil
}

// archivePaths expands the arguments: a directory stands for the *.bpfsnap
// files in it (not its subdirectories), in name order; an archive given
// twice is analyzed once.
func archivePaths(args []string) ([]string, error) {
	var out []string
	seen := map[string]bool{}
	add := func(p string) {
		if !seen[p] {
			seen[p] = true
			out = append(out, p)
		}
	}
	for _, a := range args {
		st, err := os.Stat(a)
		if err != nil || !st.IsDir() {
			add(a) // formats.Open says what is wrong with it
			continue
		}
		ents, err := os.ReadDir(a)
		if err != nil {
			return nil, err
		}
		var found []string
		for _, e := range ents {
			if strings.HasSuffix(e.Name(), ".bpfsnap") && e.Type().IsRegular() {
				found = append(found, filepath.Join(a, e.Name()))
			}
		}
		if len(found) == 0 {
			return nil, errors.New(a + ": no *.bpfsnap archive in this directory")
		}
		sort.Strings(found)
		for _, p := range found {
			add(p)
		}
	}
	return out, nil
}
