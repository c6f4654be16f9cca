package formats

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"
)

// PartialSuffix is appended to the output path for the directory that holds
// sealed chunks while a capture runs (and after it crashes).
const PartialSuffix = ".partial"

// Defaults for sealing. A chunk is sealed at least every SealInterval, so a
// crash loses at most that much, and before it holds MaxChunkRows rows, so
// the writer's memory stays flat whatever the event rate.
const (
	DefaultSealInterval = time.Second
	DefaultMaxChunkRows = 256 * 1024
)

// Writer writes one archive: sealed chunk files plus manifest.json in
// "<output>.partial/", bundled into the single file <output> by Finish.
// It is safe for concurrent use.
type Writer struct {
	output string
	dir    string

	// MaxChunkRows may be lowered before the first write (tests use it to
	// force many chunks).
	MaxChunkRows int

	mu       sync.Mutex
	manifest Manifest
	tables   []sealer
	bytes    int64
	// err is the first failure: set once under mu, read without it (every
	// row written checks it; a lock there showed in the recorder's profile).
	err      atomic.Pointer[error]
	failed   chan struct{}
	stop     chan struct{}
	loopDone chan struct{}
	now      func() (time.Time, uint64)

	// Flight recorder state (ring.go).
	ring      time.Duration // keep event chunks of this last window only; 0 keeps all
	chunks    []ChunkInfo   // sealed chunks on disk, oldest first
	holds     int           // snapshots in progress: nothing expires
	observers map[string][]func(any)
}

// sealer is the type-erased side of a TableWriter[T] that the Writer drives.
type sealer interface {
	tableName() string
	seal() (bytes int64, err error)
	rowsTotal() int64
	abort()
}

// CreateOptions configures Create.
type CreateOptions struct {
	// SealInterval overrides DefaultSealInterval when positive.
	SealInterval time.Duration
	// Clock returns wall time and CLOCK_MONOTONIC nanoseconds read together;
	// it is used to keep the manifest's provisional window end current, and
	// to date chunks (ChunkInfo).
	Clock func() (time.Time, uint64)
	// Ring, when positive, makes the writer a flight recorder's: after
	// each seal it deletes the chunks of event tables sealed more than
	// Ring ago (ring.go). Needs Clock.
	Ring time.Duration
}

// Create makes "<output>.partial/" and writes the initial manifest into it.
// It refuses to reuse an existing partial directory: that is a crashed
// capture somebody may want to recover.
func Create(output string, m Manifest, opts CreateOptions) (*Writer, error) {
	dir := output + PartialSuffix
	if err := os.Mkdir(dir, 0o750); err != nil {
		if errors.Is(err, os.ErrExist) {
			return nil, fmt.Errorf("%s already exists (a crashed capture? run `bpfsnap recover %s` or remove it)", dir, dir)
		}
		return nil, fmt.Errorf("creating %s: %w", dir, err)
	}
	m.FormatVersion = FormatVersion
	if m.Tables == nil {
		m.Tables = map[string]int64{}
	}
	if m.Drops == nil {
		m.Drops = map[string]uint64{}
	}
	w := &Writer{
		output:       output,
		dir:          dir,
		MaxChunkRows: DefaultMaxChunkRows,
		manifest:     m,
		failed:       make(chan struct{}),
		stop:         make(chan struct{}),
		loopDone:     make(chan struct{}),
		now:          opts.Clock,
		ring:         opts.Ring,
	}
	if err := w.writeManifestLocked(); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	interval := opts.SealInterval
	if interval <= 0 {
		interval = DefaultSealInterval
	}
	go w.sealLoop(interval)
	return w, nil
}

// Dir is the partial directory the chunks are written to.
func (w *Writer) Dir() string { return w.dir }

// Output is the final archive path.
func (w *Writer) Output() string { return w.output }

// Failed is closed when a write or seal fails (e.g. the disk is full); Err
// then returns the cause. The capture should stop.
func (w *Writer) Failed() <-chan struct{} { return w.failed }

// Err returns the first write error, if any.
func (w *Writer) Err() error {
	if p := w.err.Load(); p != nil {
		return *p
	}
	return nil
}

// BytesWritten is the size of all sealed chunks so far.
func (w *Writer) BytesWritten() int64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.bytes
}

// UpdateManifest lets the capture change the manifest (drop counters, probe
// status); the change reaches disk at the next seal.
func (w *Writer) UpdateManifest(fn func(*Manifest)) {
	w.mu.Lock()
	defer w.mu.Unlock()
	fn(&w.manifest)
}

