package formats

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sync"

	kzstd "github.com/klauspost/compress/zstd"
	"github.com/parquet-go/parquet-go"
	"github.com/parquet-go/parquet-go/compress/zstd"
)

// zstdFast trades a little ratio for speed: the recorder must never fall
// behind the kernel, and event rows compress well even at the fastest level.
var zstdFast = newZstdCodec()

// zstdCodec is parquet-go's ZSTD codec with encoders that live as long as
// the process. parquet-go's own keeps its encoders in a pool the garbage
// collector empties, and each new encoder allocated (and the kernel
// zeroed, page by page) a 16 MiB history for its 8 MiB default window:
// 7% of the recorder's CPU under HTTP load. Encoding a page needs no
// window larger than the page (pages are far below 1 MiB), so the window
// is 1 MiB and its history 2 MiB per encoder. Decoding is parquet-go's.
type zstdCodec struct {
	zstd.Codec
	enc *kzstd.Encoder
}

func newZstdCodec() *zstdCodec {
	enc, err := kzstd.NewWriter(nil,
		kzstd.WithEncoderLevel(kzstd.SpeedFastest),
		kzstd.WithEncoderConcurrency(runtime.GOMAXPROCS(0)),
		kzstd.WithWindowSize(1<<20),
		kzstd.WithZeroFrames(true),
		kzstd.WithEncoderCRC(false))
	if err != nil {
		panic(err) // only for invalid options
	}
	return &zstdCodec{Codec: zstd.Codec{Level: zstd.SpeedFastest}, enc: enc}
}

// Encode compresses src as one frame; EncodeAll is safe for concurrent use
// (it takes one of the encoder's GOMAXPROCS encoders).
func (c *zstdCodec) Encode(dst, src []byte) ([]byte, error) {
	return c.enc.EncodeAll(src, dst[:0]), nil
}

// TableWriter streams rows of one table into sealed Parquet chunk files.
// Rows go into an open chunk (a temporary file plus the Parquet writer's
// in-memory row group); seal writes the footer, fsyncs and renames it to
// "<table>-<seq>.parquet". It is safe for concurrent use.
type TableWriter[T any] struct {
	w    *Writer
	name string
	opts []parquet.WriterOption // every chunk's writer settings (writerOptions)

	mu      sync.Mutex
	seq     int
	file    *os.File
	pw      *parquet.GenericWriter[T]
	open    int64  // rows in the open chunk (written to pw)
	batch   []T    // rows not yet handed to pw (see batchRows)
	total   int64  // rows in sealed chunks
	pending int64  // bytes sealed by Write (size bound) not yet reported to the Writer
	opened  uint64 // when the open chunk got its first row (the writer's clock)
	observe []func(any)
	// timed: rows implement Timed, and minT/maxT bound the open chunk's
	// rows (ChunkInfo).
	timed      bool
	minT, maxT uint64
}

// NewTable registers a table in the archive. Call it once per table name.
func NewTable[T any](w *Writer, name string) *TableWriter[T] {
	var zero T
	_, timed := any(&zero).(Timed)
	t := &TableWriter[T]{w: w, name: name, opts: writerOptions[T](), observe: w.observersOf(name), timed: timed}
	w.register(t)
	return t
}

// batchRows is how many rows Write collects before handing them to the
// Parquet writer. Probes write one row per kernel event; parquet-go's
// per-call cost (column dispatch, validation) dominated the recorder's
// profile at 100k+ rows/s until rows were batched. A batch lives only in
// memory until the next seal, which flushes it: batching never delays a
// row past the seal it would have been in.
const batchRows = 512

