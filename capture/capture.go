//go:build linux

package capture

import (
	"context"

	"github.com/bpfsnap/bpfsnap/capture/probes/cpu"
	"github.com/bpfsnap/bpfsnap/capture/probes/http"
	"github.com/bpfsnap/bpfsnap/capture/probes/mem"
	"github.com/bpfsnap/bpfsnap/capture/probes/offcpu"
	"github.com/bpfsnap/bpfsnap/capture/probes/process"
	"github.com/bpfsnap/bpfsnap/capture/recorder"
)

// The recorder's types, under the names the CLI and the tests use.
type (
	Options     = recorder.Options
	Status      = recorder.Status
	Result      = recorder.Result
	ProbeSet    = recorder.ProbeSet
	K8sSelector = recorder.K8sSelector
)

// NewProbeSets returns a fresh instance of every probe set the user can
// select with -p, in name order. A new probe set is added here.
func NewProbeSets() []ProbeSet {
	return []ProbeSet{cpu.New(), http.New(), mem.New(), offcpu.New()}
}

// Run records one capture window with the always-on process probe and the
// selected sets of opts.Sets (see recorder.Run).
func Run(ctx context.Context, opts Options) (*Result, error) {
	return recorder.Run(ctx, opts, process.New())
}

// IsHeldChild reports whether this process is a held `-- COMMAND` child.
func IsHeldChild() bool { return recorder.IsHeldChild() }

// RunHeldChild waits for the recorder's go and execs the command.
func RunHeldChild() { recorder.RunHeldChild() }

// ResolveK8sTargets returns the pids a Kubernetes selector matches now.
func ResolveK8sTargets(procRoot, runtimeRoot string, sel K8sSelector) ([]uint32, error) {
	return recorder.ResolveK8sTargets(procRoot, runtimeRoot, sel)
}
