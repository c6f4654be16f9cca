package formats

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// A flight recorder (capture --ring) writes chunks as any capture does, but
// keeps only those of its last window on disk: after every seal, chunks of
// event tables sealed before the window are deleted (RingRetained tables
// stay whole). A dump (Snapshot) bundles the chunks of the window, plus
// tables the caller writes for it (the frames symbolized so far, the
// processes alive in the window), into an ordinary archive, while recording
// goes on.

// ChunkInfo describes a sealed chunk file.
type ChunkInfo struct {
	Table string
	File  string // the file's name in the partial directory
	Rows  int64
	Bytes int64
	// OpenedMono and SealedMono bound when its rows were written
	// (CLOCK_MONOTONIC ns from the writer's Clock; 0 without one).
	OpenedMono, SealedMono uint64
	// MinTime and MaxTime bound the rows' own times, for tables whose
	// rows are Timed (0 otherwise): events reach the writer a little
	// after they happen, so these, not the write times, bound a window.
	MinTime, MaxTime uint64
}

// Timed is implemented by the rows of event tables: EventTime is the
// row's time on CLOCK_MONOTONIC (ns).
type Timed interface{ EventTime() uint64 }

func (r CPUSample) EventTime() uint64   { return r.TimeNs }
func (r HTTPRequest) EventTime() uint64 { return r.RequestNs }
func (r MemEvent) EventTime() uint64    { return r.TimeNs }
func (r StackBytes) EventTime() uint64  { return r.TimeNs }

// Chunks lists the chunks sealed and still on disk, oldest first.
func (w *Writer) Chunks() []ChunkInfo {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]ChunkInfo(nil), w.chunks...)
}

// DiskBytes is the size of the chunks on disk (in ring mode, less than
// BytesWritten).
func (w *Writer) DiskBytes() int64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	var n int64
	for _, c := range w.chunks {
		n += c.Bytes
	}
	return n
}

// addChunk records a chunk sealed by a table writer.
func (w *Writer) addChunk(c ChunkInfo) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.chunks = append(w.chunks, c)
}

// monoNow reads the writer's clock (0 without one).
func (w *Writer) monoNow() uint64 {
	if w.now == nil {
		return 0
	}
	_, mono := w.now()
	return mono
}

// expire deletes, in ring mode, the event chunks sealed before the ring
// window, unless a snapshot holds them.
func (w *Writer) expire() error {
	if w.ring <= 0 {
		return nil
	}
	now := w.monoNow()
	if now <= uint64(w.ring) {
		return nil
	}
	cut := now - uint64(w.ring)
	w.mu.Lock()
	if w.holds > 0 {
		w.mu.Unlock()
		return nil
	}
	var drop []ChunkInfo
	kept := w.chunks[:0]
	for _, c := range w.chunks {
		if !RingRetained(c.Table) && c.SealedMono <= cut {
			drop = append(drop, c)
			continue
		}
		kept = append(kept, c)
	}
	w.chunks = kept
	// The window on disk now starts at the oldest event chunk kept, so a
	// crashed recorder's directory recovers to an archive that says so.
	if len(drop) > 0 {
		start := now
		for _, c := range kept {
			if !RingRetained(c.Table) && c.OpenedMono < start {
				start = c.OpenedMono
			}
		}
		win := &w.manifest.Window
		if start > win.StartMonoNs {
			win.StartWall = win.WallTime(start)
			win.StartMonoNs = start
		}
	}
	w.mu.Unlock()
	for _, c := range drop {
		if err := os.Remove(filepath.Join(w.dir, c.File)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("removing expired chunk: %w", err)
		}
	}
	return nil
}

// SnapshotOptions says what goes into a snapshot.
type SnapshotOptions struct {
	// Manifest is the snapshot's manifest (its window, drops, the trigger);
	// Tables and Complete are filled in.
	Manifest Manifest
	// Keep selects the chunks of the recorder's partial directory to
	// include; they are linked, not copied, when the filesystem allows.
	Keep func(ChunkInfo) bool
	// Extra writes tables of the snapshot's own (through NewTable on the
	// writer it is given): e.g. frames symbolized for it. Their names must
	// not be tables Keep selects.
	Extra func(*Writer) error
}

// Snapshot seals what was written so far and writes an archive at output
// from the chunks opts.Keep selects and the tables opts.Extra writes. The
// writer goes on: its chunks are only held (not expired) while the
// snapshot is made.
func (w *Writer) Snapshot(output string, opts SnapshotOptions) error {
	defer w.HoldChunks()()
	if err := w.Seal(); err != nil {
		w.fail(err)
		return err
	}
	var keep []ChunkInfo
	for _, c := range w.Chunks() {
		if opts.Keep == nil || opts.Keep(c) {
			keep = append(keep, c)
		}
	}
	m := opts.Manifest
	m.Tables = map[string]int64{}
	for _, c := range keep {
		m.Tables[c.Table] += c.Rows
	}
	m.Complete = false
	dw, err := Create(output, m, CreateOptions{SealInterval: time.Hour})
	if err != nil {
		return err
	}
	for _, c := range keep {
		if err := linkOrCopy(filepath.Join(w.dir, c.File), filepath.Join(dw.dir, c.File)); err != nil {
			dw.Abort()
			os.RemoveAll(dw.dir)
			return fmt.Errorf("snapshot: %w", err)
		}
	}
	if opts.Extra != nil {
		if err := opts.Extra(dw); err != nil {
			dw.Abort()
			os.RemoveAll(dw.dir)
			return fmt.Errorf("snapshot: %w", err)
		}
	}
	if err := dw.Finish(nil); err != nil {
		dw.Abort()
		os.RemoveAll(dw.dir)
		return err
	}
	return nil
}

// linkOrCopy makes dst a hard link to src, or a copy where links are not
// possible (another filesystem).
func linkOrCopy(src, dst string) error {
	if err := os.Link(src, dst); err == nil {
		return nil
	}
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o640)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// Observe registers fn to see every batch of rows written to table, as
// the []T slice the table writer got (before it is written). It must be
// registered before the table is created (NewTable). fn runs on the
// writing goroutine and must not block or keep the slice.
func (w *Writer) Observe(table string, fn func(rows any)) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.observers == nil {
		w.observers = map[string][]func(any){}
	}
	w.observers[table] = append(w.observers[table], fn)
}

func (w *Writer) observersOf(table string) []func(any) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.observers[table]
}

// ReadChunkFiles reads every row of the given chunk files of dir (a
// recorder's partial directory) in order: a flight recorder reads back its
// processes table this way to write the ones alive in a dump's window.
func ReadChunkFiles[T any](dir string, files []string) ([]T, error) {
	var out []T
	for _, name := range files {
		f, err := os.Open(filepath.Join(dir, name))
		if err != nil {
			return nil, err
		}
		st, err := f.Stat()
		if err != nil {
			f.Close()
			return nil, err
		}
		c := chunkRef{name: name, r: f, size: st.Size()}
		err = readChunk(c, func() []T { return make([]T, 1024) }, func(rows []T) error {
			out = append(out, rows...)
			return nil
		})
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
	}
	return out, nil
}

// HoldChunks keeps every chunk on disk (nothing expires) until release is
// called: a flight recorder holds them from the moment a dump is asked
// for until it is written.
func (w *Writer) HoldChunks() (release func()) {
	w.mu.Lock()
	w.holds++
	w.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			w.mu.Lock()
			w.holds--
			w.mu.Unlock()
		})
	}
}
