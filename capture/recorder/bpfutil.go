//go:build linux

package recorder

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/ringbuf"
	"golang.org/x/sys/unix"
)

// MonoNow reads CLOCK_MONOTONIC, the clock bpf_ktime_get_ns uses.
func MonoNow() uint64 {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return uint64(ts.Nano())
}

// clock reads wall and monotonic time together, for the manifest window.
func clock() (time.Time, uint64) {
	return time.Now().UTC(), MonoNow()
}

// LoadObjects loads a bpf2go spec into objs with the session's shared
// target map and filter setting. Every bpfsnap object declares `targets` and
// `filter_targets` (capture/probes/include/common.h).
func (s *Session) LoadObjects(spec *ebpf.CollectionSpec, objs any) error {
	if v, ok := spec.Variables["filter_targets"]; ok {
		if err := v.Set(s.filterTargets); err != nil {
			return fmt.Errorf("setting filter_targets: %w", err)
		}
	}
	if n := s.opts.RingPages; n > 0 {
		for _, m := range spec.Maps {
			if m.Type == ebpf.RingBuf {
				m.MaxEntries = uint32(n * os.Getpagesize())
			}
		}
	}
	opts := &ebpf.CollectionOptions{}
	if _, ok := spec.Maps["targets"]; ok && s.targets != nil {
		opts.MapReplacements = map[string]*ebpf.Map{"targets": s.targets}
	}
	if err := spec.LoadAndAssign(objs, opts); err != nil {
		var verr *ebpf.VerifierError
		if errors.As(err, &verr) {
			return fmt.Errorf("the kernel's verifier rejected the program: %v", verr)
		}
		return err
	}
	return nil
}

// DropCounters reads a probe set's kernel loss counters, and keeps their
// final values when the probe stops: Drops is read once more after Stop,
// when the map is closed, and the last second's losses went missing
// before (the flood test caught it).
type DropCounters struct {
	final map[string]uint64
}

// Read returns the frozen totals after freeze, else reads the map live.
func (d *DropCounters) Read(m *ebpf.Map, names []string) map[string]uint64 {
	if d.final != nil {
		out := make(map[string]uint64, len(d.final))
		for k, v := range d.final {
			out[k] = v
		}
		return out
	}
	return SumPerCPU(m, names)
}

// Freeze reads the totals one last time; call it after the programs are
// detached and before the map is closed.
func (d *DropCounters) Freeze(m *ebpf.Map, names []string) { d.final = SumPerCPU(m, names) }

// SumPerCPU reads a per-CPU array of u64 counters and sums each slot across
// CPUs; names maps slot index to counter name.
func SumPerCPU(m *ebpf.Map, names []string) map[string]uint64 {
	out := make(map[string]uint64, len(names))
	if m == nil {
		return out
	}
	for i, name := range names {
		var per []uint64
		if err := m.Lookup(uint32(i), &per); err != nil {
			continue
		}
		var sum uint64
		for _, v := range per {
			sum += v
		}
		out[name] = sum
	}
	return out
}

// ringPollInterval bounds how long an event submitted without a wakeup
// waits in a ring that had records at its last read; a ring found empty
// waits twice as long each time, up to ringQuietInterval. Each wakeup of
// the recorder costs ~0.3 ms of CPU on a 2-CPU VM (Go's scheduler and
// sysmon around it): two quiet rings read every 100 ms were most of an
// idle capture's ~6 ms/s.
const (
	ringPollInterval  = 100 * time.Millisecond
	ringQuietInterval = 500 * time.Millisecond
)

// RingReader drains one ring buffer on its own goroutine, handing each record
// to handle. Stop lets it empty what the kernel already wrote before it
// returns, so the end of the window is not lost.
//
// Between drains the goroutine waits in Go's netpoller on a duplicate of
// the ring's descriptor (ready), not in the ring reader's own epoll_wait:
// a goroutine blocked in a system call holds a thread and its P, which
// kept Go's sysmon thread waking every 20 µs to 10 ms to look at it (a
// sixth of the recorder's CPU under HTTP load on a 2-CPU VM, where each
// wakeup is a context switch on a core the workload needs). Parked in the
// netpoller, the reader lets every P go idle and sysmon sleep. The reads
// themselves never block (a deadline in the past: one epoll_wait with a
// zero timeout per drain).
type RingReader struct {
	rd       *ringbuf.Reader
	ready    *os.File // nil: the kernel would not poll the descriptor there; rd blocks instead
	waitRaw  syscall.RawConn
	stopping atomic.Bool
	kicked   atomic.Bool // Kick: drain now
	done     chan struct{}
	events   *atomic.Uint64
	once     sync.Once
}

// ReadRing starts reading m. handle runs on the reader goroutine only, so
// it needs no locking of its own state.
func (s *Session) ReadRing(m *ebpf.Map, handle func(raw []byte)) (*RingReader, error) {
	rd, err := ringbuf.NewReader(m)
	if err != nil {
		return nil, fmt.Errorf("opening ring buffer: %w", err)
	}
	r := &RingReader{rd: rd, done: make(chan struct{}), events: &s.events}
	r.ready, r.waitRaw = pollable(m)
	go r.loop(handle)
	return r, nil
}

// pollable registers a duplicate of m's descriptor with Go's netpoller
// (os.NewFile does for a non-blocking descriptor the kernel can poll);
// nil when that fails.
func pollable(m *ebpf.Map) (*os.File, syscall.RawConn) {
	fd, err := unix.FcntlInt(uintptr(m.FD()), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return nil, nil
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return nil, nil
	}
	f := os.NewFile(uintptr(fd), "ringbuf")
	// A file the netpoller did not take has no deadlines.
	if err := f.SetReadDeadline(time.Time{}); err != nil {
		f.Close()
		return nil, nil
	}
	raw, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, nil
	}
	return f, raw
}

