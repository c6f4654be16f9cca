//go:build linux

package recorder

import (
	"encoding/json"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/bpfsnap/bpfsnap/analyze"
	"github.com/bpfsnap/bpfsnap/formats"
	"github.com/bpfsnap/bpfsnap/internal/trigger"
)

// The flight recorder (capture --ring DURATION): the probe sets record as
// in any capture, the writer keeps only the last DURATION of event chunks
// on disk (formats/ring.go), and a dump (SIGUSR1, `bpfsnap trigger`, or a
// --trigger condition) writes an ordinary archive of the last DURATION
// beside -o while recording goes on. When the recorder stops, the last
// window becomes the archive at -o, through the same dump path.

// ringSlack is kept on disk beyond the ring window: a dump covers whole
// chunks (sealed every second), and one asked for while another is being
// written must still find its window.
const ringSlack = 2 * time.Second

type dumpRequest struct {
	trigger, detail string
	wall            time.Time
	mono            uint64
	output          string // empty: a name beside -o with the time
	release         func() // lets the chunks the dump needs expire again
	done            chan error
}

// flightRecorder drives the dumps of a ring capture.
type flightRecorder struct {
	s        *Session
	ring     time.Duration
	eval     atomic.Pointer[trigger.Evaluator]
	requests chan dumpRequest
	stopped  chan struct{}
	seq      int
	dumps    atomic.Int64
	regFile  string // the registration `bpfsnap trigger` reads
	usr1     chan os.Signal

	// reqMu orders requests (SIGUSR1's goroutine, triggers) before the
	// final one: none is queued once requests is closed.
	reqMu  sync.Mutex
	closed bool

	mu       sync.Mutex
	dropHist []dropSnapshot // one per second, for each dump's window
}

type dropSnapshot struct {
	mono  uint64
	drops map[string]uint64
}

// maxQueuedDumps bounds the dumps waiting behind the one being written;
// more triggers than that are counted in the status, not queued.
const maxQueuedDumps = 8

func newFlightRecorder(s *Session, ring time.Duration) *flightRecorder {
	return &flightRecorder{s: s, ring: ring, requests: make(chan dumpRequest, maxQueuedDumps), stopped: make(chan struct{})}
}

// observe registers the writer observers the trigger conditions need; it
// runs before the probe sets create their tables. The evaluator is set
// once the probe sets have started (it needs the CPU sampling rate).
func (f *flightRecorder) observe(w *formats.Writer) {
	w.Observe(formats.TableHTTPRequests, func(rows any) {
		if e := f.eval.Load(); e != nil {
			e.AddHTTP(rows.([]formats.HTTPRequest))
		}
	})
	w.Observe(formats.TableCPUSamples, func(rows any) {
		if e := f.eval.Load(); e != nil && e.Needs(trigger.CPU) {
			e.AddCPU(rows.([]formats.CPUSample))
		}
	})
	f.s.OnProcess(func(ev formats.ProcessEvent) {
		if e := f.eval.Load(); e != nil && ev.Kind == formats.ProcessOOM && f.s.IsTarget(ev.PID) {
			e.AddOOM(ev.PID, ev.Comm, ev.TimeNs)
		}
	})
}

// start runs the dump goroutine and the SIGUSR1 handler, and registers the
// recorder for `bpfsnap trigger`.
func (f *flightRecorder) start(specs []trigger.Spec, cpuHz float64) {
	if len(specs) > 0 {
		f.eval.Store(trigger.New(specs, cpuHz))
	}
	go func() {
		defer close(f.stopped)
		for req := range f.requests {
			err := f.dump(req)
			req.release()
			if req.done != nil {
				req.done <- err
			}
		}
	}()
	f.usr1 = make(chan os.Signal, 4)
	signal.Notify(f.usr1, syscall.SIGUSR1)
	go func() {
		for range f.usr1 {
			f.request("signal", "SIGUSR1")
		}
	}()
	f.regFile = registerRecorder(f.s.opts.Output, f.ring)
}

