package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/google/pprof/profile"

	"github.com/bpfsnap/bpfsnap/internal/testenv"
)

// Two CPU burners in two fake pods of two namespaces, captured for real;
// every reading verb must keep, for --pod and for --namespace, the samples
// of the selected pod's burner and nothing else. report, flamegraph and
// export once accepted the selectors and drew the whole node.
func TestK8sSelectorsOnEveryReadingVerb(t *testing.T) {
	testenv.RequireBPF(t)
	if runtime.GOOS != "linux" {
		t.Skip("capture is linux only")
	}
	bpfsnapBin(t) // built before the pods below burn the CPU
	v2, rt, dir := testenv.CgroupV2Root(), t.TempDir(), t.TempDir()
	cart := testenv.FakePod{NS: "shop", Name: "cart-0", UID: "7e57a11e-0000-4000-8000-0000000000b0", CID: fmt.Sprintf("%064x", 0x5300)}
	db := testenv.FakePod{NS: "store", Name: "db-0", UID: "7e57a11e-0000-4000-8000-0000000000b1", CID: fmt.Sprintf("%064x", 0x5301)}
	// The shell of each pod burns CPU itself, so its pid is the one to find.
	burn := "while :; do :; done"
	cartPID := testenv.StartInFakePod(t, v2, rt, cart, burn).Process.Pid
	dbPID := testenv.StartInFakePod(t, v2, rt, db, burn).Process.Pid

	run := func(args ...string) string {
		t.Helper()
		return runBin(t, args...)
	}
	arc := filepath.Join(dir, "pods.bpfsnap")
	run("capture", "-p", "cpu", "-d", "3s", "--runtime-root", rt, "-o", arc)

	want := fmt.Sprint([]int{cartPID})
	check := func(verb, selector string, pids map[int]bool) {
		t.Helper()
		var got []int
		for p := range pids {
			got = append(got, p)
		}
		sort.Ints(got)
		if fmt.Sprint(got) != want {
			t.Errorf("%s %s kept pids %v, want only the cart burner %v (db burner is %d)", verb, selector, got, want, dbPID)
		}
	}
	summaryPIDs := func(doc []byte) map[int]bool {
		t.Helper()
		var s struct {
			CPU struct {
				Processes []struct {
					PID int `json:"pid"`
				} `json:"processes"`
			} `json:"cpu"`
		}
		if err := json.Unmarshal(doc, &s); err != nil {
			t.Fatalf("summary JSON: %v", err)
		}
		pids := map[int]bool{}
		for _, p := range s.CPU.Processes {
			pids[p.PID] = true
		}
		return pids
	}
	rootPID := regexp.MustCompile(`^[^;]*-(\d+);`)
	titlePID := regexp.MustCompile(`<title>[^<&]*-(\d+)&#xA;`)
	for _, sel := range [][]string{{"--pod", "shop/cart-0"}, {"--namespace", "shop"}} {
		selector := strings.Join(sel, " ")

		check("analyze --json", selector, summaryPIDs([]byte(run(append([]string{"analyze", arc, "--json"}, sel...)...))))

		html := filepath.Join(dir, "report.html")
		run(append([]string{"report", arc, "-o", html}, sel...)...)
		page, err := os.ReadFile(html)
		if err != nil {
			t.Fatal(err)
		}
		m := regexp.MustCompile(`(?s)id="summary-data">(.*?)</script>`).FindSubmatch(page)
		if m == nil {
			t.Fatal("report has no summary data")
		}
		var docs []json.RawMessage
		if err := json.Unmarshal(m[1], &docs); err != nil || len(docs) != 1 {
			t.Fatalf("report summary data: %v (%d archives)", err, len(docs))
		}
		check("report", selector, summaryPIDs(docs[0]))

		pids := map[int]bool{}
		for _, line := range strings.Split(strings.TrimSpace(run(append([]string{"flamegraph", arc, "--folded", "--per-pid"}, sel...)...)), "\n") {
			if m := rootPID.FindStringSubmatch(line); m != nil {
				p, _ := strconv.Atoi(m[1])
				pids[p] = true
			} else {
				t.Errorf("folded line without a comm-PID root: %q", line)
			}
		}
		check("flamegraph --folded", selector, pids)

		pids = map[int]bool{}
		for _, m := range titlePID.FindAllStringSubmatch(run(append([]string{"flamegraph", arc, "--per-pid"}, sel...)...), -1) {
			p, _ := strconv.Atoi(m[1])
			pids[p] = true
		}
		check("flamegraph (SVG)", selector, pids)

		pb := filepath.Join(dir, "cpu.pb.gz")
		run(append([]string{"export", arc, "--format", "pprof", "-o", pb}, sel...)...)
		f, err := os.Open(pb)
		if err != nil {
			t.Fatal(err)
		}
		prof, err := profile.Parse(f)
		f.Close()
		if err != nil {
			t.Fatalf("export pprof: %v", err)
		}
		pids = map[int]bool{}
		for _, s := range prof.Sample {
			for _, p := range s.NumLabel["pid"] {
				pids[int(p)] = true
			}
		}
		check("export --format pprof", selector, pids)
	}
}
