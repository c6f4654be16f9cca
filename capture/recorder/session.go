//go:build linux

package recorder

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/bpfsnap/bpfsnap/formats"
	"github.com/bpfsnap/bpfsnap/internal/trigger"
)

// Options is what `bpfsnap capture` was asked to do. Validate fills in
// defaults and rejects contradictions in one place.
type Options struct {
	Output   string
	Duration time.Duration
	// Probes names the probe sets to run; empty means every default set.
	Probes  []string
	PIDs    []uint32
	Command []string
	// Force allows overwriting an existing output file.
	Force bool
	// Status, when set, receives a live status line every second.
	Status  func(Status)
	Version string
	// Warn receives warnings (probe sets that failed, scan problems).
	Warn func(msg string)
	// Sets are the probe set instances whose flags the command bound.
	Sets []ProbeSet
	// HostRoot is where the host's /proc and /sys are ("/" unless running
	// in a pod with host mounts).
	HostRoot string
	// Ready, when set, is called once every probe is attached and the
	// command (if any) released: from then on events are recorded.
	Ready func()
	// RuntimeRoot is where container runtime state (/run/containerd,
	// /var/log/pods) is read for k8s attribution; defaults to HostRoot.
	RuntimeRoot string
	// TargetExtra records non-pid selectors (pod, namespace...) in the
	// manifest's Targets.Extra.
	TargetExtra map[string]string
	// K8s selects pods, containers or cgroups (capture/k8s_target.go):
	// their processes now and, in the kernel, any process that joins their
	// cgroups during the window.
	K8s K8sSelector
	// Ring, when positive, makes the capture a flight recorder (ring.go):
	// it records until stopped (or Duration, when set), keeps the last
	// Ring of events on disk, and dumps that window as an archive beside
	// Output on SIGUSR1, `bpfsnap trigger` or a Triggers condition; when it
	// stops, the last window is written to Output.
	Ring time.Duration
	// Triggers are --trigger conditions (internal/trigger); ring only.
	Triggers []string
	// Dumped, when set, is told of every dump a flight recorder wrote.
	Dumped func(path, trigger, detail string)
	// RingPages, when > 0, shrinks (or grows) every probe set's ring buffer
	// to this many pages (a power of two). A debug knob for the flood
	// tests: a tiny ring overflows under load, so the drop accounting can
	// be checked against a workload that knows what it did.
	RingPages int
	// PerfMapRequest asks live JVMs with JIT frames to write their perf
	// map (the attach API's Compiler.perfmap) at the end of the window.
	PerfMapRequest bool

	triggerSpecs []trigger.Spec // Triggers, parsed by Validate
	// KeepCmdline writes command lines as they are: by default values
	// that look like secrets are replaced (internal/redact, Session.Cmdline).
	KeepCmdline bool
}

// Status is a snapshot for the live status line.
type Status struct {
	Elapsed, Total time.Duration
	Events         uint64
	// Lost counts events that never reached the archive (rings or kernel
	// maps full); Incomplete counts recorded rows that are partial (a
	// stack cut short, a frame without a name). They are kept apart so a
	// stack that stopped early is not read as data loss.
	Lost, Incomplete uint64
	Bytes            int64
	// A flight recorder's: its window, what it keeps on disk, the dumps
	// written so far.
	Ring      time.Duration
	DiskBytes int64
	Dumps     int64
}

// Result summarizes a finished capture.
type Result struct {
	Output   string
	Manifest formats.Manifest
	Events   uint64
	Bytes    int64
}

