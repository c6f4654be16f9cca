package formats

import (
	"archive/zip"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strconv"
	"sync"

	"github.com/parquet-go/parquet-go"
)

// Limits that keep a hostile archive from exhausting the analyzer. Real
// archives are far below them.
const (
	maxEntries     = 100_000
	maxFooterBytes = 64 << 20
	maxBatchRows   = 4096
)

// Archive is an opened archive: either the bundled file or a ".partial"
// directory left by a running or crashed capture. Every method treats the
// content as untrusted.
type Archive struct {
	path     string
	manifest *Manifest
	chunks   map[string][]chunkRef // by table, in sequence order
	closers  []io.Closer
}

type chunkRef struct {
	name string
	seq  int
	r    io.ReaderAt
	size int64
}

// TableInfo summarizes one table.
type TableInfo struct {
	Name   string `json:"name"`
	Rows   int64  `json:"rows"`
	Bytes  int64  `json:"bytes"`
	Chunks int    `json:"chunks"`
}

var chunkNameRE = regexp.MustCompile(`^([a-z][a-z0-9_]{0,63})-([0-9]{6,9})\.parquet$`)

// parseChunkName returns the table name of a chunk file, or "" if name is
// not a chunk.
func parseChunkName(name string) string {
	m := chunkNameRE.FindStringSubmatch(name)
	if m == nil {
		return ""
	}
	return m[1]
}

// Open opens an archive file or partial directory.
func Open(path string) (*Archive, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("opening archive: %w", err)
	}
	var a *Archive
	if st.IsDir() {
		a, err = openDir(path)
	} else {
		a, err = openZip(path, st.Size())
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return a, nil
}

