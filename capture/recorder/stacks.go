//go:build linux

package recorder

import (
	"fmt"
	"hash/fnv"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/bpfsnap/bpfsnap/formats"
	"github.com/bpfsnap/bpfsnap/internal/symbolize"
)

// maxOpenBinaries bounds the file handles the recorder keeps for
// symbolization; binaries beyond it are reopened by path at the end.
const maxOpenBinaries = 2048

// The state of an exited process (its mappings snapshot, its raw-stack
// cache) is kept exitGrace after its exit was handled, in the process
// events' own clock: samples of that life still in flight in other rings
// resolve with it. Frames are named by (binary, offset), so nothing else
// of the life is needed once they are recorded. maxRetired bounds the
// states kept for the grace under a storm of short lives: the oldest go
// first (a sample later than that re-reads /proc, as for an unknown pid).
const (
	exitGrace  = 2 * time.Second
	maxRetired = 8192
)

// mapsRefreshEvery rate-limits re-reading a process's maps when an address
// falls outside every known mapping (the dynamic loader mapped a library
// after we looked, or a JIT).
const mapsRefreshEvery = 200 * time.Millisecond

// StackRecorder deduplicates call stacks into the `stacks` table and
// collects the distinct frames, which it symbolizes at the end of the
// window into the `frames` table. Mappings are snapshotted and binaries
// opened when a process is first seen, so processes that exit within the
// window are still symbolized. Shared by every probe set that records
// stacks; safe for concurrent use.
type StackRecorder struct {
	s *Session

	mu        sync.Mutex
	procs     map[uint32]*procState
	binaries  map[binaryKey]*binaryRef
	byMaps    map[mapsKey]*binaryRef // the same binaries, by their maps line
	frames    map[uint64]*pendingFrame
	frameIDs  []uint64 // in first-seen order, for a stable frames table
	stacks    map[uint64]bool
	rawStacks map[uint64]uint64 // hash(pid, life, raw ips) -> stack id
	// lives numbers the programs pids run (fork and exec start a new
	// one): the raw-stack cache is keyed by the life, so a reused pid or
	// a new program at the same addresses (non-PIE binaries) is not given
	// the stacks of the previous one.
	lives uint64
	// retired holds, oldest first, the states of exited lives (and of
	// lives met only through a sample) until exitGrace after eventNs,
	// the latest process event's time.
	retired  []retiredState
	eventNs  uint64
	stackTab *formats.TableWriter[formats.Stack]
	frameTab *formats.TableWriter[formats.Frame]
	scratch  []uint64
	// resolved holds the frames rows of every frame symbolized so far (a
	// flight recorder's dumps symbolize the frames seen by then; later
	// dumps and the end resolve only the new ones).
	resolved   map[uint64][]formats.Frame
	unresolved uint64
	ksyms      *symbolize.Kallsyms
	// readMaps reads a process's mappings; /proc/PID/maps unless a test
	// feeds synthetic lives.
	readMaps func(pid uint32) ([]symbolize.Mapping, error)
}

// procState is what the recorder keeps of one life of a process.
type procState struct {
	life      uint64
	maps      []symbolize.Mapping
	refreshed time.Time
	refreshes int
	// bins holds the binary opened for each mapping (by start address)
	// while the process was alive: samples read after it exited still
	// find their binary here.
	bins map[uint64]*binaryRef
	// raws are the rawStacks keys of this life, dropped with it.
	raws             []uint64
	retired, dropped bool
}

type retiredState struct {
	pid uint32
	p   *procState
	at  uint64 // process event time when it was retired
}

type binaryKey struct{ dev, ino uint64 }

// mapsKey is a mapped file as a maps line names it (the device there may
// differ from stat's on overlayfs, so it is a key of its own).
type mapsKey struct {
	dev  string
	ino  uint64
	path string
}

type binaryRef struct {
	file    *os.File // nil once over maxOpenBinaries: reopen by path
	path    string   // as the process saw it
	reopen  string   // host path to reopen it by
	buildID string
	parsed  *symbolize.Binary
	err     error
}

