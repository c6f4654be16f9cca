package main

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/bpfsnap/bpfsnap/analyze"
)

// The comparison verbs on the fixture archive: the selectors reach each
// side, the folded form has two counts, misuse is one clear error.
func TestDiffVerbs(t *testing.T) {
	arc := cpuFixture(t)
	out, err := runBpfsnap(t, "diff", arc, arc, "--json", "--from", "5s", "--base-from", "0s", "--base-to", "5s")
	if err != nil {
		t.Fatal(err)
	}
	var d analyze.Diff
	if err := json.Unmarshal([]byte(out), &d); err != nil {
		t.Fatal(err)
	}
	if d.Base.Filter != "time 0s to 5s" || d.New.Filter != "time 5s to end" {
		t.Errorf("filters %q and %q, want each side's", d.Base.Filter, d.New.Filter)
	}
	// The fixture's app runs in the first half, the hostile process in the second.
	for _, p := range d.CPU.Processes {
		if (p.Name == "app") != (p.BaseShare == 100 && p.NewShare == 0) || !p.Significant {
			t.Errorf("process %+v: the app in BASE only, the other in NEW only", p)
		}
	}

	out, err = runBpfsnap(t, "flamegraph", "--diff", arc, arc, "--folded", "--new-pid", "100")
	if err != nil {
		t.Fatal(err)
	}
	// --new-pid 100 keeps the other process out of NEW only.
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if strings.HasPrefix(line, "app;") != !strings.HasSuffix(line, " 0") {
			t.Errorf("folded diff line %q", line)
		}
	}
	if !strings.Contains(out, "app;main;work;hot 500 500\n") {
		t.Errorf("folded diff:\n%s", out)
	}

	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"flamegraph", "--diff", arc}, "accepts 2 arg(s)"},
		{[]string{"flamegraph", arc, arc}, "accepts 1 arg(s)"},
		{[]string{"flamegraph", "--diff", "--per-pid", arc, arc}, "pids differ between captures"},
		{[]string{"flamegraph", "--diff", arc, arc, "--new-pid", "4242"}, "no CPU samples match pid 4242"},
		{[]string{"diff", arc}, "accepts 2 arg(s)"},
		{[]string{"diff", arc, "/nonexistent.bpfsnap"}, "new: "},
		{[]string{"report", "--baseline", "/nonexistent.bpfsnap", arc, "-o", "-"}, "baseline: "},
	} {
		if _, err := runBpfsnap(t, c.args...); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("bpfsnap %s: %v, want an error with %q", strings.Join(c.args, " "), err, c.want)
		}
	}
}