// request queues a dump of the window ending now.
func (f *flightRecorder) request(trig, detail string) {
	f.reqMu.Lock()
	defer f.reqMu.Unlock()
	if f.closed {
		return // the recorder is finishing: its last window is being written
	}
	wall, mono := clock()
	req := dumpRequest{trigger: trig, detail: detail, wall: wall, mono: mono, release: f.s.writer.HoldChunks()}
	select {
	case f.requests <- req:
	default:
		req.release()
		f.s.Warnf("flight recorder: a dump for %s was not made: %d dumps are waiting already", trig, maxQueuedDumps)
	}
}

// tick runs every second from the session loop: it keeps the drop history
// and checks the trigger conditions.
func (f *flightRecorder) tick(drops map[string]uint64) {
	_, mono := clock()
	f.mu.Lock()
	snap := make(map[string]uint64, len(drops))
	for k, v := range drops {
		snap[k] = v
	}
	f.dropHist = append(f.dropHist, dropSnapshot{mono, snap})
	// Keep what the oldest dump window still needs.
	for len(f.dropHist) > 2 && f.dropHist[1].mono+uint64(f.ring+2*ringSlack) < mono {
		f.dropHist = f.dropHist[1:]
	}
	f.mu.Unlock()
	if e := f.eval.Load(); e != nil {
		for _, fired := range e.Check(mono) {
			f.request(fired.Spec.Text, fired.Detail)
		}
	}
}

// dropsSince returns the counters' growth since mono: the drops of a dump's
// window (the counters are cumulative).
func (f *flightRecorder) dropsSince(mono uint64, now map[string]uint64) map[string]uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	var base map[string]uint64
	for _, d := range f.dropHist {
		if d.mono > mono {
			break
		}
		base = d.drops
	}
	out := map[string]uint64{}
	for k, v := range now {
		if v > base[k] {
			out[k] = v - base[k]
		}
	}
	return out
}

// finish stops taking requests, writes the ones queued, and the final
// archive of the last window at -o.
func (f *flightRecorder) finish(reason string) error {
	wall, mono := clock()
	done := make(chan error, 1)
	// Not at -o itself: the recorder's own directory is -o.partial.
	tmp := f.s.opts.Output + ".last"
	// A recorder that is not the process's last one (tests run several)
	// must stop hearing SIGUSR1: a later signal would queue a dump on
	// a closed channel.
	if f.usr1 != nil {
		signal.Stop(f.usr1)
		close(f.usr1)
	}
	f.reqMu.Lock()
	f.requests <- dumpRequest{trigger: "end", detail: reason, wall: wall, mono: mono,
		output: tmp, release: f.s.writer.HoldChunks(), done: done}
	close(f.requests)
	f.closed = true
	f.reqMu.Unlock()
	err := <-done
	<-f.stopped
	if f.regFile != "" {
		os.Remove(f.regFile)
	}
	if err != nil {
		return err
	}
	return os.Rename(tmp, f.s.opts.Output)
}