// Manifest returns a copy of the current manifest.
func (w *Writer) Manifest() Manifest {
	w.mu.Lock()
	defer w.mu.Unlock()
	return cloneManifest(w.manifest)
}

func (w *Writer) register(s sealer) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.tables = append(w.tables, s)
}

// fail records the first error and wakes whoever watches Failed.
func (w *Writer) fail(err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.err.Load() == nil {
		w.err.Store(&err)
		close(w.failed)
	}
}

func (w *Writer) sealLoop(interval time.Duration) {
	defer close(w.loopDone)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-w.stop:
			return
		case <-t.C:
			if err := w.Seal(); err != nil {
				w.fail(err)
				return
			}
		}
	}
}

// Seal seals every table's open chunk and rewrites the manifest, so that
// everything written so far survives a crash.
func (w *Writer) Seal() error {
	w.mu.Lock()
	tables := append([]sealer(nil), w.tables...)
	w.mu.Unlock()
	var sealed int64
	totals := make([]int64, len(tables))
	for i, t := range tables {
		n, err := t.seal()
		sealed += n
		if err != nil {
			return err
		}
		totals[i] = t.rowsTotal()
	}
	w.mu.Lock()
	w.bytes += sealed
	for i, t := range tables {
		w.manifest.Tables[t.tableName()] = totals[i]
	}
	if w.now != nil {
		// A provisional end: after a crash, recover keeps the last one.
		w.manifest.Window.EndWall, w.manifest.Window.EndMonoNs = w.now()
	}
	err := w.writeManifestLocked()
	w.mu.Unlock()
	if err != nil {
		return err
	}
	return w.expire()
}

func (w *Writer) writeManifestLocked() error {
	data, err := json.MarshalIndent(w.manifest, "", "  ")
	if err != nil {
		return fmt.Errorf("encoding manifest: %w", err)
	}
	return writeFileAtomic(filepath.Join(w.dir, ManifestName), data)
}

// Finish ends the capture cleanly: it seals the last chunks, marks the
// manifest complete, bundles everything into the output file and removes
// the partial directory. On error the partial directory is left in place
// with everything sealed so far.
func (w *Writer) Finish(update func(*Manifest)) error {
	w.stopLoop()
	if err := w.Err(); err != nil {
		return err
	}
	w.UpdateManifest(func(m *Manifest) {
		if update != nil {
			update(m)
		}
		m.Complete = true
	})
	if err := w.Seal(); err != nil {
		w.fail(err)
		return err
	}
	if err := Bundle(w.dir, w.output); err != nil {
		return err
	}
	return os.RemoveAll(w.dir)
}

// Abort stops sealing and leaves the partial directory as it is, with
// every chunk sealed so far, for `bpfsnap recover`.
func (w *Writer) Abort() {
	w.stopLoop()
	w.mu.Lock()
	tables := append([]sealer(nil), w.tables...)
	w.mu.Unlock()
	for _, t := range tables {
		t.abort()
	}
}

func (w *Writer) stopLoop() {
	select {
	case <-w.stop:
	default:
		close(w.stop)
	}
	<-w.loopDone
}

func cloneManifest(m Manifest) Manifest {
	data, _ := json.Marshal(m)
	var c Manifest
	_ = json.Unmarshal(data, &c)
	return c
}

// writeFileAtomic writes data to a temporary name, fsyncs it, renames it
// into place and fsyncs the directory, so readers see the old or the new
// content and never a torn file.
func writeFileAtomic(path string, data []byte) error {
	tmp := tmpName(path)
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o640)
	if err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		os.Remove(tmp)
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return commitFile(f, tmp, path)
}

// commitFile fsyncs and closes f (open on tmp) and renames it to path.
func commitFile(f *os.File, tmp, path string) error {
	if err := f.Sync(); err != nil {
		f.Close()
		os.Remove(tmp)
		return fmt.Errorf("syncing %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("closing %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("renaming %s: %w", path, err)
	}
	return syncDir(filepath.Dir(path))
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("opening %s: %w", dir, err)
	}
	defer d.Close()
	// Some filesystems (and Windows) do not support fsync on directories;
	// the rename is still atomic there, so only real I/O errors matter.
	if err := d.Sync(); err != nil && !errors.Is(err, os.ErrInvalid) && !isNotSupported(err) {
		return fmt.Errorf("syncing %s: %w", dir, err)
	}
	return nil
}

// tmpName is the name a file is written under before it is committed.
// Readers ignore names starting with ".tmp-".
func tmpName(path string) string {
	return filepath.Join(filepath.Dir(path), ".tmp-"+filepath.Base(path))
}