func openDir(dir string) (*Archive, error) {
	a := &Archive{path: dir, chunks: map[string][]chunkRef{}}
	data, err := readLimited(filepath.Join(dir, ManifestName), maxManifestBytes)
	if err != nil {
		return nil, err
	}
	if a.manifest, err = decodeManifest(data); err != nil {
		return nil, err
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	if len(ents) > maxEntries {
		return nil, fmt.Errorf("directory has %d entries, more than the %d allowed", len(ents), maxEntries)
	}
	for _, e := range ents {
		if !e.Type().IsRegular() || parseChunkName(e.Name()) == "" {
			continue
		}
		f, err := os.Open(filepath.Join(dir, e.Name()))
		if err != nil {
			a.Close()
			return nil, err
		}
		a.closers = append(a.closers, f)
		info, err := f.Stat()
		if err != nil {
			a.Close()
			return nil, err
		}
		a.addChunk(e.Name(), f, info.Size())
	}
	a.sortChunks()
	return a, nil
}

func openZip(path string, size int64) (*Archive, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	a, err := openZipReader(f, size)
	if err != nil {
		f.Close()
		return nil, err
	}
	a.path = path
	a.closers = append(a.closers, f)
	return a, nil
}

// openZipReader reads an archive from any ReaderAt (used by the fuzz test).
func openZipReader(r io.ReaderAt, size int64) (a *Archive, err error) {
	defer recoverAsError(&err, "reading zip directory")
	zr, err := zip.NewReader(r, size)
	if err != nil {
		return nil, fmt.Errorf("not a bpfsnap archive (zip): %w", err)
	}
	if len(zr.File) > maxEntries {
		return nil, fmt.Errorf("archive has %d entries, more than the %d allowed", len(zr.File), maxEntries)
	}
	a = &Archive{chunks: map[string][]chunkRef{}}
	for _, zf := range zr.File {
		if zf.Name == ManifestName {
			if zf.UncompressedSize64 > maxManifestBytes {
				return nil, fmt.Errorf("manifest declares %d bytes, more than the %d allowed", zf.UncompressedSize64, maxManifestBytes)
			}
			rc, err := zf.Open()
			if err != nil {
				return nil, fmt.Errorf("reading manifest: %w", err)
			}
			data, err := io.ReadAll(io.LimitReader(rc, maxManifestBytes+1))
			rc.Close()
			if err != nil {
				return nil, fmt.Errorf("reading manifest: %w", err)
			}
			if a.manifest, err = decodeManifest(data); err != nil {
				return nil, err
			}
			continue
		}
		if parseChunkName(zf.Name) == "" {
			continue
		}
		if zf.Method != zip.Store {
			return nil, fmt.Errorf("entry %s is compressed (method %d); bpfsnap archives store chunks uncompressed", zf.Name, zf.Method)
		}
		off, err := zf.DataOffset()
		if err != nil {
			return nil, fmt.Errorf("entry %s: %w", zf.Name, err)
		}
		n := int64(zf.CompressedSize64)
		if zf.CompressedSize64 > uint64(size) || off < 0 || off > size-n {
			return nil, fmt.Errorf("entry %s claims %d bytes at offset %d, beyond the %d-byte file", zf.Name, zf.CompressedSize64, off, size)
		}
		a.addChunk(zf.Name, io.NewSectionReader(r, off, n), n)
	}
	if a.manifest == nil {
		return nil, fmt.Errorf("not a bpfsnap archive: no %s", ManifestName)
	}
	a.sortChunks()
	return a, nil
}

func (a *Archive) addChunk(name string, r io.ReaderAt, size int64) {
	m := chunkNameRE.FindStringSubmatch(name)
	seq, _ := strconv.Atoi(m[2])
	a.chunks[m[1]] = append(a.chunks[m[1]], chunkRef{name: name, seq: seq, r: r, size: size})
}

func (a *Archive) sortChunks() {
	for _, cs := range a.chunks {
		sort.Slice(cs, func(i, j int) bool { return cs[i].seq < cs[j].seq })
	}
}

// Path is the file or directory the archive was opened from.
func (a *Archive) Path() string { return a.path }

// Manifest returns the archive's manifest.
func (a *Archive) Manifest() *Manifest { return a.manifest }

// HasTable reports whether the archive holds at least one chunk of table.
func (a *Archive) HasTable(table string) bool { return len(a.chunks[table]) > 0 }

// Tables lists every table with its row count (read from the chunk footers)
// and size.
func (a *Archive) Tables() ([]TableInfo, error) {
	var out []TableInfo
	for name, cs := range a.chunks {
		ti := TableInfo{Name: name, Chunks: len(cs)}
		for _, c := range cs {
			pf, err := openChunk(c)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", a.path, err)
			}
			ti.Rows += pf.NumRows()
			ti.Bytes += c.size
		}
		out = append(out, ti)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// Close releases the archive's files.
func (a *Archive) Close() error {
	var first error
	for _, c := range a.closers {
		if err := c.Close(); err != nil && first == nil {
			first = err
		}
	}
	a.closers = nil
	return first
}

// ReadTable streams every row of table, chunk by chunk in write order, to fn
// in batches. A table with no chunks yields no rows and no error. Any
// decoding problem is returned as an error naming the archive and chunk.
//
// Chunks are decoded ahead of fn on other goroutines (decoding is most of
// an analysis' time, and fn runs meanwhile), but fn is still called from one
// goroutine at a time with every batch in order, exactly as if the chunks
// were read one after another; rows decoded past a failing chunk are
// discarded. The batch slice is only valid during the call.
func ReadTable[T any](a *Archive, table string, fn func(rows []T) error) error {
	chunks := a.chunks[table]
	workers := min(runtime.GOMAXPROCS(0), len(chunks))
	if workers <= 1 {
		buf := make([]T, maxBatchRows)
		next := func() []T { return buf }
		for _, c := range chunks {
			if err := readChunk(c, next, fn); err != nil {
				return a.chunkError(c, err)
			}
		}
		return nil
	}
	pool := sync.Pool{New: func() any { return make([]T, maxBatchRows) }}
	decode := func(c chunkRef, emit func([]T) error) error {
		return readChunk(c, func() []T { return pool.Get().([]T) }, emit)
	}
	return readAhead(a, chunks, workers, decode, fn, func(rows []T) { pool.Put(rows[:cap(rows)]) })
}

func (a *Archive) chunkError(c chunkRef, err error) error {
	var stop stopError
	if errors.As(err, &stop) {
		return stop.err
	}
	return fmt.Errorf("%s: chunk %s: %w", a.path, c.name, err)
}

// readAheadBatches bounds what one decoding goroutine holds before fn has
// taken it: workers × (readAheadBatches+1) batches in memory at most,
// whatever the size of the chunks.
const readAheadBatches = 8

type decoded[B any] struct {
	batch B
	err   error // the chunk failed after the batches sent before this one
}

// readAhead decodes up to workers chunks at once, each into its own bounded
// channel, and hands the channels' batches to fn in chunk order, then to
// recycle. Workers start in chunk order too, so the chunk fn waits for has
// always started.
func readAhead[B any](a *Archive, chunks []chunkRef, workers int, decode func(chunkRef, func(B) error) error, fn func(B) error, recycle func(B)) error {
	done := make(chan struct{})
	defer close(done)
	slots := make(chan struct{}, workers)
	outs := make(chan chan decoded[B], workers)
	go func() {
		defer close(outs)
		for _, c := range chunks {
			select {
			case slots <- struct{}{}:
			case <-done:
				return
			}
			out := make(chan decoded[B], readAheadBatches)
			select {
			case outs <- out:
			case <-done:
				return
			}
			go func() {
				defer func() { <-slots }()
				defer close(out)
				send := func(d decoded[B]) bool {
					select {
					case out <- d:
						return true
					case <-done:
						return false
					}
				}
				err := decode(c, func(b B) error {
					if !send(decoded[B]{batch: b}) {
						return errStopped
					}
					return nil
				})
				var stop stopError
				if err != nil && !errors.As(err, &stop) {
					send(decoded[B]{err: err})
				}
			}()
		}
	}()
	for _, c := range chunks {
		out, ok := <-outs
		if !ok {
			return nil // unreachable: one channel per chunk
		}
		for d := range out {
			if d.err != nil {
				return a.chunkError(c, d.err)
			}
			if err := fn(d.batch); err != nil {
				return err
			}
			recycle(d.batch)
		}
	}
	return nil
}

// errStopped ends a decoding goroutine whose reader has gone.
var errStopped = errors.New("read ahead stopped")

// ColumnKind is the physical type ReadColumns expects of a column.
type ColumnKind int

const (
	ColumnInt32 ColumnKind = iota + 1 // int32 and uint32 fields
	ColumnInt64                       // int64 and uint64 fields
	ColumnBytes                       // strings (plain or dictionary-encoded)
	ColumnBool                        // booleans, read into Int32 as 0 or 1
)

// ColumnSpec names a column to read and the kind it must have.
type ColumnSpec struct {
	Name string
	Kind ColumnKind
	// Optional columns came with a later format version: in a chunk
	// written before them they read as zeros (empty strings).
	Optional bool
}

// Column is one column's values for the rows of a ColumnBatch: Int32 or
// Int64 (unsigned columns have the same bits; convert with uint32/uint64;
// booleans are Int32 0 or 1), or byte strings through Bytes.
type Column struct {
	Int32   []int32
	Int64   []int64
	data    []byte
	offsets []uint32 // value i is data[offsets[i]:offsets[i+1]]
}

// Bytes returns value i of a string column. It is only valid during the
// callback; copy it (string(...)) to keep it.
func (c *Column) Bytes(i int) []byte { return c.data[c.offsets[i]:c.offsets[i+1]] }

// ColumnBatch is a batch of rows of the columns asked for, in the order
// asked for.
type ColumnBatch struct {
	Rows    int
	Columns []Column
}

// ReadColumns streams the named columns of table, in row order, to fn in
// batches, decoding nothing else: for analyses that need a few columns of
// a wide table it is several times faster than ReadTable, which builds
// every field of every row. Columns must be required (not optional or
// repeated) and of the kind asked for; anything else is an error. Like
// ReadTable, chunks are decoded ahead on other goroutines, and fn is called
// from one goroutine at a time, in order; the batch is only valid during
// the call.
func ReadColumns(a *Archive, table string, cols []ColumnSpec, fn func(b *ColumnBatch) error) error {
	chunks := a.chunks[table]
	pool := sync.Pool{New: func() any { return &ColumnBatch{Columns: make([]Column, len(cols))} }}
	decode := func(c chunkRef, emit func(*ColumnBatch) error) error {
		return readColumnsChunk(c, cols, func() *ColumnBatch { return pool.Get().(*ColumnBatch) }, emit)
	}
	workers := min(runtime.GOMAXPROCS(0), len(chunks))
	if workers <= 1 {
		for _, c := range chunks {
			if err := decode(c, func(b *ColumnBatch) error {
				err := fn(b)
				pool.Put(b)
				return wrapStop(err)
			}); err != nil {
				return a.chunkError(c, err)
			}
		}
		return nil
	}
	return readAhead(a, chunks, workers, decode, fn, func(b *ColumnBatch) { pool.Put(b) })
}

func wrapStop(err error) error {
	if err != nil {
		return stopError{err}
	}
	return nil
}

// columnCursor walks the pages of one column chunk.
type columnCursor struct {
	spec   ColumnSpec
	pages  parquet.Pages
	page   parquet.Page
	pos    int // values of page already handed out
	n      int // values in page
	ints32 []int32
	ints64 []int64
	bits   []byte // booleans, bit-packed (LSB first)
	// absent: an optional column the chunk predates; it reads as zeros.
	absent bool
	// byte arrays: plain pages have data and offsets; dictionary pages
	// have index into the dictionary's data and offsets.
	data    []byte
	offsets []uint32
	index   []int32
}

// readColumnsChunk decodes the columns of one chunk, row group by row
// group, into batches that never cross a page boundary of any column, and
// copies each batch into one next returns (so it outlives the pages).
func readColumnsChunk(c chunkRef, specs []ColumnSpec, next func() *ColumnBatch, emit func(*ColumnBatch) error) (err error) {
	defer recoverAsError(&err, "decoding")
	pf, err := openChunk(c)
	if err != nil {
		return err
	}
	leaves := make([]int, len(specs))
	for i, sp := range specs {
		leaf, ok := pf.Schema().Lookup(sp.Name)
		if !ok && sp.Optional {
			leaves[i] = -1
			continue
		}
		if !ok {
			return fmt.Errorf("no column %q", sp.Name)
		}
		if leaf.Node.Optional() || leaf.Node.Repeated() || leaf.MaxDefinitionLevel != 0 || leaf.MaxRepetitionLevel != 0 {
			return fmt.Errorf("column %q is not a required column", sp.Name)
		}
		want := map[ColumnKind]parquet.Kind{ColumnInt32: parquet.Int32, ColumnInt64: parquet.Int64, ColumnBytes: parquet.ByteArray, ColumnBool: parquet.Boolean}[sp.Kind]
		if got := leaf.Node.Type().Kind(); got != want {
			return fmt.Errorf("column %q is %s, want %s", sp.Name, got, want)
		}
		leaves[i] = leaf.ColumnIndex
	}
	for _, rg := range pf.RowGroups() {
		ccs := rg.ColumnChunks()
		cur := make([]columnCursor, len(specs))
		closeAll := func() {
			for i := range cur {
				if cur[i].page != nil {
					parquet.Release(cur[i].page)
				}
				if cur[i].pages != nil {
					cur[i].pages.Close()
				}
			}
		}
		for i, sp := range specs {
			if leaves[i] < 0 {
				cur[i] = columnCursor{spec: sp, absent: true}
				continue
			}
			if leaves[i] >= len(ccs) {
				closeAll()
				return fmt.Errorf("column %q missing from a row group", sp.Name)
			}
			cur[i] = columnCursor{spec: sp, pages: ccs[leaves[i]].Pages()}
		}
		var rows int64
		for {
			k := maxBatchRows
			ended, present := 0, 0
			for i := range cur {
				if cur[i].absent {
					continue
				}
				present++
				if err := cur[i].fill(); err != nil {
					closeAll()
					return err
				}
				if cur[i].page == nil {
					ended++
					continue
				}
				k = min(k, cur[i].n-cur[i].pos)
			}
			if ended == present {
				break
			}
			if ended > 0 {
				closeAll()
				return fmt.Errorf("columns of a row group have different lengths")
			}
			b := next()
			b.Rows = k
			for i := range cur {
				cur[i].take(&b.Columns[i], k)
			}
			rows += int64(k)
			if err := emit(b); err != nil {
				closeAll()
				return err
			}
		}
		closeAll()
		if rows != rg.NumRows() {
			return fmt.Errorf("row group holds %d rows, its footer says %d", rows, rg.NumRows())
		}
	}
	return nil
}

// fill makes sure the cursor has a value to hand out, reading the next
// page when the current one is used up; page is nil at the end.
func (cc *columnCursor) fill() error {
	for cc.page == nil || cc.pos == cc.n {
		if cc.page != nil {
			parquet.Release(cc.page)
			cc.page = nil
		}
		if cc.pages == nil {
			return nil
		}
		p, err := cc.pages.ReadPage()
		if err == io.EOF {
			cc.pages.Close()
			cc.pages = nil
			return nil
		}
		if err != nil {
			return err
		}
		if p.NumNulls() != 0 || p.NumValues() != p.NumRows() {
			parquet.Release(p)
			return fmt.Errorf("column %q has nulls or repeated values", cc.spec.Name)
		}
		cc.page, cc.pos, cc.n = p, 0, int(p.NumValues())
		vals := p.Data()
		switch cc.spec.Kind {
		case ColumnInt32:
			cc.ints32 = vals.Int32()
			if len(cc.ints32) < cc.n {
				return fmt.Errorf("column %q: short page", cc.spec.Name)
			}
		case ColumnInt64:
			cc.ints64 = vals.Int64()
			if len(cc.ints64) < cc.n {
				return fmt.Errorf("column %q: short page", cc.spec.Name)
			}
		case ColumnBool:
			cc.bits = vals.Boolean()
			if len(cc.bits)*8 < cc.n {
				return fmt.Errorf("column %q: short page", cc.spec.Name)
			}
		case ColumnBytes:
			cc.index = nil
			if d := p.Dictionary(); d != nil {
				cc.index = vals.Int32()
				dv := d.Page().Data()
				cc.data, cc.offsets = dv.ByteArray()
				for _, x := range cc.index[:min(cc.n, len(cc.index))] {
					if x < 0 || int(x) >= len(cc.offsets)-1 {
						return fmt.Errorf("column %q: dictionary index %d out of range", cc.spec.Name, x)
					}
				}
				if len(cc.index) < cc.n {
					return fmt.Errorf("column %q: short page", cc.spec.Name)
				}
			} else {
				cc.data, cc.offsets = vals.ByteArray()
				if len(cc.offsets) < cc.n+1 {
					return fmt.Errorf("column %q: short page", cc.spec.Name)
				}
			}
			if err := checkOffsets(cc.offsets, len(cc.data)); err != nil {
				return fmt.Errorf("column %q: %w", cc.spec.Name, err)
			}
		}
	}
	return nil
}

func checkOffsets(offsets []uint32, size int) error {
	for i := 1; i < len(offsets); i++ {
		if offsets[i] < offsets[i-1] || int(offsets[i]) > size {
			return fmt.Errorf("corrupt byte array offsets")
		}
	}
	return nil
}

// take copies the next k values into col.
func (cc *columnCursor) take(col *Column, k int) {
	if cc.absent {
		col.Int32 = append(col.Int32[:0], make([]int32, k)...)
		col.Int64 = append(col.Int64[:0], make([]int64, k)...)
		col.data, col.offsets = col.data[:0], append(col.offsets[:0], make([]uint32, k+1)...)
		return
	}
	lo, hi := cc.pos, cc.pos+k
	cc.pos = hi
	switch cc.spec.Kind {
	case ColumnInt32:
		col.Int32 = append(col.Int32[:0], cc.ints32[lo:hi]...)
	case ColumnInt64:
		col.Int64 = append(col.Int64[:0], cc.ints64[lo:hi]...)
	case ColumnBool:
		col.Int32 = col.Int32[:0]
		for i := lo; i < hi; i++ {
			col.Int32 = append(col.Int32, int32(cc.bits[i/8]>>(i%8)&1))
		}
	case ColumnBytes:
		col.data, col.offsets = col.data[:0], append(col.offsets[:0], 0)
		for i := lo; i < hi; i++ {
			j := i
			if cc.index != nil {
				j = int(cc.index[i])
			}
			col.data = append(col.data, cc.data[cc.offsets[j]:cc.offsets[j+1]]...)
			col.offsets = append(col.offsets, uint32(len(col.data)))
		}
	}
}

// ReadAll collects every row of table. Use it for small tables only.
func ReadAll[T any](a *Archive, table string) ([]T, error) {
	var out []T
	err := ReadTable(a, table, func(rows []T) error {
		out = append(out, rows...)
		return nil
	})
	return out, err
}

// stopError carries an error returned by the caller's callback, so it is not
// dressed up as a decoding error.
type stopError struct{ err error }

func (s stopError) Error() string { return s.err.Error() }

// readChunk decodes one chunk into batches, each into the slice next
// returns, and passes them to fn.
func readChunk[T any](c chunkRef, next func() []T, fn func([]T) error) (err error) {
	defer recoverAsError(&err, "decoding")
	pf, err := openChunk(c)
	if err != nil {
		return err
	}
	r := parquet.NewGenericReader[T](pf)
	defer r.Close()
	for {
		buf := next()
		n, rerr := r.Read(buf)
		if n > 0 {
			if err := fn(buf[:n]); err != nil {
				return stopError{err}
			}
		}
		if rerr == io.EOF {
			return nil
		}
		if rerr != nil {
			return rerr
		}
	}
}

// openChunk checks the Parquet framing before handing the chunk to the
// Parquet library, which would otherwise trust the footer length it reads
// and allocate that much.
func openChunk(c chunkRef) (f *parquet.File, err error) {
	defer recoverAsError(&err, "opening "+c.name)
	if c.size < 12 {
		return nil, fmt.Errorf("chunk %s is %d bytes, too small for Parquet", c.name, c.size)
	}
	var head, tail [8]byte
	if _, err := c.r.ReadAt(head[:4], 0); err != nil {
		return nil, fmt.Errorf("chunk %s: %w", c.name, err)
	}
	if _, err := c.r.ReadAt(tail[:], c.size-8); err != nil {
		return nil, fmt.Errorf("chunk %s: %w", c.name, err)
	}
	if !bytes.Equal(head[:4], []byte("PAR1")) || !bytes.Equal(tail[4:], []byte("PAR1")) {
		return nil, fmt.Errorf("chunk %s is not a sealed Parquet file (bad magic)", c.name)
	}
	footer := int64(binary.LittleEndian.Uint32(tail[:4]))
	if footer > c.size-12 || footer > maxFooterBytes {
		return nil, fmt.Errorf("chunk %s declares a %d-byte footer in a %d-byte file", c.name, footer, c.size)
	}
	pf, err := parquet.OpenFile(c.r, c.size, parquet.SkipBloomFilters(true), parquet.SkipPageIndex(true))
	if err != nil {
		return nil, fmt.Errorf("chunk %s: %w", c.name, err)
	}
	return pf, nil
}

// recoverAsError turns a panic inside a third-party decoder into an error:
// an archive is untrusted input and must never crash the analyzer.
func recoverAsError(err *error, what string) {
	if r := recover(); r != nil {
		*err = fmt.Errorf("corrupt data while %s: %v", what, r)
	}
}

func readLimited(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("%s is larger than %d bytes", path, limit)
	}
	return data, nil
}