type pendingFrame struct {
	kernel bool
	addr   uint64
	offset uint64
	module string
	bin    *binaryRef
}

// Stacks returns the session's stack recorder, creating it on first use.
func (s *Session) Stacks() *StackRecorder {
	s.stacksOnce.Do(func() {
		r := &StackRecorder{
			s:         s,
			procs:     map[uint32]*procState{},
			binaries:  map[binaryKey]*binaryRef{},
			byMaps:    map[mapsKey]*binaryRef{},
			frames:    map[uint64]*pendingFrame{},
			stacks:    map[uint64]bool{},
			rawStacks: map[uint64]uint64{},
			stackTab:  formats.NewTable[formats.Stack](s.writer, formats.TableStacks),
			frameTab:  formats.NewTable[formats.Frame](s.writer, formats.TableFrames),
		}
		// Snapshot mappings as soon as a process appears: an exec'd
		// program may be gone before its first sample is read.
		s.OnProcess(r.onProcess)
		s.AtEnd(r.symbolize)
		s.stacks = r
	})
	return s.stacks
}

// onProcess keeps the per-life state: a fork or exec starts a new life
// (earlier mappings and cached stacks of the pid are void), an exit
// retires the life's state for exitGrace.
func (r *StackRecorder) onProcess(ev formats.ProcessEvent) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.eventNs = max(r.eventNs, ev.TimeNs)
	switch ev.Kind {
	case formats.ProcessExit:
		if p := r.procs[ev.PID]; p != nil {
			r.retire(ev.PID, p)
		}
	case formats.ProcessExec, formats.ProcessFork:
		if p := r.procs[ev.PID]; p != nil {
			r.drop(ev.PID, p)
		}
		r.newLife(ev.PID)
	default:
		if r.procs[ev.PID] == nil {
			r.newLife(ev.PID)
		}
	}
	r.expire()
}

// newLife snapshots a process's mappings as a new life of its pid.
func (r *StackRecorder) newLife(pid uint32) *procState {
	r.lives++
	p := &procState{life: r.lives, bins: map[uint64]*binaryRef{}}
	r.procs[pid] = p
	r.refresh(pid, p)
	return p
}

// retire queues a life's state to be dropped exitGrace from now.
func (r *StackRecorder) retire(pid uint32, p *procState) {
	if p.retired || p.dropped {
		return
	}
	p.retired = true
	r.retired = append(r.retired, retiredState{pid: pid, p: p, at: r.eventNs})
	r.expire()
}

// expire drops the retired states whose grace has passed, and the oldest
// beyond maxRetired.
func (r *StackRecorder) expire() {
	n := 0
	for n < len(r.retired) {
		e := r.retired[n]
		if len(r.retired)-n <= maxRetired && e.at+uint64(exitGrace) > r.eventNs {
			break
		}
		r.drop(e.pid, e.p)
		r.retired[n] = retiredState{}
		n++
	}
	if n > 0 {
		r.retired = append(r.retired[:0], r.retired[n:]...)
	}
}

// drop forgets a life: its mappings, its raw-stack cache, and the
// unwinder's module list built from them. Its frames and stacks stay.
func (r *StackRecorder) drop(pid uint32, p *procState) {
	if p.dropped {
		return
	}
	p.dropped = true
	for _, raw := range p.raws {
		delete(r.rawStacks, raw)
	}
	p.raws, p.maps, p.bins = nil, nil, nil
	if r.procs[pid] == p {
		delete(r.procs, pid)
	}
	if v, ok := recorderUnwinders.Load(r); ok {
		u := v.(*userUnwinder)
		u.mu.Lock()
		if up := u.procs[pid]; up != nil && up.version.Equal(p.refreshed) {
			delete(u.procs, pid)
		}
		u.mu.Unlock()
	}
}