// Session is the state shared by the probe sets of one capture.
type Session struct {
	opts          Options
	writer        *formats.Writer
	procRoot      string
	cgroups       *CgroupResolver
	targets       *ebpf.Map
	filterTargets bool
	targetMu      sync.Mutex
	targetPIDs    map[uint32]bool
	targetCgroups map[uint64]string // cgroup v2 id -> path, for K8s selectors
	k8s           k8sState          // attribution caches and counters (k8s_enrich.go)
	events        atomic.Uint64
	warnings      atomic.Uint64
	redacted      atomic.Uint64 // command-line values replaced (process.cmdline_redacted)

	procTable *formats.TableWriter[formats.ProcessEvent]
	subMu     sync.Mutex
	subs      []func(formats.ProcessEvent)
	cgSubs    []func(path string) // OnTargetCgroup
	atEnd     []func() error

	// Process events and samples come through separate rings. A sample
	// handled before the fork/exec that began its program would be
	// resolved with the previous life of its pid (pid reuse), so sample
	// readers wait for the process reader (AwaitProcesses).
	procRing *RingReader
	procDone atomic.Uint64 // time of the last process event handled

	stacksOnce sync.Once
	stacks     *StackRecorder

	startWall time.Time // the window's start
	startMono uint64
	ring      *flightRecorder // capture --ring
}

// currentDrops is the manifest's counters as the loop last updated them.
func (s *Session) currentDrops() map[string]uint64 { return s.writer.Manifest().Drops }

// AtEnd registers work to run once every probe set has stopped and before
// the archive is finalized: e.g. symbolizing all stacks while the binaries
// are still reachable. Errors become manifest warnings.
func (s *Session) AtEnd(fn func() error) {
	s.subMu.Lock()
	defer s.subMu.Unlock()
	s.atEnd = append(s.atEnd, fn)
}

func (s *Session) runAtEnd() {
	s.subMu.Lock()
	fns := s.atEnd
	s.atEnd = nil
	s.subMu.Unlock()
	for _, fn := range fns {
		if err := fn(); err != nil {
			s.Warnf("%v", err)
		}
	}
}

// Writer is the archive the session writes to; probe sets create their
// tables on it with formats.NewTable.
func (s *Session) Writer() *formats.Writer { return s.writer }

// Ring is the flight recorder's window (capture --ring), 0 for a plain
// capture. Rows that sum the whole run (totals read at the end) do not
// belong in an archive of the last window.
func (s *Session) Ring() time.Duration { return s.opts.Ring }

// Filtered reports whether the capture is restricted to target processes.
func (s *Session) Filtered() bool { return s.filterTargets }

// ProcRoot is the /proc of the host (under --host-root).
func (s *Session) ProcRoot() string { return s.procRoot }

// Cgroups resolves cgroup ids to paths.
func (s *Session) Cgroups() *CgroupResolver { return s.cgroups }

// maxWarnings bounds the warnings a capture keeps and prints: a probe set
// that warns per process (a target forking thousands of short-lived
// children) must not grow the manifest, the recorder's memory and the
// terminal without limit. Further warnings are counted in the drops.
const maxWarnings = 100

// Warnf reports a problem that makes the data incomplete: to the user now,
// and to the manifest's warnings for the report (the first maxWarnings;
// the rest are counted as capture.warnings_suppressed).
func (s *Session) Warnf(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	n := s.warnings.Add(1)
	if n > maxWarnings {
		if s.writer != nil {
			s.writer.UpdateManifest(func(m *formats.Manifest) { m.Drops["capture.warnings_suppressed"]++ })
		}
		if n == maxWarnings+1 && s.opts.Warn != nil {
			s.opts.Warn(fmt.Sprintf("more than %d warnings: further ones are only counted (capture.warnings_suppressed)", maxWarnings))
		}
		return
	}
	if s.opts.Warn != nil {
		s.opts.Warn(msg)
	}
	if s.writer != nil {
		s.writer.UpdateManifest(func(m *formats.Manifest) { m.Warnings = append(m.Warnings, msg) })
	}
}

// OnProcess subscribes to every process row (scan, fork, exec, exit) as it
// is written; probe sets use it to snapshot mappings or attach uprobes to
// new targets. fn runs on the process reader goroutine and must not block.
func (s *Session) OnProcess(fn func(formats.ProcessEvent)) {
	s.subMu.Lock()
	defer s.subMu.Unlock()
	s.subs = append(s.subs, fn)
}