// Write appends rows. When the open chunk reaches the Writer's MaxChunkRows
// it is sealed at once, so memory stays bounded between timer seals.
func (t *TableWriter[T]) Write(rows ...T) error {
	if len(rows) == 0 {
		return nil
	}
	if err := t.w.Err(); err != nil {
		return err
	}
	if len(t.observe) > 0 {
		// A copy, so rows itself never escapes (Write(row) stays free of
		// allocations when nobody observes).
		cp := append([]T(nil), rows...)
		for _, fn := range t.observe {
			fn(cp)
		}
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.pw == nil && len(t.batch) == 0 {
		// The chunk's first row: a chunk is opened only when its first
		// batch is flushed (often by the seal, after a dump's end), but
		// its rows were written from now on.
		t.opened = t.w.monoNow()
	}
	t.batch = append(t.batch, rows...)
	if len(t.batch) < batchRows && t.open+int64(len(t.batch)) < int64(t.w.MaxChunkRows) {
		return nil
	}
	if err := t.flushLocked(); err != nil {
		return err
	}
	if t.open >= int64(t.w.MaxChunkRows) {
		n, err := t.sealLocked()
		if err != nil {
			t.w.fail(err)
			return err
		}
		t.pending += n
	}
	return nil
}

// flushLocked hands the batch to the Parquet writer, opening a chunk if
// none is open.
func (t *TableWriter[T]) flushLocked() error {
	if len(t.batch) == 0 {
		return nil
	}
	if t.pw == nil {
		if err := t.startLocked(); err != nil {
			t.w.fail(err)
			return err
		}
	}
	if t.timed {
		for i := range t.batch {
			// A pointer into the batch: no allocation per row.
			ts := any(&t.batch[i]).(Timed).EventTime()
			if t.minT == 0 || ts < t.minT {
				t.minT = ts
			}
			t.maxT = max(t.maxT, ts)
		}
	}
	if _, err := t.pw.Write(t.batch); err != nil {
		err = fmt.Errorf("writing %s rows to %s: %w", t.name, t.w.dir, err)
		t.w.fail(err)
		return err
	}
	t.open += int64(len(t.batch))
	clear(t.batch) // drop string references for the GC
	t.batch = t.batch[:0]
	return nil
}

func (t *TableWriter[T]) chunkPath() string {
	return filepath.Join(t.w.dir, fmt.Sprintf("%s-%06d.parquet", t.name, t.seq))
}

func (t *TableWriter[T]) startLocked() error {
	t.seq++
	tmp := tmpName(t.chunkPath())
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o640)
	if err != nil {
		return fmt.Errorf("creating chunk %s: %w", tmp, err)
	}
	t.file = f
	t.pw = parquet.NewGenericWriter[T](f, t.opts...)
	return nil
}

// writerOptions are the Parquet writer's settings for a table of T: fast
// zstd, and no page bounds or statistics (min/max) for the string columns. Comparing
// every path and address with the page's bounds was a tenth of the
// recorder's CPU per HTTP request (BenchmarkHTTPRecord's profile), and no
// reader uses them: analyze reads whole chunks, and a query engine only
// loses the chance to skip a page by a string range.
func writerOptions[T any]() []parquet.WriterOption {
	opts := []parquet.WriterOption{parquet.Compression(zstdFast), parquet.CreatedBy("bpfsnap", "", "")}
	schema := parquet.SchemaOf(new(T))
	for _, path := range schema.Columns() {
		leaf, ok := schema.Lookup(path...)
		if ok && leaf.Node.Type().Kind() == parquet.ByteArray {
			opts = append(opts, parquet.SkipPageBounds(path...), parquet.SkipPageStatistics(path...))
		}
	}
	return opts
}

func (t *TableWriter[T]) seal() (int64, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	n, err := t.sealLocked()
	n += t.pending
	t.pending = 0
	return n, err
}

func (t *TableWriter[T]) sealLocked() (int64, error) {
	if err := t.flushLocked(); err != nil {
		return 0, err
	}
	if t.pw == nil || t.open == 0 {
		return 0, nil
	}
	path := t.chunkPath()
	tmp := tmpName(path)
	pw, f := t.pw, t.file
	t.pw, t.file = nil, nil
	if err := pw.Close(); err != nil {
		f.Close()
		os.Remove(tmp)
		return 0, fmt.Errorf("sealing chunk %s: %w", path, err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		os.Remove(tmp)
		return 0, fmt.Errorf("sealing chunk %s: %w", path, err)
	}
	if err := commitFile(f, tmp, path); err != nil {
		return 0, fmt.Errorf("sealing chunk: %w", err)
	}
	t.w.addChunk(ChunkInfo{Table: t.name, File: filepath.Base(path), Rows: t.open, Bytes: st.Size(),
		OpenedMono: t.opened, SealedMono: t.w.monoNow(), MinTime: t.minT, MaxTime: t.maxT})
	t.minT, t.maxT = 0, 0
	t.total += t.open
	t.open = 0
	return st.Size(), nil
}

// abort drops the open chunk (used when the capture dies with an error).
func (t *TableWriter[T]) abort() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.file != nil {
		name := t.file.Name()
		t.file.Close()
		os.Remove(name)
	}
	t.pw, t.file, t.open, t.batch = nil, nil, 0, nil
}

func (t *TableWriter[T]) tableName() string { return t.name }

func (t *TableWriter[T]) rowsTotal() int64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.total
}
