//go:build linux

package capture

import (
	"fmt"
	"strings"
	"testing"

	"github.com/cilium/ebpf/features"

	"github.com/bpfsnap/bpfsnap/capture/recorder"
	"github.com/bpfsnap/bpfsnap/internal/testenv"
)

// Doctor must find everything every capture needs working on the kernels
// bpfsnap supports (this machine's locked-down 6.18, and Debian's 6.1 and
// 6.12 under make test-kernels), find each feature a probe set needs on
// every kernel at or past the release that brought it, and give each probe
// set the verdict its features imply, in the words capture refuses with.
func TestDoctorOnThisKernel(t *testing.T) {
	testenv.RequireBPF(t)
	r := Doctor()
	byName := map[string]Check{}
	for _, c := range r.Checks {
		byName[c.Name] = c
	}
	for _, need := range []string{"btf", "privileges", "tracefs", "ringbuf", "tracepoint", "tp_btf", "cgroup_skb"} {
		c, ok := byName[need]
		if !ok || !c.OK {
			t.Errorf("%s: %+v", need, c)
		}
	}
	if !r.CanRun {
		t.Fatalf("doctor says capture cannot run: %+v", r)
	}
	code, err := features.LinuxVersionCode()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range recorder.Features() {
		c, ok := byName[f.Name]
		if !ok {
			t.Errorf("doctor does not list feature %s", f.Name)
			continue
		}
		since := versionCode(t, f.Since)
		t.Logf("%-22s ok=%-5v since %-5s %s", f.Name, c.OK, f.Since, c.Detail)
		switch {
		case code >= since && !c.OK:
			t.Errorf("%s is missing on %s although Linux %s brought it: %s", f.Name, r.Kernel, f.Since, c.Detail)
		case code < since && c.OK:
			// A distribution may backport a feature: say so, it is news
			// for docs/kernels.md, not a failure.
			t.Logf("%s works on %s, older than the %s that brought it upstream (a backport)", f.Name, r.Kernel, f.Since)
		case !c.OK && !strings.Contains(c.Detail, "Linux "+f.Since+"+"):
			t.Errorf("%s: the reason does not name the release that brings it: %s", f.Name, c.Detail)
		}
	}
	if len(r.Sets) != len(NewProbeSets()) {
		t.Errorf("doctor gives %d probe set verdicts, there are %d sets", len(r.Sets), len(NewProbeSets()))
	}
	for _, v := range r.Sets {
		var missing []string
		for _, ps := range NewProbeSets() {
			if rq, ok := ps.(recorder.Requirer); ok && ps.Name() == v.Name {
				for _, f := range rq.Requires() {
					if !byName[f.Name].OK {
						missing = append(missing, f.Name)
					}
				}
			}
		}
		t.Logf("probe set %-7s ok=%v %s", v.Name, v.OK, v.Reason)
		if v.OK != (len(missing) == 0) {
			t.Errorf("probe set %s: verdict ok=%v but missing features %v", v.Name, v.OK, missing)
		}
		for _, m := range missing {
			if f := featureNamed(m); !strings.Contains(v.Reason, f.What) {
				t.Errorf("probe set %s: reason %q does not name %s", v.Name, v.Reason, f.What)
			}
		}
	}
	// These two depend on the kernel: report them, and check doctor does
	// not claim a feature that a live attach refuted.
	for _, name := range []string{"kprobe", "fentry"} {
		c := byName[name]
		t.Logf("%s: ok=%v %s", name, c.OK, c.Detail)
		if c.Required {
			t.Errorf("%s must not be required", name)
		}
	}
	if !kprobeSupport() && byName["kprobe"].OK {
		t.Errorf("kprobe reported working on a kernel without kprobe support")
	}
}

func featureNamed(name string) *recorder.Feature {
	for _, f := range recorder.Features() {
		if f.Name == name {
			return f
		}
	}
	return nil
}

// versionCode turns "6.10" into the kernel's KERNEL_VERSION(6, 10, 0).
func versionCode(t *testing.T, v string) uint32 {
	var major, minor uint32
	if _, err := fmt.Sscanf(v, "%d.%d", &major, &minor); err != nil {
		t.Fatalf("feature release %q: %v", v, err)
	}
	return major<<16 | minor<<8
}