// dump writes the archive of the window ending at req.mono.
func (f *flightRecorder) dump(req dumpRequest) error {
	w := f.s.writer
	// Seal first: what was written up to now (the row that fired the
	// trigger among it) is in the chunks the dump is made of.
	if err := w.Seal(); err != nil {
		return err
	}
	from := uint64(0)
	if req.mono > uint64(f.ring) {
		from = req.mono - uint64(f.ring)
	}
	m := w.Manifest()
	// Event chunks whose rows reach into the window. The window is the
	// ring's (the recorder watched all of it, so a quiet stretch is one
	// where nothing happened, not one missing), widened to the oldest and
	// newest row kept (events reach the writer a little after they
	// happen), and starts no earlier than the capture.
	first := func(c formats.ChunkInfo) uint64 {
		if c.MinTime != 0 {
			return c.MinTime
		}
		return c.OpenedMono
	}
	last := func(c formats.ChunkInfo) uint64 {
		if c.MaxTime != 0 {
			return c.MaxTime
		}
		return c.SealedMono
	}
	keep := func(c formats.ChunkInfo) bool {
		switch {
		case c.Table == formats.TableFrames || c.Table == formats.TableProcesses || c.Table == formats.TableJITSymbols:
			return false // written for the dump below
		case formats.RingRetained(c.Table):
			return true
		}
		return last(c) > from && first(c) <= req.mono
	}
	start, end := from, req.mono
	var procFiles []string
	for _, c := range w.Chunks() {
		if keep(c) && !formats.RingRetained(c.Table) {
			start, end = min(start, first(c)), max(end, last(c))
		}
		if c.Table == formats.TableProcesses {
			procFiles = append(procFiles, c.File)
		}
	}
	if start < f.s.startMono {
		start = f.s.startMono
	}
	win := &m.Window
	win.StartWall = f.s.startWall.Add(time.Duration(start - f.s.startMono))
	win.StartMonoNs = start
	win.EndWall, win.EndMonoNs = req.wall.Add(time.Duration(end-req.mono)), end
	win.Requested = f.ring.String()
	win.EndReason = "dump"
	if req.trigger == "end" {
		win.EndReason = req.detail
	}
	m.Drops = f.dropsSince(start, f.s.currentDrops())
	if m.Options == nil {
		m.Options = map[string]string{}
	}
	m.Options["ring"] = f.ring.String()
	f.seq++
	if req.trigger != "end" {
		m.Dump = &formats.Dump{Trigger: req.trigger, Detail: req.detail, FiredWall: req.wall, Ring: f.ring.String(), Sequence: f.seq}
	}
	out := req.output
	if out == "" {
		out = dumpName(f.s.opts.Output, req.wall)
	}
	err := w.Snapshot(out, formats.SnapshotOptions{
		Manifest: m,
		Keep:     keep,
		Extra: func(dw *formats.Writer) error {
			if err := f.writeProcesses(dw, procFiles, start); err != nil {
				return err
			}
			if st := f.s.stacks; st != nil {
				if err := formats.NewTable[formats.JITSymbol](dw, formats.TableJITSymbols).Write(st.JITRows()...); err != nil {
					return err
				}
				return formats.NewTable[formats.Frame](dw, formats.TableFrames).Write(st.FrameRows()...)
			}
			return nil
		},
	})
	if err != nil {
		f.s.Warnf("flight recorder: dump for %s: %v", req.trigger, err)
		return err
	}
	if req.trigger != "end" {
		f.dumps.Add(1)
		updateRegistration(f.regFile, out)
		if f.s.opts.Dumped != nil {
			f.s.opts.Dumped(out, req.trigger, req.detail)
		}
	}
	return nil
}

// writeProcesses writes the process rows of the lives that reach into the
// window: a process that exited before it is not in the dump. Lives are
// folded as the analysis folds them.
func (f *flightRecorder) writeProcesses(dw *formats.Writer, files []string, start uint64) error {
	rows, err := formats.ReadChunkFiles[formats.ProcessEvent](f.s.writer.Dir(), files)
	if err != nil {
		return err
	}
	type span struct{ from, to uint64 }
	over := map[uint32][]span{}
	for _, p := range analyze.FoldProcesses(append([]formats.ProcessEvent(nil), rows...)) {
		if p.Exited && p.ExitNs < start {
			over[p.PID] = append(over[p.PID], span{p.FirstSeen, p.ExitNs})
		}
	}
	keep := rows[:0]
	for _, r := range rows {
		gone := false
		for _, sp := range over[r.PID] {
			if r.TimeNs >= sp.from && r.TimeNs <= sp.to {
				gone = true
				break
			}
		}
		if !gone {
			keep = append(keep, r)
		}
	}
	return formats.NewTable[formats.ProcessEvent](dw, formats.TableProcesses).Write(keep...)
}