// TargetCgroups returns the cgroup v2 paths (below Cgroups().Root()) a
// Kubernetes selector targets, outermost only: a path below another one
// is left out. Empty without a selector.
func (s *Session) TargetCgroups() []string {
	var paths []string
	for _, p := range s.targetCgroups {
		paths = append(paths, p)
	}
	return OutermostCgroups(paths)
}

// OnTargetCgroup subscribes to cgroups a Kubernetes selector adds during
// the window (a pod created in the namespace): fn runs on the session's
// loop goroutine with the new path.
func (s *Session) OnTargetCgroup(fn func(path string)) {
	s.subMu.Lock()
	defer s.subMu.Unlock()
	s.cgSubs = append(s.cgSubs, fn)
}

// WriteProcess writes a process row from the kernel's process ring and
// marks its time handled, which sample readers wait for (AwaitProcesses).
func (s *Session) WriteProcess(row formats.ProcessEvent) {
	s.emitProcess(row)
	s.procDone.Store(row.TimeNs)
}

// ReadProcessRing reads the process probe's ring: like ReadRing, and sample
// readers wait for what it holds (AwaitProcesses).
func (s *Session) ReadProcessRing(m *ebpf.Map, handle func(raw []byte)) (*RingReader, error) {
	r, err := s.ReadRing(m, handle)
	s.procRing = r
	return r, err
}

// FilterCgroups reports whether the kernel must follow processes by cgroup
// too: a Kubernetes selector matched cgroups, or names pods that may start
// during the window.
func (s *Session) FilterCgroups() bool {
	return len(s.targetCgroups) > 0 || s.opts.K8s.FollowsNewPods()
}

// TargetCgroupIDs returns the cgroup v2 ids a Kubernetes selector matched
// at the start.
func (s *Session) TargetCgroupIDs() []uint64 {
	ids := make([]uint64, 0, len(s.targetCgroups))
	for id := range s.targetCgroups {
		ids = append(ids, id)
	}
	return ids
}

// K8s is the capture's Kubernetes selector (empty without one).
func (s *Session) K8s() K8sSelector { return s.opts.K8s }

// HostRoot is where the host's filesystem is ("/" unless in a pod).
func (s *Session) HostRoot() string { return s.opts.HostRoot }

// CountEvents adds records that arrived inside another record (a batch of
// frees) to the session's event count.
func (s *Session) CountEvents(n uint64) { s.events.Add(n) }

// TargetPIDs returns the target processes known so far, sorted.
func (s *Session) TargetPIDs() []uint32 {
	s.targetMu.Lock()
	pids := make([]uint32, 0, len(s.targetPIDs))
	for pid := range s.targetPIDs {
		pids = append(pids, pid)
	}
	s.targetMu.Unlock()
	sort.Slice(pids, func(i, j int) bool { return pids[i] < pids[j] })
	return pids
}

func (s *Session) emitProcess(row formats.ProcessEvent) {
	s.enrichK8s(&row)          // k8s attribution (capture/k8s_enrich.go)
	_ = s.procTable.Write(row) // a failure is sticky in the writer and ends the capture
	if s.filterTargets && row.Kind != formats.ProcessExit {
		// The kernel only reports targets (and their new children) when
		// filtering, so every process row widens the user-space view too.
		s.targetMu.Lock()
		s.targetPIDs[row.PID] = true
		s.targetMu.Unlock()
	}
	s.subMu.Lock()
	subs := s.subs
	s.subMu.Unlock()
	for _, fn := range subs {
		fn(row)
	}
}

// adoptDescendants adds to the targets the children targets forked after
// the /proc walk that chose them and before the fork probe was attached
// (nginx's master forking its workers as the capture starts): from the
// attach on, the kernel follows forks itself, so one more walk closes the
// gap.
func (s *Session) adoptDescendants() {
	for _, pid := range descendants(s.procRoot, s.TargetPIDs()) {
		if s.IsTarget(pid) {
			continue
		}
		if err := s.targets.Put(pid, uint8(1)); err != nil {
			s.Warnf("adding pid %d to the target map: %v", pid, err)
			continue
		}
		s.targetMu.Lock()
		s.targetPIDs[pid] = true
		s.targetMu.Unlock()
	}
}

