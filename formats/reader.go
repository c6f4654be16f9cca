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
	"sort"
	"strconv"

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
func ReadTable[T any](a *Archive, table string, fn func(rows []T) error) error {
	buf := make([]T, maxBatchRows)
	for _, c := range a.chunks[table] {
		if err := readChunk(c, buf, fn); err != nil {
			var stop stopError
			if errors.As(err, &stop) {
				return stop.err
			}
			return fmt.Errorf("%s: chunk %s: %w", a.path, c.name, err)
		}
	}
	return nil
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

func readChunk[T any](c chunkRef, buf []T, fn func([]T) error) (err error) {
	defer recoverAsError(&err, "decoding")
	pf, err := openChunk(c)
	if err != nil {
		return err
	}
	r := parquet.NewGenericReader[T](pf)
	defer r.Close()
	for {
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
