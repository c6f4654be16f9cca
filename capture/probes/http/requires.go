//go:build linux

package http

import "github.com/bpfsnap/bpfsnap/capture/recorder"

// Requires lists what the http programs need beyond every capture's
// features: cgroup_skb programs that know the sending process (6.10) and
// read its task storage (the TLS write marker; past 6.12), per socket
// state, and bpf_loop for the head scan. On Linux 6.1 and 6.12 the set
// refuses at start naming them (docs/kernels.md).
func (*httpProbe) Requires() []*recorder.Feature {
	return []*recorder.Feature{recorder.FeatureSKBPid, recorder.FeatureSKBCgroupID, recorder.FeatureSKBTaskStorage, recorder.FeatureSkStorage, recorder.FeatureLoop}
}
