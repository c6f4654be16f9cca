//go:build linux

package growth

import "github.com/bpfsnap/bpfsnap/capture/recorder"

// Requires lists what the growth programs need beyond every capture's
// features: bpf_loop, which takes a process's first counter readings on
// every CPU at once. (The per-CPU resident-set counters they read are
// 6.2's; an older kernel's mm has none and the program fails to load,
// with the loader's error.)
func (*growthProbe) Requires() []*recorder.Feature {
	return []*recorder.Feature{recorder.FeatureLoop}
}
