package formats

import (
	"encoding/json"
	"fmt"
	"sort"
	"time"
)

// FormatVersion is bumped whenever a reader of the previous version would
// misread an archive written by this one. Adding a table or a column does not
// bump it; readers ignore what they do not know. 2: HTTP latency to the
// response's last byte; 3: HTTP/2 and gRPC rows, whose failures are in
// grpc_status (a version-2 reader would count a failed call as a success).
const FormatVersion = 3

// ManifestName is the name of the manifest entry inside an archive.
const ManifestName = "manifest.json"

// Manifest describes one capture: where and when it ran, what was asked for,
// what worked, and everything that was lost. It is JSON so that any tool can
// read it without a Parquet library.
type Manifest struct {
	FormatVersion  int               `json:"format_version"`
	BpfsnapVersion string            `json:"bpfsnap_version"`
	Host           string            `json:"host"`
	Kernel         string            `json:"kernel"`
	Arch           string            `json:"arch"`
	Window         Window            `json:"window"`
	Probes         []Probe           `json:"probes"`
	Targets        Targets           `json:"targets"`
	Options        map[string]string `json:"options,omitempty"`
	Tables         map[string]int64  `json:"tables"`
	// Drops counts lost or incomplete data by reason, e.g.
	// "cpu.ringbuf_full" or "http.unparsed". Zero counters may be omitted.
	Drops map[string]uint64 `json:"drops"`
	// Warnings are human-readable sentences about anything that makes the
	// data incomplete, for the report's warnings box.
	Warnings []string `json:"warnings,omitempty"`
	// Complete is true when the capture finished normally; false while it is
	// running and after a crash until `bpfsnap recover` seals it.
	Complete  bool `json:"complete"`
	Recovered bool `json:"recovered,omitempty"`
	// Dump is set on an archive a flight recorder (capture --ring) wrote:
	// what made it write the archive, and when.
	Dump *Dump `json:"dump,omitempty"`
}

// Dump says why and when a flight recorder wrote an archive of its last
// window.
type Dump struct {
	// Trigger is what asked for it: "signal" (SIGUSR1 or `bpfsnap
	// trigger`), or the condition given with --trigger, e.g.
	// "http.p99>250ms" or "oom".
	Trigger string `json:"trigger"`
	// Detail says what the condition saw, e.g. "p99 412.3 ms over 10 s
	// on GET /api/x (server, pid 4242)".
	Detail string `json:"detail,omitempty"`
	// FiredWall is when the trigger fired.
	FiredWall time.Time `json:"fired_wall"`
	// Ring is the flight recorder's window (--ring); Sequence numbers the
	// recorder's dumps from 1.
	Ring     string `json:"ring"`
	Sequence int    `json:"sequence"`
}

// Window is the time span the capture covered. Events carry timestamps of
// the kernel's CLOCK_MONOTONIC in nanoseconds; StartMonoNs and StartWall were
// read together, so wall = StartWall + (event_ns - StartMonoNs).
type Window struct {
	StartWall   time.Time `json:"start_wall"`
	EndWall     time.Time `json:"end_wall"`
	StartMonoNs uint64    `json:"start_mono_ns"`
	EndMonoNs   uint64    `json:"end_mono_ns"`
	// Requested is the duration asked for; the window may end earlier
	// (signal, command exit, error).
	Requested string `json:"requested,omitempty"`
	// EndReason says why the window ended: "duration", "signal",
	// "command-exited", "error", "crash", or "dump" (a flight recorder's
	// archive of its last window; see Manifest.Dump).
	EndReason string `json:"end_reason,omitempty"`
}

// WallTime converts a CLOCK_MONOTONIC event timestamp to wall-clock time.
func (w Window) WallTime(monoNs uint64) time.Time {
	return w.StartWall.Add(time.Duration(int64(monoNs) - int64(w.StartMonoNs)))
}

// Duration is the length of the window, measured on the monotonic clock.
func (w Window) Duration() time.Duration {
	if w.EndMonoNs < w.StartMonoNs {
		return 0
	}
	return time.Duration(w.EndMonoNs - w.StartMonoNs)
}

// Probe records one probe set: requested, and whether it attached.
type Probe struct {
	Name     string `json:"name"`
	Attached bool   `json:"attached"`
	Error    string `json:"error,omitempty"`
	// Details holds facts a reader needs to trust the data, e.g. where a
	// uprobe sits and why, or the sampling frequency.
	Details map[string]string `json:"details,omitempty"`
}

// Targets records what the capture was restricted to. All empty means the
// whole host.
type Targets struct {
	PIDs    []uint32 `json:"pids,omitempty"`
	Command []string `json:"command,omitempty"`
	// Extra holds other selectors (pod, namespace, cgroup) by name.
	Extra map[string]string `json:"extra,omitempty"`
}

// DropsByClass sums the drop counters per class of the drop catalog:
// events lost apart from rows recorded incompletely and things only noted.
func (m *Manifest) DropsByClass() map[DropClass]uint64 {
	out := map[DropClass]uint64{}
	for k, v := range m.Drops {
		r, _ := LookupDrop(k)
		out[r.Class] += v
	}
	return out
}

// SortedDrops returns the non-zero drop counters sorted by name.
func (m *Manifest) SortedDrops() []DropCount {
	var out []DropCount
	for k, v := range m.Drops {
		if v != 0 {
			out = append(out, DropCount{Reason: k, Count: v})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Reason < out[j].Reason })
	return out
}

// DropCount is one named drop counter.
type DropCount struct {
	Reason string `json:"reason"`
	Count  uint64 `json:"count"`
}

// Probe returns the probe set with the given name, or nil.
func (m *Manifest) Probe(name string) *Probe {
	for i := range m.Probes {
		if m.Probes[i].Name == name {
			return &m.Probes[i]
		}
	}
	return nil
}

// maxManifestBytes bounds what a reader will load: a real manifest is a few
// KiB, so anything near this is hostile.
const maxManifestBytes = 16 << 20

func decodeManifest(data []byte) (*Manifest, error) {
	if len(data) > maxManifestBytes {
		return nil, fmt.Errorf("manifest is %d bytes, more than the %d allowed", len(data), maxManifestBytes)
	}
	var m Manifest
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf("manifest is not valid JSON: %w", err)
	}
	if m.FormatVersion < 1 || m.FormatVersion > FormatVersion {
		return nil, fmt.Errorf("unsupported archive format version %d (this bpfsnap reads 1..%d)", m.FormatVersion, FormatVersion)
	}
	return &m, nil
}
