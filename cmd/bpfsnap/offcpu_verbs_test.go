package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	fx "github.com/bpfsnap/bpfsnap/internal/offcpufixture"
)

// flamegraph --off-cpu draws the off-CPU time, in µs, under the selectors
// every verb honours; nothing to draw is an error before any file exists.
func TestFlamegraphOffCPU(t *testing.T) {
	arc, err := fx.Write(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	out, err := runBpfsnap(t, "flamegraph", "--off-cpu", "--folded", arc)
	if err != nil {
		t.Fatal(err)
	}
	// The holder's 499 ms sleep and the lock waits of the ten /lock requests.
	for _, want := range []string{"srv;[sleep];serve;nap;entry_SYSCALL_64_after_hwframe_[k];__x64_sys_clock_nanosleep_[k];do_nanosleep_[k];schedule_[k] 679000\n",
		";wait_for_lock;pthread_mutex_lock;__lll_lock_wait;entry_SYSCALL_64_after_hwframe_[k];__x64_sys_futex_[k];futex_wait_[k];futex_wait_queue_[k];schedule_[k] 80000\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("folded off-CPU output lacks %q:\n%s", want, out)
		}
	}
	out, err = runBpfsnap(t, "flamegraph", "--off-cpu", "--folded", "--from", "6s", "--to", "6200ms", arc)
	if err != nil || !strings.HasSuffix(out, ";schedule_[k] 200000\n") || strings.Count(out, "\n") != 1 {
		t.Errorf("6.0–6.2 s: %v\n%s", err, out)
	}
	svg := filepath.Join(t.TempDir(), "off.svg")
	if _, err := runBpfsnap(t, "flamegraph", "--off-cpu", "--pid", "12345", "-o", svg, arc); err == nil || !strings.Contains(err.Error(), "no off-CPU intervals") {
		t.Errorf("a pid with no intervals: %v", err)
	}
	if _, err := os.Stat(svg); err == nil {
		t.Error("an output file was made for nothing")
	}
	if _, err := runBpfsnap(t, "flamegraph", "--off-cpu", "-o", svg, arc); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(svg); !strings.Contains(string(b), `data-unit="µs off-CPU"`) {
		t.Error("the SVG does not count µs off-CPU")
	}
}