// IsTarget reports whether pid is one of the capture's targets (always
// true for a whole-host capture). Probe sets whose events cannot be
// filtered in the kernel (packets seen in softirq context) use it.
func (s *Session) IsTarget(pid uint32) bool {
	if !s.filterTargets {
		return true
	}
	s.targetMu.Lock()
	defer s.targetMu.Unlock()
	return s.targetPIDs[pid]
}

// Validate applies defaults and checks the options.
func (o *Options) Validate() error {
	if o.Duration == 0 && o.Ring == 0 {
		o.Duration = 30 * time.Second // long enough for p99s, short enough to run during an incident
	}
	if o.Ring < 0 || (o.Ring > 0 && o.Ring < 2*time.Second) {
		return fmt.Errorf("--ring %s: the flight recorder's window must be at least 2s", o.Ring)
	}
	o.triggerSpecs = nil
	for _, t := range o.Triggers {
		sp, err := trigger.Parse(t)
		if err != nil {
			return err
		}
		if o.Ring == 0 {
			return fmt.Errorf("--trigger %q needs --ring (a flight recorder dumps its last window when the condition holds)", t)
		}
		o.triggerSpecs = append(o.triggerSpecs, sp)
	}
	if o.Duration < 0 {
		return fmt.Errorf("duration must be positive, got %s", o.Duration)
	}
	if o.HostRoot == "" {
		o.HostRoot = "/"
	}
	if o.RingPages < 0 || o.RingPages&(o.RingPages-1) != 0 {
		return fmt.Errorf("--ring-pages %d is not a power of two", o.RingPages)
	}
	if o.Output == "" {
		host, _ := os.Hostname()
		o.Output = fmt.Sprintf("bpfsnap-%s-%s.bpfsnap", host, time.Now().UTC().Format("20060102T150405Z"))
	}
	if st, err := os.Lstat(o.Output); err == nil {
		if st.Mode()&os.ModeSymlink != 0 {
			return fmt.Errorf("output %s is a symlink; refusing to write through it", o.Output)
		}
		if !o.Force {
			return fmt.Errorf("output %s already exists (use --force to overwrite)", o.Output)
		}
	}
	known := map[string]ProbeSet{}
	for _, ps := range o.Sets {
		known[ps.Name()] = ps
	}
	if len(o.Probes) == 0 {
		for _, ps := range o.Sets {
			if ps.Default() {
				o.Probes = append(o.Probes, ps.Name())
			}
		}
	}
	for _, name := range o.Probes {
		if _, ok := known[name]; !ok {
			names := make([]string, 0, len(known))
			for n := range known {
				names = append(names, n)
			}
			sort.Strings(names)
			return fmt.Errorf("unknown probe set %q (available: %s)", name, strings.Join(names, ", "))
		}
		if err := known[name].Validate(); err != nil {
			return err
		}
	}
	for _, sp := range o.triggerSpecs {
		need := map[trigger.Kind]string{trigger.HTTPLatency: "http", trigger.HTTPErrors: "http", trigger.CPU: "cpu"}[sp.Kind]
		if need != "" && !contains(o.Probes, need) {
			return fmt.Errorf("--trigger %q needs the %s probe set (-p %s)", sp.Text, need, need)
		}
	}
	return nil
}

func contains(list []string, v string) bool {
	for _, x := range list {
		if x == v {
			return true
		}
	}
	return false
}

