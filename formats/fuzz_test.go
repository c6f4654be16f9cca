package formats

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// realArchive writes a small archive with the real writer, so the fuzzer
// starts from the bytes a capture produces.
func realArchive(t testing.TB) []byte {
	out := filepath.Join(t.TempDir(), "seed.bpfsnap")
	w, err := Create(out, testManifest(), CreateOptions{SealInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	w.MaxChunkRows = 8
	tw := NewTable[ProcessEvent](w, TableProcesses)
	for i := 0; i < 20; i++ {
		tw.Write(ProcessEvent{TimeNs: uint64(i), Kind: ProcessExec, PID: uint32(i), Comm: "x", Exe: "/bin/x"})
	}
	if err := w.Finish(nil); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// FuzzOpenArchive feeds arbitrary bytes to the archive reader: it may
// reject them, but it must never panic, hang or allocate without bound.
func FuzzOpenArchive(f *testing.F) {
	seed := realArchive(f)
	f.Add(seed)
	// A chunk with a footer length larger than the file.
	f.Add(mustZip(f, map[string][]byte{
		ManifestName:               []byte(`{"format_version":1}`),
		"processes-000001.parquet": {'P', 'A', 'R', '1', 0, 0, 0, 0, 0xff, 0xff, 0xff, 0x0f, 'P', 'A', 'R', '1'},
	}))
	f.Fuzz(func(t *testing.T, data []byte) {
		a, err := openZipReader(bytes.NewReader(data), int64(len(data)))
		if err != nil {
			return
		}
		a.path = "fuzz"
		if _, err := a.Tables(); err != nil {
			return
		}
		n := 0
		_ = ReadTable(a, TableProcesses, func(rows []ProcessEvent) error {
			n += len(rows)
			return nil
		})
		// The column reader walks pages itself: it must hold up too.
		cols := []ColumnSpec{{Name: "time_ns", Kind: ColumnInt64}, {Name: "kind", Kind: ColumnBytes}, {Name: "pid", Kind: ColumnInt32}, {Name: "exe", Kind: ColumnBytes}}
		_ = ReadColumns(a, TableProcesses, cols, func(b *ColumnBatch) error {
			for i := 0; i < b.Rows; i++ {
				n += len(b.Columns[1].Bytes(i)) + len(b.Columns[3].Bytes(i)) + int(b.Columns[2].Int32[i]) + int(b.Columns[0].Int64[i]&1)
			}
			return nil
		})
	})
}
