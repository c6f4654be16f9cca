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

	"github.com/bpfsnap/bpfsnap/internal/testenv"
)

// jemallocLib is Debian's libjemalloc2, which replaces malloc.
const jemallocLib = "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2"

// A C program linked with jemalloc (whose malloc replaces glibc's for the
// whole process) has its leaks found exactly, whether the capture starts it
// (it has mapped nothing but itself when it execs: the allocator is found
// in its DT_NEEDED) or attaches to it running (in its mappings); the
// manifest names the allocator traced.
func TestMemJemallocLeaksExact(t *testing.T) {
	testenv.RequireBPF(t)
	testenv.RequireTool(t, "gcc")
	if _, err := os.Stat(jemallocLib); err != nil {
		testenv.Skip(t, "libjemalloc2 is not installed (scripts/deps.sh installs it)")
	}
	bin := filepath.Join(t.TempDir(), "leaky-jemalloc")
	if out, err := exec.Command("gcc", "-O2", "-fno-omit-frame-pointer", "-o", bin, "../testdata/demo/leaky.c", jemallocLib).CombinedOutput(); err != nil {
		t.Fatalf("gcc: %v: %s", err, out)
	}
	out := filepath.Join(t.TempDir(), "mem.bpfsnap")
	res, err := Run(context.Background(), Options{Output: out, Duration: time.Minute, Probes: []string{"mem"}, Sets: NewProbeSets(),
		Command: []string{bin, "20000"}, Version: "test"})
	if err != nil {
		t.Fatal(err)
	}
	d := res.Manifest.Probe("mem").Details
	traced := ""
	for k, v := range d {
		if strings.HasPrefix(k, "allocator.") {
			traced += v + ";"
		}
	}
	if !strings.Contains(traced, "jemalloc") || d["probe.jemalloc.malloc"] == "" || d["probe.jemalloc.free"] == "" {
		t.Errorf("the manifest does not say jemalloc was traced: %v", d)
	}
	mem, sites := leaksBySite(t, out)
	t.Logf("sites %v; %d allocations, %d frees; allocators %s", sites, mem.Allocations, mem.Frees, traced)
	checkLeakSitesChurn(t, mem, sites, 20000)
}