// Run records one capture window. It returns when the window ends (the
// duration passes, ctx is cancelled by a signal, the command exits) with
// the archive finalized, or with an error that says what went wrong; after
// a write error the sealed chunks are left in "<output>.partial".
//
// procs is the always-on process probe; opts.Sets are the selectable ones.
func Run(ctx context.Context, opts Options, procs ProcessProbe) (*Result, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	s := &Session{
		opts:       opts,
		procRoot:   joinRoot(opts.HostRoot, "proc"),
		cgroups:    NewCgroupResolver(opts.HostRoot),
		targetPIDs: map[uint32]bool{},
	}
	defer s.cgroups.Close()
	// Every cgroup that exists now resolves later, even once removed.
	s.cgroups.Walk()
	k8sPIDs, err := s.resolveK8s()
	if err != nil {
		return nil, err
	}

	// A command is started held, before any probe is attached, so its pid
	// can be targeted before its first instruction runs.
	var child *heldCommand
	if len(opts.Command) > 0 {
		var err error
		if child, err = startHeld(opts.Command); err != nil {
			return nil, err
		}
		defer child.cleanup()
	}
	s.filterTargets = child != nil || len(opts.PIDs) > 0 || !opts.K8s.Empty()
	if s.filterTargets {
		roots := append([]uint32(nil), opts.PIDs...)
		for _, pid := range roots {
			if _, err := os.Stat(joinRoot(s.procRoot, Itoa(pid))); err != nil {
				return nil, fmt.Errorf("--pid %d: no such process", pid)
			}
		}
		pids := descendants(s.procRoot, append(roots, k8sPIDs...))
		if child != nil {
			pids = append(pids, child.pid)
		}
		m, err := ebpf.NewMap(&ebpf.MapSpec{Name: "targets", Type: ebpf.Hash, KeySize: 4, ValueSize: 1, MaxEntries: 65536})
		if err != nil {
			return nil, fmt.Errorf("creating the target map: %w", err)
		}
		defer m.Close()
		for _, pid := range pids {
			s.targetPIDs[pid] = true
			if err := m.Put(pid, uint8(1)); err != nil {
				return nil, fmt.Errorf("adding pid %d to the target map: %w", pid, err)
			}
		}
		s.targets = m
	}

	wall, mono := clock()
	w, err := formats.Create(opts.Output, formats.Manifest{
		BpfsnapVersion: opts.Version,
		Host:           hostname(),
		Kernel:         KernelRelease(),
		Arch:           runtime.GOARCH,
		Window:         formats.Window{StartWall: wall, StartMonoNs: mono, Requested: opts.Duration.String()},
		Targets:        formats.Targets{PIDs: opts.PIDs, Command: s.redactArgv(opts.Command), Extra: s.opts.TargetExtra},
		Options:        map[string]string{"probes": strings.Join(opts.Probes, ",")},
	}, formats.CreateOptions{Clock: clock, Ring: ringRetention(opts.Ring)})
	if err != nil {
		return nil, err
	}
	if opts.KeepCmdline {
		// A reader of the archive must know its command lines may hold secrets.
		w.UpdateManifest(func(m *formats.Manifest) { m.Options["keep_cmdline"] = "true" })
	}
	s.startWall, s.startMono = wall, mono
	if opts.Ring > 0 {
		s.ring = newFlightRecorder(s, opts.Ring)
		s.ring.observe(w)
		w.UpdateManifest(func(m *formats.Manifest) { m.Options["ring"] = opts.Ring.String() })
	}
	if opts.RingPages > 0 {
		// A reader of the archive must know its drops were provoked.
		w.UpdateManifest(func(m *formats.Manifest) { m.Options["ring_pages"] = strconv.Itoa(opts.RingPages) })
	}
	s.writer = w
	s.procTable = formats.NewTable[formats.ProcessEvent](w, formats.TableProcesses)

	// Start the always-on process probe, then the selected sets.
	if s.cgroups.NSProblem != "" {
		s.Warnf("bpfsnap runs in its own cgroup namespace and its root was not found (%s): cgroup paths of processes running at the start may be relative, and their pod columns empty", s.cgroups.NSProblem)
	}
	if !s.opts.K8s.Empty() && len(s.targetCgroups) == 0 {
		s.Warnf("no cgroup v2 directory found for %v: processes that join the selection during the window (kubectl exec, container restarts) are not followed, only children of the processes running now", s.opts.K8s.Extra())
	}
	var probes []formats.Probe
	attached := 0
	_, procsErr := procs.Start(s)
	// Pod cgroups found during the window go to the kernel through the
	// process probe, so only a running one can follow them.
	var follower ProcessProbe
	if procsErr == nil {
		follower = procs
	}
	if procsErr == nil && s.targets != nil {
		s.adoptDescendants()
	}
	if err := procsErr; err != nil {
		probes = append(probes, formats.Probe{Name: "process", Error: err.Error()})
		s.Warnf("probe set process failed: %v (process starts and exits in the window are not recorded; the /proc scan still is)", err)
	} else {
		probes = append(probes, formats.Probe{Name: "process", Attached: true})
	}
	var running []ProbeSet
	for _, name := range opts.Probes {
		ps := findSet(opts.Sets, name)
		if err := Unsupported(ps); err != nil {
			// Refused before loading anything: the kernel lacks a feature.
			probes = append(probes, formats.Probe{Name: name, Error: err.Error()})
			s.Warnf("probe set %s cannot run on this kernel: %v", name, err)
			continue
		}
		details, err := ps.Start(s)
		if err != nil {
			probes = append(probes, formats.Probe{Name: name, Error: err.Error(), Details: details})
			s.Warnf("probe set %s failed: %v", name, err)
			_ = ps.Stop(s)
			continue
		}
		attached++
		running = append(running, ps)
		probes = append(probes, formats.Probe{Name: name, Attached: true, Details: details})
	}
	w.UpdateManifest(func(m *formats.Manifest) { m.Probes = probes })
	stopAll := func() {
		for _, ps := range running {
			if err := ps.Stop(s); err != nil {
				s.Warnf("stopping probe set %s: %v", ps.Name(), err)
			}
		}
		_ = procs.Stop(s)
	}
	if attached == 0 && (len(opts.Probes) > 0 || procsErr != nil) {
		stopAll()
		w.Abort()
		os.RemoveAll(w.Dir())
		return nil, fmt.Errorf("no probe set could attach: %s", probeErrors(probes))
	}

	s.scanProc(true)
	if child != nil {
		if err := child.release(); err != nil {
			stopAll()
			w.Abort()
			os.RemoveAll(w.Dir())
			return nil, err
		}
	}

	if s.ring != nil {
		s.ring.start(opts.triggerSpecs, cpuHz(probes))
	}
	if opts.Ready != nil {
		opts.Ready()
	}
	reason := s.loop(ctx, child, follower, procs, running)
	stopAll()
	s.runAtEnd()
	s.updateDrops(procs, running)
	if s.ring != nil {
		return s.finishRing(w, reason)
	}

	if err := w.Err(); err != nil {
		w.Abort()
		return nil, diskError(w, err)
	}
	endWall, endMono := clock()
	if err := w.Finish(func(m *formats.Manifest) {
		m.Window.EndWall, m.Window.EndMonoNs, m.Window.EndReason = endWall, endMono, reason
	}); err != nil {
		w.Abort()
		return nil, diskError(w, err)
	}
	st, _ := os.Stat(opts.Output)
	res := &Result{Output: opts.Output, Manifest: w.Manifest(), Events: s.events.Load()}
	if st != nil {
		res.Bytes = st.Size()
	}
	return res, nil
}