func (r *RingReader) loop(handle func([]byte)) {
	defer close(r.done)
	if r.ready == nil {
		r.blockingLoop(handle)
		return
	}
	defer r.ready.Close()
	var rec ringbuf.Record
	// drain reads until the ring is empty; open is false once it is
	// closed, read whether any record came.
	drain := func() (read, open bool) {
		r.rd.SetDeadline(time.Unix(1, 0)) // never block: ErrDeadlineExceeded once empty
		for {
			switch r.next(&rec, handle) {
			case ringRecord:
				read = true
			case ringEmpty:
				return read, true
			case ringEnded:
				return read, false
			}
		}
	}
	wait := ringPollInterval
	for {
		// A Kick is answered by this drain; one that comes during it is
		// seen below, before the wait.
		r.kicked.Store(false)
		read, open := drain()
		if !open {
			return
		}
		if r.stopping.Load() {
			// Stop came after the programs were detached: this drain
			// saw everything they wrote.
			drain()
			return
		}
		if read {
			wait = ringPollInterval
		} else {
			wait = min(2*wait, ringQuietInterval)
		}
		// Programs submit without waking us (submit_flags in common.h)
		// until the ring is a quarter full; the deadline collects quiet
		// rings too. Stop and Kick move the deadline to now, after
		// setting their flag: checked again here so that this deadline
		// cannot undo theirs.
		r.ready.SetReadDeadline(time.Now().Add(wait))
		if r.stopping.Load() || r.kicked.Load() {
			continue
		}
		// The callback runs before each wait: records (or Stop, or
		// Kick) end it.
		_ = r.waitRaw.Read(func(uintptr) bool {
			return r.Pending() || r.stopping.Load() || r.kicked.Load()
		})
	}
}

// Kick has the reader drain the ring now rather than at its next
// deadline: for a reader another one waits on (AwaitProcesses), whose ring
// may be quiet enough to be read only every ringQuietInterval.
func (r *RingReader) Kick() {
	if r == nil || r.ready == nil {
		return
	}
	r.kicked.Store(true)
	r.ready.SetReadDeadline(time.Now())
}

// blockingLoop reads with the ring reader's own epoll_wait, where the
// netpoller could not take the ring's descriptor.
func (r *RingReader) blockingLoop(handle func([]byte)) {
	var rec ringbuf.Record
	// The deadline only matters when the reader has drained the ring and
	// blocks, so it is renewed when it expires rather than per record (a
	// clock read per record showed in the recorder's profile). A deadline
	// that lapsed while records streamed in costs one extra, non-blocking
	// round.
	r.rd.SetDeadline(time.Now().Add(ringPollInterval))
	for {
		switch r.next(&rec, handle) {
		case ringEmpty:
			r.rd.SetDeadline(time.Now().Add(ringPollInterval))
		case ringEnded:
			return
		}
	}
}

type ringRead int

const (
	ringRecord ringRead = iota // a record was handled (or a corrupt one skipped)
	ringEmpty                  // the deadline passed with the ring empty
	ringEnded                  // the reader was flushed or closed
)

// next reads one record into rec and hands it to handle.
func (r *RingReader) next(rec *ringbuf.Record, handle func([]byte)) ringRead {
	err := r.rd.ReadInto(rec)
	switch {
	case err == nil:
		r.events.Add(1)
		handle(rec.RawSample)
	case errors.Is(err, os.ErrDeadlineExceeded):
		return ringEmpty
	case errors.Is(err, ringbuf.ErrFlushed), errors.Is(err, ringbuf.ErrClosed), errors.Is(err, os.ErrClosed):
		return ringEnded
	}
	// Corrupt records cannot come from the kernel; keep going.
	return ringRecord
}

// Pending reports whether records wait in the ring.
func (r *RingReader) Pending() bool { return r.rd.AvailableBytes() > 0 }

// Stop drains the ring and closes it. Detach the programs first, so nothing
// new arrives while it drains.
func (r *RingReader) Stop() {
	if r == nil {
		return
	}
	r.once.Do(func() {
		if r.ready != nil {
			// The loop drains once more after it sees stopping, and the
			// deadline ends a wait in progress.
			r.stopping.Store(true)
			r.ready.SetReadDeadline(time.Now())
		} else {
			// Flush makes the reader return every record already in the
			// ring, then ErrFlushed, which ends the loop.
			r.rd.Flush()
		}
		<-r.done
		r.rd.Close()
	})
}

// CString converts a NUL-terminated C char array to a Go string.
func CString[T int8 | uint8](b []T) string {
	out := make([]byte, 0, len(b))
	for _, c := range b {
		if c == 0 {
			break
		}
		out = append(out, byte(c))
	}
	return string(out)
}

// SetVariables sets a spec's `const volatile` variables before it is
// loaded; a name the object lacks is an error (the C and Go sides drifted).
func SetVariables(spec *ebpf.CollectionSpec, vars map[string]any) error {
	for name, v := range vars {
		sv, ok := spec.Variables[name]
		if !ok {
			return fmt.Errorf("the object lacks variable %s", name)
		}
		if err := sv.Set(v); err != nil {
			return fmt.Errorf("setting %s: %w", name, err)
		}
	}
	return nil
}

// RecursionMisses sums the times the kernel skipped the programs because
// one of them was already running on that CPU (a tracepoint hit from
// inside a program, or a program interrupted by the same hook): each is an
// event the probe set never saw, so it is shown as a loss, not left out.
func RecursionMisses(progs ...*ebpf.Program) uint64 {
	var n uint64
	for _, p := range progs {
		if p == nil {
			continue
		}
		if st, err := p.Stats(); err == nil {
			n += st.RecursionMisses
		}
	}
	return n
}
