//go:build linux

package cpu

import "github.com/bpfsnap/bpfsnap/capture/recorder"

// Requires lists what CPU sampling needs beyond every capture's features.
func (*cpuProbe) Requires() []*recorder.Feature {
	return []*recorder.Feature{recorder.FeaturePerfEvent}
}