// dumpName is the archive name of a dump: -o's name with the time it was
// asked for, beside it (a suffix when that name is taken).
func dumpName(output string, t time.Time) string {
	base := strings.TrimSuffix(output, ".bpfsnap")
	name := base + "-" + t.UTC().Format("20060102T150405.000Z") + ".bpfsnap"
	for i := 2; ; i++ {
		if _, err := os.Lstat(name); err != nil {
			return name
		}
		name = fmt.Sprintf("%s-%s-%d.bpfsnap", base, t.UTC().Format("20060102T150405.000Z"), i)
	}
}

// Registration: a running flight recorder writes RecorderInfo to a file in
// RegistryDirs()[0] (or the first writable one), so `bpfsnap trigger`
// finds it without being told its pid.

// RecorderInfo is what `bpfsnap trigger` reads of a running recorder.
type RecorderInfo struct {
	PID      int       `json:"pid"`
	Output   string    `json:"output"`
	Ring     string    `json:"ring"`
	Started  time.Time `json:"started"`
	Dumps    int       `json:"dumps"`
	LastDump string    `json:"last_dump,omitempty"`
}

// RegistryDirs are where recorders register, in order of preference.
func RegistryDirs() []string {
	return []string{"/run/bpfsnap", filepath.Join(os.TempDir(), "bpfsnap")}
}

func registerRecorder(output string, ring time.Duration) string {
	abs, err := filepath.Abs(output)
	if err != nil {
		abs = output
	}
	info := RecorderInfo{PID: os.Getpid(), Output: abs, Ring: ring.String(), Started: time.Now().UTC()}
	for _, dir := range RegistryDirs() {
		if os.MkdirAll(dir, 0o755) != nil {
			continue
		}
		path := filepath.Join(dir, fmt.Sprintf("ring-%d.json", info.PID))
		if writeJSON(path, info) == nil {
			return path
		}
	}
	return ""
}

func updateRegistration(path, lastDump string) {
	if path == "" {
		return
	}
	var info RecorderInfo
	if data, err := os.ReadFile(path); err == nil && json.Unmarshal(data, &info) == nil {
		info.Dumps++
		info.LastDump, _ = filepath.Abs(lastDump)
		_ = writeJSON(path, info)
	}
}

func writeJSON(path string, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// RunningRecorders lists the registered flight recorders whose process
// still runs.
func RunningRecorders() []RecorderInfo {
	var out []RecorderInfo
	for _, dir := range RegistryDirs() {
		files, _ := filepath.Glob(filepath.Join(dir, "ring-*.json"))
		for _, path := range files {
			data, err := os.ReadFile(path)
			var info RecorderInfo
			if err != nil || json.Unmarshal(data, &info) != nil || info.PID <= 0 {
				continue
			}
			if syscall.Kill(info.PID, 0) != nil {
				os.Remove(path) // a recorder killed without cleaning up
				continue
			}
			out = append(out, info)
		}
	}
	return out
}

// ringRetention is what the writer keeps of a ring window (0: not a ring).
func ringRetention(ring time.Duration) time.Duration {
	if ring <= 0 {
		return 0
	}
	return ring + ringSlack
}

// cpuHz is the CPU sampling frequency the cpu probe set reported (0
// without it): cpu trigger conditions compare sample counts with it.
func cpuHz(probes []formats.Probe) float64 {
	for _, p := range probes {
		if p.Name == "cpu" && p.Attached {
			if hz, err := strconv.ParseFloat(p.Details["freq"], 64); err == nil {
				return hz
			}
		}
	}
	return 0
}

// finishRing ends a flight recorder: the last window becomes the archive
// at -o (the dump path, so it is consistent the same way), and the
// recorder's directory goes.
func (s *Session) finishRing(w *formats.Writer, reason string) (*Result, error) {
	err := s.ring.finish(reason)
	w.Abort()
	if err != nil {
		return nil, diskError(w, err)
	}
	os.RemoveAll(w.Dir())
	a, err := formats.Open(s.opts.Output)
	if err != nil {
		return nil, err
	}
	defer a.Close()
	res := &Result{Output: s.opts.Output, Manifest: *a.Manifest(), Events: s.events.Load()}
	if st, err := os.Stat(s.opts.Output); err == nil {
		res.Bytes = st.Size()
	}
	return res, nil
}