// Record returns the id of the stack made of kernel and user instruction
// pointers (leaf first, as bpf_get_stack returns them) seen in process pid.
// It returns 0 for an empty stack.
func (r *StackRecorder) Record(pid uint32, kernel, user []uint64) uint64 {
	if len(kernel) == 0 && len(user) == 0 {
		return 0
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	p := r.snapshot(pid)
	raw := hashIPs(pid, p.life, kernel, user)
	if id, ok := r.rawStacks[raw]; ok {
		return id
	}
	ids := r.scratch[:0]
	for _, ip := range kernel {
		ids = append(ids, r.kernelFrame(ip))
	}
	unmapped := false
	for _, ip := range user {
		id, ok := r.userFrame(pid, ip)
		ids = append(ids, id)
		unmapped = unmapped || !ok
	}
	r.scratch = ids
	id := hashU64s(ids)
	// A stack with an address outside every known mapping is not cached:
	// the next sighting may resolve once the maps have been re-read.
	if !unmapped && r.procs[pid] == p {
		r.rawStacks[raw] = id
		p.raws = append(p.raws, raw)
	}
	if !r.stacks[id] {
		r.stacks[id] = true
		_ = r.stackTab.Write(formats.Stack{StackID: id, PID: pid, FrameIDs: append([]uint64(nil), ids...)})
	}
	return id
}

func (r *StackRecorder) kernelFrame(ip uint64) uint64 {
	id := hashU64s([]uint64{1, ip})
	if _, ok := r.frames[id]; !ok {
		r.frames[id] = &pendingFrame{kernel: true, addr: ip}
		r.frameIDs = append(r.frameIDs, id)
	}
	return id
}

// userFrame returns the frame id of a user address and whether the address
// fell in a known mapping.
func (r *StackRecorder) userFrame(pid uint32, ip uint64) (uint64, bool) {
	p := r.snapshot(pid)
	m, ok := symbolize.Find(p.maps, ip)
	// The first misses of a process re-read its maps at once (it may have
	// exec'd or loaded libraries since the snapshot); later ones at most
	// every mapsRefreshEvery.
	if !ok && (p.refreshes < 4 || time.Since(p.refreshed) > mapsRefreshEvery) {
		r.refresh(pid, p)
		m, ok = symbolize.Find(p.maps, ip)
	}
	var id uint64
	var f pendingFrame
	switch {
	case ok && m.FileBacked():
		bin := p.bins[m.Start]
		if bin == nil {
			bin = r.binary(pid, m)
			p.bins[m.Start] = bin
		}
		key := bin.buildID
		if key == "" {
			key = bin.path
		}
		off := m.FileOffset(ip)
		id = hashString(key, off)
		f = pendingFrame{addr: ip, offset: off, module: m.Path, bin: bin}
	case ok:
		// Anonymous or special mapping ([vdso], JIT code): the address
		// only means something inside this process. A named one ([vdso])
		// keeps the offset in it; anonymous code has no module and is
		// shown as [unknown].
		id = hashU64s([]uint64{2, uint64(pid), ip})
		f = pendingFrame{addr: ip, module: m.Path}
		if m.Path != "" {
			f.offset = m.FileOffset(ip)
		}
	default:
		// No mapping: no module, shown as [unknown].
		id = hashU64s([]uint64{3, uint64(pid), ip})
		f = pendingFrame{addr: ip}
	}
	if _, seen := r.frames[id]; !seen {
		r.frames[id] = &f
		r.frameIDs = append(r.frameIDs, id)
	}
	return id, ok
}

// snapshot returns the process's mappings, reading them on first sight.
// A life met first through a sample, not a process event (its state was
// dropped after its exit, or its events were lost), is retired at once:
// its state lasts the grace time, and a later sample reads /proc again.
func (r *StackRecorder) snapshot(pid uint32) *procState {
	p := r.procs[pid]
	if p == nil {
		p = r.newLife(pid)
		r.retire(pid, p)
	}
	return p
}

func (r *StackRecorder) refresh(pid uint32, p *procState) {
	p.refreshed = time.Now()
	p.refreshes++
	read := r.readMaps
	if read == nil {
		read = r.procMaps
	}
	maps, err := read(pid)
	if err != nil {
		return
	}
	var exec []symbolize.Mapping
	for _, m := range maps {
		if m.Executable() {
			exec = append(exec, m)
		}
	}
	p.maps = exec
	p.bins = map[uint64]*binaryRef{}
	for _, m := range exec {
		if m.FileBacked() {
			p.bins[m.Start] = r.binary(pid, m)
		}
	}
}

// procMaps reads /proc/PID/maps.
func (r *StackRecorder) procMaps(pid uint32) ([]symbolize.Mapping, error) {
	f, err := os.Open(filepath.Join(r.s.procRoot, Itoa(pid), "maps"))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return symbolize.ParseMaps(f)
}

// binary opens the file behind a mapping once per (device, inode). The
// map_files link works for deleted files and container paths alike; the
// path under /proc/PID/root is the fallback.
func (r *StackRecorder) binary(pid uint32, m symbolize.Mapping) *binaryRef {
	// A file already found through another process's mapping is known
	// by the device and inode /proc/PID/maps shows: every new life of a
	// program costs no stat of its libraries.
	mk := mapsKey{m.Dev, m.Inode, m.Path}
	if b := r.byMaps[mk]; b != nil && m.Inode != 0 {
		return b
	}
	pidDir := filepath.Join(r.s.procRoot, Itoa(pid))
	candidates := []string{
		filepath.Join(pidDir, "map_files", fmt.Sprintf("%x-%x", m.Start, m.End)),
		filepath.Join(pidDir, "root", m.Path),
	}
	for _, c := range candidates {
		st, err := os.Stat(c)
		if err != nil {
			continue
		}
		sys, ok := st.Sys().(*syscall.Stat_t)
		if !ok {
			continue
		}
		key := binaryKey{uint64(sys.Dev), sys.Ino}
		if b := r.binaries[key]; b != nil {
			r.byMaps[mk] = b
			return b
		}
		b := &binaryRef{path: m.Path, reopen: filepath.Join(pidDir, "root", m.Path)}
		if len(r.binaries) < maxOpenBinaries {
			// Keep the file open (it outlives the process) but parse its
			// symbols only at the end, for binaries that have frames.
			if f, err := os.Open(c); err == nil {
				b.file = f
				b.buildID = symbolize.ReadBuildID(f)
			}
		}
		r.binaries[key] = b
		r.byMaps[mk] = b
		return b
	}
	// The process is gone and nothing can be opened: keep the path so a
	// debug file may still resolve it later.
	key := binaryKey{dev: ^uint64(0), ino: uint64(hashString(m.Path, 0))}
	if b := r.binaries[key]; b != nil {
		return b
	}
	b := &binaryRef{path: m.Path}
	r.binaries[key] = b
	return b
}

// symbolize resolves every distinct frame and writes the frames table. It
// runs once, after the probe sets stopped, and closes the binaries.
func (r *StackRecorder) symbolize() error {
	rows := r.FrameRows()
	r.mu.Lock()
	for _, b := range r.binaries {
		if b.file != nil {
			b.file.Close()
		}
	}
	unresolved := r.unresolved
	r.mu.Unlock()
	if unresolved > 0 {
		r.s.writer.UpdateManifest(func(m *formats.Manifest) { m.Drops["stacks.unsymbolized_frames"] = unresolved })
	}
	return r.frameTab.Write(rows...)
}

// FrameRows returns the frames table rows of every frame seen so far,
// resolving those not resolved before (so each is symbolized once however
// many flight recorder dumps ask).
func (r *StackRecorder) FrameRows() []formats.Frame {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.resolved == nil {
		r.resolved = map[uint64][]formats.Frame{}
	}
	rows := make([]formats.Frame, 0, len(r.frameIDs))
	for _, id := range r.frameIDs {
		fr, ok := r.resolved[id]
		if !ok {
			fr = r.resolveFrame(id)
			r.resolved[id] = fr
		}
		rows = append(rows, fr...)
	}
	return rows
}

// resolveFrame symbolizes one frame: its row, after the rows of the
// functions inlined at its address.
func (r *StackRecorder) resolveFrame(id uint64) []formats.Frame {
	pf := r.frames[id]
	row := formats.Frame{FrameID: id, Kernel: pf.kernel, Address: pf.addr, Module: pf.module, FileOffset: pf.offset}
	var rows []formats.Frame
	switch {
	case pf.kernel:
		row.Module = "[kernel]"
		if r.ksyms == nil {
			if f, err := os.Open(filepath.Join(r.s.procRoot, "kallsyms")); err == nil {
				r.ksyms, _ = symbolize.ParseKallsyms(f)
				f.Close()
			}
		}
		if r.ksyms != nil {
			if name, mod, ok := r.ksyms.Resolve(pf.addr); ok {
				row.Function = name
				if mod != "" {
					row.Module = "[" + mod + "]"
				}
			}
		}
	case pf.bin != nil:
		row.BuildID = pf.bin.buildID
		if b := pf.bin.open(); b != nil {
			rows = appendInlined(rows, row, b.ResolveFrames(pf.offset), &row)
		}
	}
	if row.Function == "" {
		r.unresolved++
	}
	return append(rows, row)
}

// appendInlined fills phys from the outermost of frames (innermost first,
// as symbolize.ResolveFrames gives them) and appends one row per inlined
// function before it, linked to phys by inline_of (formats.Frame).
func appendInlined(rows []formats.Frame, base formats.Frame, frames []symbolize.Location, phys *formats.Frame) []formats.Frame {
	if len(frames) == 0 {
		return rows
	}
	outer := frames[len(frames)-1]
	phys.Function, phys.File, phys.Line = outer.Function, outer.File, uint32(max(outer.Line, 0))
	inl := frames[:len(frames)-1]
	if len(inl) > formats.MaxInlineDepth {
		inl = inl[len(inl)-formats.MaxInlineDepth:] // keep the outer ones
	}
	for i, loc := range inl {
		depth := uint32(len(inl) - i) // the innermost is the deepest
		row := base
		row.FrameID = formats.InlineFrameID(base.FrameID, depth)
		row.Function, row.File, row.Line = loc.Function, loc.File, uint32(max(loc.Line, 0))
		row.Inlined, row.InlineOf, row.InlineDepth = true, base.FrameID, depth
		rows = append(rows, row)
	}
	return rows
}

// open returns the parsed binary: from the file kept open, or reopened by
// path when it was not kept.
func (b *binaryRef) open() *symbolize.Binary {
	if b.parsed != nil || b.err != nil {
		return b.parsed
	}
	switch {
	case b.file != nil:
		b.parsed, b.err = symbolize.OpenBinary(b.file)
	case b.reopen != "":
		b.parsed, b.err = symbolize.OpenFile(b.reopen)
	default:
		b.err = fmt.Errorf("%s: not reachable", b.path)
	}
	return b.parsed
}

func hashU64s(vs []uint64) uint64 {
	h := fnv.New64a()
	var buf [8]byte
	for _, v := range vs {
		for i := range buf {
			buf[i] = byte(v >> (8 * i))
		}
		h.Write(buf[:])
	}
	return nonZero(h.Sum64())
}

func hashIPs(pid uint32, life uint64, kernel, user []uint64) uint64 {
	h := fnv.New64a()
	var buf [8]byte
	put := func(v uint64) {
		for i := range buf {
			buf[i] = byte(v >> (8 * i))
		}
		h.Write(buf[:])
	}
	put(uint64(pid))
	put(life)
	for _, v := range kernel {
		put(v)
	}
	put(^uint64(0)) // separator: the same ips split differently differ
	for _, v := range user {
		put(v)
	}
	return h.Sum64()
}

func hashString(s string, v uint64) uint64 {
	h := fnv.New64a()
	h.Write([]byte(s))
	var buf [8]byte
	for i := range buf {
		buf[i] = byte(v >> (8 * i))
	}
	h.Write(buf[:])
	return nonZero(h.Sum64())
}

// nonZero keeps 0 free to mean "no stack".
func nonZero(v uint64) uint64 {
	if v == 0 {
		return 1
	}
	return v
}