// loop waits for the end of the window, refreshing drop counters and the
// status line every second. It returns why the window ended.
// follower, when not nil, is the process probe that adds pod cgroups
// appearing during the window to the kernel.
func (s *Session) loop(ctx context.Context, child *heldCommand, follower, procs ProcessProbe, running []ProbeSet) string {
	start := time.Now()
	var end <-chan time.Time // a flight recorder runs until stopped
	if s.opts.Duration > 0 {
		deadline := time.NewTimer(s.opts.Duration)
		defer deadline.Stop()
		end = deadline.C
	}
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	var exited <-chan struct{}
	if child != nil {
		exited = child.exited
	}
	for {
		select {
		case <-end:
			return "duration"
		case <-ctx.Done():
			return "signal"
		case <-exited:
			return "command-exited"
		case <-s.writer.Failed():
			return "error"
		case <-tick.C:
			if follower != nil {
				s.rescanK8s(follower)
			}
			drops := s.updateDrops(procs, running)
			st := Status{Elapsed: time.Since(start), Total: s.opts.Duration,
				Events: s.events.Load(), Lost: drops[formats.DropLost],
				Incomplete: drops[formats.DropIncomplete], Bytes: s.writer.BytesWritten()}
			if s.ring != nil {
				s.ring.tick(s.currentDrops())
				st.Ring, st.DiskBytes, st.Dumps = s.ring.ring, s.writer.DiskBytes(), s.ring.dumps.Load()
			}
			if s.opts.Status != nil {
				s.opts.Status(st)
			}
		}
	}
}

