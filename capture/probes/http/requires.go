//go:build linux

package http

import "github.com/bpfsnap/bpfsnap/capture/recorder"

// Requires lists what the http programs need beyond every capture's
// features: cgroup_skb programs that know the sending process (6.10), per
// socket state, and bpf_loop for the head scan. On Linux 6.1 the set
// refuses at start naming them (docs/kernels.md). The TLS write marker's
// task storage in cgroup_skb (past 6.12) is optional: Start leaves the
// marker out without it.
func (*httpProbe) Requires() []*recorder.Feature {
	return []*recorder.Feature{recorder.FeatureSKBPid, recorder.FeatureSKBCgroupID, recorder.FeatureSkStorage, recorder.FeatureLoop}
}
