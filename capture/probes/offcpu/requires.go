//go:build linux

package offcpu

import "github.com/bpfsnap/bpfsnap/capture/recorder"

// Requires lists what the off-CPU programs need beyond every capture's
// features: bpf_loop for the stack walk and hashes, per-thread storage, and
// the task iterator that closes the intervals still open at the end.
func (*offcpuProbe) Requires() []*recorder.Feature {
	return []*recorder.Feature{recorder.FeatureLoop, recorder.FeatureTaskStorage, recorder.FeatureTaskIter}
}