// updateDrops copies every probe set's loss counters into the manifest and
// returns their sums per class (formats' drop catalog).
func (s *Session) updateDrops(procs ProcessProbe, running []ProbeSet) map[formats.DropClass]uint64 {
	all := procs.Drops()
	all[k8sDropName] = s.k8s.unresolved.Load()
	all[redactDropName] = s.redacted.Load()
	for _, ps := range running {
		for k, v := range ps.Drops() {
			all[k] = v
		}
	}
	var byClass map[formats.DropClass]uint64
	s.writer.UpdateManifest(func(m *formats.Manifest) {
		for k, v := range all {
			if v > 0 || m.Drops[k] > 0 {
				m.Drops[k] = v
			}
		}
		byClass = m.DropsByClass()
	})
	return byClass
}

func diskError(w *formats.Writer, err error) error {
	hint := fmt.Sprintf("sealed chunks are kept in %s; free space and run `bpfsnap recover %s`", w.Dir(), w.Dir())
	if errors.Is(err, unix.ENOSPC) {
		return fmt.Errorf("capture stopped: no space left on device: %w (%s)", err, hint)
	}
	return fmt.Errorf("capture stopped: %w (%s)", err, hint)
}

func findSet(sets []ProbeSet, name string) ProbeSet {
	for _, ps := range sets {
		if ps.Name() == name {
			return ps
		}
	}
	return nil
}

func probeErrors(probes []formats.Probe) string {
	var parts []string
	for _, p := range probes {
		if !p.Attached {
			parts = append(parts, p.Name+": "+p.Error)
		}
	}
	return strings.Join(parts, "; ")
}

func hostname() string {
	h, _ := os.Hostname()
	return h
}

// KernelRelease is the running kernel's release (uname -r).
func KernelRelease() string {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return ""
	}
	return unix.ByteSliceToString(u.Release[:])
}

func joinRoot(root, p string) string {
	if root == "/" || root == "" {
		return "/" + strings.TrimPrefix(p, "/")
	}
	return strings.TrimRight(root, "/") + "/" + strings.TrimPrefix(p, "/")
}

// AwaitProcesses waits, briefly, until the process reader has handled the
// process events that happened before t (or has none waiting). Sample
// readers call it before resolving a stack, so a reused pid's new program
// is never resolved with the old one's mappings. It costs nothing while the
// process ring is empty, and is bounded when it is flooded.
func (s *Session) AwaitProcesses(t uint64) {
	if s.procRing == nil || s.procDone.Load() >= t || !s.procRing.Pending() {
		return
	}
	s.procRing.Kick()
	deadline := time.Now().Add(50 * time.Millisecond)
	for s.procDone.Load() < t && s.procRing.Pending() && time.Now().Before(deadline) {
		time.Sleep(200 * time.Microsecond)
	}
}

// NewDetachedSession is a session that writes to w with no kernel state and
// no targets: decoders driven without a kernel (benchmarks of a probe set's
// record handling) write through it as in a capture.
func NewDetachedSession(w *formats.Writer, opts Options) *Session {
	return &Session{opts: opts, writer: w, procRoot: joinRoot(opts.HostRoot, "proc"), targetPIDs: map[uint32]bool{}}
}
