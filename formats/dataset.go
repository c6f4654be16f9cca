package formats

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/parquet-go/parquet-go"
)

// A dataset is many archives' tables laid out for query engines (DuckDB,
// Spark, Trino, ClickHouse, Athena) as Hive-partitioned Parquet:
//
//	DIR/table=NAME/host=HOST/capture=ID/part-SEQ.parquet
//
// Each part is one of the archive's chunks, copied byte for byte, so the
// columns are exactly those of docs/format.md. Two tables describe the
// archives themselves: `captures` (one row per archive: host, window,
// trigger) and `drops` (one row per counter). Rows of one capture join on
// the partition columns (host, capture) and their ids (pid, stack_id,
// frame_id); times are per node: captures.start_wall_ns +
// (time_ns - start_mono_ns) is a row's wall-clock time.

// Dataset tables that describe the archives.
const (
	TableCaptures = "captures" // CaptureRow
	TableDrops    = "drops"    // DropRow
)

// CaptureRow describes one archive of a dataset.
type CaptureRow struct {
	Capture        string `parquet:"capture_id"`
	Host           string `parquet:"host_name"`
	Source         string `parquet:"source"` // the archive's file name
	Kernel         string `parquet:"kernel"`
	Arch           string `parquet:"arch"`
	BpfsnapVersion string `parquet:"bpfsnap_version"`
	FormatVersion  int32  `parquet:"format_version"`
	Probes         string `parquet:"probes"` // attached probe sets, comma-separated
	// Wall-clock times are Unix ns; mono times CLOCK_MONOTONIC ns, the
	// clock of every row's time columns.
	StartWallNs int64  `parquet:"start_wall_ns"`
	EndWallNs   int64  `parquet:"end_wall_ns"`
	StartMonoNs uint64 `parquet:"start_mono_ns"`
	EndMonoNs   uint64 `parquet:"end_mono_ns"`
	EndReason   string `parquet:"end_reason"`
	Complete    bool   `parquet:"complete"`
	// A flight recorder's dump: what fired and when (Unix ns); empty
	// and 0 for other archives.
	Trigger        string `parquet:"trigger"`
	TriggerDetail  string `parquet:"trigger_detail"`
	TriggerFiredNs int64  `parquet:"trigger_fired_ns"`
}

// DropRow is one drop counter of one archive.
type DropRow struct {
	Capture string `parquet:"capture_id"`
	Reason  string `parquet:"reason"`
	Class   string `parquet:"class"`
	Count   uint64 `parquet:"count"`
}

// ChunkFile is one chunk of a table as stored in an archive.
type ChunkFile struct {
	Name string
	Seq  int
	Size int64
	r    io.ReaderAt
}

// Reader reads the chunk's bytes.
func (c ChunkFile) Reader() io.Reader { return io.NewSectionReader(c.r, 0, c.Size) }

// TableNames lists the archive's tables, sorted.
func (a *Archive) TableNames() []string {
	var names []string
	for n := range a.chunks {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// ChunkFiles lists a table's chunks in write order, each checked to be a
// sealed Parquet file.
func (a *Archive) ChunkFiles(table string) ([]ChunkFile, error) {
	var out []ChunkFile
	for _, c := range a.chunks[table] {
		if _, err := openChunk(c); err != nil {
			return nil, fmt.Errorf("%s: %w", a.path, err)
		}
		out = append(out, ChunkFile{Name: c.name, Seq: c.seq, Size: c.size, r: c.r})
	}
	return out, nil
}

// CaptureID names an archive in a dataset: its host and the start of its
// window (UTC, to the millisecond), which tell two captures of one node
// apart and sort them in time.
func CaptureID(m *Manifest) string {
	return PartitionValue(m.Host) + "-" + m.Window.StartWall.UTC().Format("20060102T150405.000Z")
}

// PartitionValue makes a workload-chosen string (a host name) safe as a
// Hive partition value and a path element: bytes other than letters,
// digits, '.', '_' and '-' become '_', and it is never empty or a dot name.
func PartitionValue(s string) string {
	b := []byte(s)
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			b[i] = '_'
		}
	}
	v := string(b)
	if v == "" || strings.Trim(v, ".") == "" {
		v = "_" + v
	}
	if len(v) > 128 {
		v = v[:128]
	}
	return v
}

