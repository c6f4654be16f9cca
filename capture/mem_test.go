//go:build linux

package capture

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bpfsnap/bpfsnap/analyze"
	"github.com/bpfsnap/bpfsnap/formats"
	"github.com/bpfsnap/bpfsnap/internal/testenv"
)

func buildLeaky(t *testing.T) string {
	t.Helper()
	testenv.RequireTool(t, "gcc")
	bin := filepath.Join(t.TempDir(), "leaky")
	if out, err := exec.Command("gcc", "-O2", "-fno-omit-frame-pointer", "-o", bin, "../testdata/demo/leaky.c").CombinedOutput(); err != nil {
		t.Fatalf("gcc: %v: %s", err, out)
	}
	return bin
}

// leaksBySite sums outstanding memory by the allocation's call site (the
// leaf function): an unrolled loop calls one site from several addresses.
func leaksBySite(t *testing.T, path string) (*analyze.MemSummary, map[string][2]uint64) {
	t.Helper()
	mem, _ := openMem(t, path)
	return mem, bySite(mem.Leaks)
}

// openMem returns an archive's mem analysis and its manifest.
func openMem(t *testing.T, path string) (*analyze.MemSummary, *formats.Manifest) {
	t.Helper()
	a, err := formats.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	s, err := analyze.Analyze(a, analyze.Options{})
	if err != nil || s.Mem == nil {
		t.Fatalf("analysis: %v, mem %v", err, s.Mem)
	}
	return s.Mem, a.Manifest()
}

func checkLeakSites(t *testing.T, mem *analyze.MemSummary, sites map[string][2]uint64) {
	t.Helper()
	checkLeakSitesChurn(t, mem, sites, 200000)
}

// checkLeakSitesChurn is checkLeakSites for a leaky run churning n
// allocations.
func checkLeakSitesChurn(t *testing.T, mem *analyze.MemSummary, sites map[string][2]uint64, n uint64) {
	t.Helper()
	want := map[string][2]uint64{
		"leak_malloc":  {100 * 64, 100},
		"leak_calloc":  {50 * 128, 50},
		"leak_realloc": {20 * 256, 20},
	}
	for site, w := range want {
		if got := sites[site]; got != w {
			t.Errorf("%s: %d bytes in %d blocks, want %d in %d", site, got[0], got[1], w[0], w[1])
		}
	}
	for site, got := range sites {
		if strings.Contains(site, "churn") {
			t.Errorf("churn reported as outstanding: %v", got)
		}
	}
	// n churned allocations, each freed.
	if mem.Frees < n || mem.Allocations < n+170 {
		t.Errorf("allocations %d, frees %d", mem.Allocations, mem.Frees)
	}
}

// A command started by the capture: every leaking call site is named with
// its exact bytes and count; the churn it frees is not reported.
func TestMemLeaksOfCommand(t *testing.T) {
	testenv.RequireBPF(t)
	bin := buildLeaky(t)
	out := filepath.Join(t.TempDir(), "mem.bpfsnap")
	res, err := Run(context.Background(), Options{Output: out, Duration: time.Minute, Probes: []string{"mem"}, Sets: NewProbeSets(),
		Command: []string{bin, "200000"}, Version: "test"})
	if err != nil {
		t.Fatal(err)
	}
	if d := res.Manifest.Probe("mem").Details["probe.free"]; !strings.Contains(d, "+3") {
		t.Errorf("free's probe should sit past `test %%rdi,%%rdi` on this glibc: %q", d)
	}
	mem, sites := leaksBySite(t, out)
	t.Logf("sites %v; %d allocations, %d frees", sites, mem.Allocations, mem.Frees)
	checkLeakSites(t, mem, sites)
}

// A process attached by --pid while it runs: the same exact figures.
func TestMemLeaksByPID(t *testing.T) {
	testenv.RequireBPF(t)
	bin := buildLeaky(t)
	gate := filepath.Join(t.TempDir(), "go")
	cmd := exec.Command(bin, "200000")
	cmd.Env = append(os.Environ(), "LEAKY_WAIT_FILE="+gate)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	time.Sleep(200 * time.Millisecond) // let it map libc and start waiting
	out := filepath.Join(t.TempDir(), "pid.bpfsnap")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := Run(ctx, Options{Output: out, Duration: time.Minute, Probes: []string{"mem"}, Sets: NewProbeSets(),
			PIDs: []uint32{uint32(cmd.Process.Pid)}, Version: "test", Ready: func() { os.WriteFile(gate, nil, 0o644) }})
		done <- err
	}()
	select {
	case <-exited:
	case <-time.After(90 * time.Second):
		t.Fatal("leaky did not finish")
	}
	time.Sleep(300 * time.Millisecond)
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	mem, sites := leaksBySite(t, out)
	checkLeakSites(t, mem, sites)
}

// A Go target does not allocate through libc: the capture says so instead
// of reporting a reassuring empty leak list. Also when the pid made libc
// allocations before it exec'd the Go program (a shell's, or those of a
// held child built with cgo): they were another program's.
func TestMemWarnsForGoTarget(t *testing.T) {
	testenv.RequireBPF(t)
	bin := buildGo(t, "package main\n\nimport \"time\"\n\nfunc main() { b := make([][]byte, 0); for i := 0; i < 100; i++ { b = append(b, make([]byte, 4096)) }; time.Sleep(300 * time.Millisecond); _ = b }\n")
	for _, argv := range [][]string{{bin}, {"sh", "-c", "exec " + bin}} {
		out := filepath.Join(t.TempDir(), "go.bpfsnap")
		res, err := Run(context.Background(), Options{Output: out, Duration: time.Minute, Probes: []string{"mem"}, Sets: NewProbeSets(),
			Command: argv, Version: "test"})
		if err != nil {
			t.Fatal(err)
		}
		found := false
		for _, w := range res.Manifest.Warnings {
			if strings.Contains(w, "no allocation seen from pid") {
				found = true
			}
		}
		if !found {
			t.Errorf("%q: no warning about a target outside libc's allocator: %v", argv, res.Manifest.Warnings)
		}
	}
}
