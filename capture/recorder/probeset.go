//go:build linux

package recorder

import "github.com/spf13/pflag"

// Probe is what a session runs: it loads and attaches its programs, reads
// their records into the session's writer and counts what it loses.
type Probe interface {
	Name() string
	// Start loads and attaches the programs and starts reading events into
	// the session's writer. Details go into the manifest.
	Start(s *Session) (details map[string]string, err error)
	// Drops returns the probe's loss counters by reason ("cpu.ringbuf_full"),
	// each named in formats' drop catalog.
	Drops() map[string]uint64
	// Stop detaches, drains what the kernel still holds and writes any
	// final rows. It is called once, even after a failed Start.
	Stop(s *Session) error
}

// ProbeSet is a family of probes the user selects with `capture -p NAME`
// (cpu, http, mem, ...). The capture command makes a fresh instance of every
// set, lets each bind its own flags, and starts those the user selected. A
// set that fails to start is recorded in the manifest as failed while the
// others run.
type ProbeSet interface {
	Probe
	// Default reports whether the set is cheap enough to be on when the
	// user names no probe sets.
	Default() bool
	// BindFlags adds the set's own capture flags (e.g. --freq).
	BindFlags(fs *pflag.FlagSet)
	// Validate checks the set's flags. It runs in Options.Validate, before
	// anything is loaded, attached or started, so a bad flag fails the
	// command at once instead of costing the user the window.
	Validate() error
}

// ProcessProbe is the always-on probe of process lifecycle. Its records
// go through Session.WriteProcess and its ring through ReadProcessRing;
// FollowCgroup hands the kernel a pod cgroup found during the window.
type ProcessProbe interface {
	Probe
	FollowCgroup(id uint64) error
}