// DatasetStats says what WriteDataset wrote.
type DatasetStats struct {
	Archives int
	Files    int
	Rows     int64
	Bytes    int64
}

// WriteDataset adds the archives at paths to the dataset in dir (created
// if needed). An archive whose capture is already in dir is an error
// rather than a silent duplicate.
func WriteDataset(dir string, paths []string) (DatasetStats, error) {
	var st DatasetStats
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return st, err
	}
	for _, p := range paths {
		if err := addToDataset(dir, p, &st); err != nil {
			return st, err
		}
		st.Archives++
	}
	return st, nil
}

func addToDataset(dir, path string, st *DatasetStats) error {
	a, err := Open(path)
	if err != nil {
		return err
	}
	defer a.Close()
	m := a.Manifest()
	id, host := CaptureID(m), PartitionValue(m.Host)
	part := func(table string) string {
		return filepath.Join(dir, "table="+table, "host="+host, "capture="+id)
	}
	if _, err := os.Stat(part(TableCaptures)); err == nil {
		return fmt.Errorf("%s: capture %s is already in %s", path, id, dir)
	}
	for _, table := range a.TableNames() {
		chunks, err := a.ChunkFiles(table)
		if err != nil {
			return err
		}
		if err := os.MkdirAll(part(table), 0o755); err != nil {
			return err
		}
		for _, c := range chunks {
			n, err := copyToFile(filepath.Join(part(table), fmt.Sprintf("part-%06d.parquet", c.Seq)), c.Reader())
			if err != nil {
				return fmt.Errorf("%s: %s: %w", path, c.Name, err)
			}
			st.Files++
			st.Bytes += n
		}
		st.Rows += m.Tables[table]
	}
	capture := CaptureRow{Capture: id, Host: m.Host, Source: filepath.Base(path), Kernel: m.Kernel, Arch: m.Arch,
		BpfsnapVersion: m.BpfsnapVersion, FormatVersion: int32(m.FormatVersion),
		StartWallNs: m.Window.StartWall.UnixNano(), EndWallNs: m.Window.EndWall.UnixNano(),
		StartMonoNs: m.Window.StartMonoNs, EndMonoNs: m.Window.EndMonoNs, EndReason: m.Window.EndReason, Complete: m.Complete}
	var probes []string
	for _, p := range m.Probes {
		if p.Attached {
			probes = append(probes, p.Name)
		}
	}
	capture.Probes = strings.Join(probes, ",")
	if d := m.Dump; d != nil {
		capture.Trigger, capture.TriggerDetail, capture.TriggerFiredNs = d.Trigger, d.Detail, d.FiredWall.UnixNano()
	}
	if err := writeParquetFile(part(TableCaptures), []CaptureRow{capture}); err != nil {
		return err
	}
	var drops []DropRow
	for _, d := range m.SortedDrops() {
		r, _ := LookupDrop(d.Reason)
		drops = append(drops, DropRow{Capture: id, Reason: d.Reason, Class: string(r.Class), Count: d.Count})
	}
	if len(drops) > 0 {
		if err := writeParquetFile(part(TableDrops), drops); err != nil {
			return err
		}
	}
	st.Files += 1 + min(len(drops), 1)
	st.Rows += 1 + int64(len(drops))
	return nil
}

// writeParquetFile writes rows as dir/part-000000.parquet.
func writeParquetFile[T any](dir string, rows []T) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	path := filepath.Join(dir, "part-000000.parquet")
	tmp := tmpName(path)
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	pw := parquet.NewGenericWriter[T](f, writerOptions[T]()...)
	if _, err := pw.Write(rows); err != nil {
		f.Close()
		os.Remove(tmp)
		return err
	}
	if err := pw.Close(); err != nil {
		f.Close()
		os.Remove(tmp)
		return err
	}
	return commitFile(f, tmp, path)
}

// copyFile writes r to path through a temporary name.
func copyToFile(path string, r io.Reader) (int64, error) {
	tmp := tmpName(path)
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return 0, err
	}
	n, err := io.Copy(f, r)
	if err != nil {
		f.Close()
		os.Remove(tmp)
		return 0, err
	}
	return n, commitFile(f, tmp, path)
}
