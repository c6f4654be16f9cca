//go:build linux

package capture

import (
	"sort"

	"github.com/spf13/pflag"
)

// ProbeSet is one family of probes (cpu, http, mem, ...). The capture
// command makes a fresh instance of every registered set, lets each bind its
// own flags, and starts those the user selected. A set that fails to start
// is recorded in the manifest as failed while the others run.
type ProbeSet interface {
	Name() string
	// Default reports whether the set is cheap enough to be on when the
	// user names no probe sets.
	Default() bool
	// BindFlags adds the set's own capture flags (e.g. --freq).
	BindFlags(fs *pflag.FlagSet)
	// Start loads and attaches the programs and starts reading events into
	// the session's writer. Details go into the manifest.
	Start(s *Session) (details map[string]string, err error)
	// Drops returns the set's loss counters by reason ("cpu.ringbuf_full").
	Drops() map[string]uint64
	// Stop detaches, drains what the kernel still holds and writes any
	// final rows. It is called once, even after a failed Start.
	Stop(s *Session) error
}

var registry = map[string]func() ProbeSet{}

// Register makes a probe set available to `bpfsnap capture -p NAME`.
// Probe set files call it from init.
func Register(name string, factory func() ProbeSet) {
	if _, dup := registry[name]; dup {
		panic("capture: probe set registered twice: " + name)
	}
	registry[name] = factory
}

// NewProbeSets returns a fresh instance of every registered set, by name.
func NewProbeSets() []ProbeSet {
	names := make([]string, 0, len(registry))
	for n := range registry {
		names = append(names, n)
	}
	sort.Strings(names)
	out := make([]ProbeSet, 0, len(names))
	for _, n := range names {
		out = append(out, registry[n]())
	}
	return out
}
