package formats

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func testManifest() Manifest {
	return Manifest{BpfsnapVersion: "test", Host: "h", Kernel: "k", Arch: "amd64",
		Window: Window{StartWall: time.Unix(1000, 0).UTC(), StartMonoNs: 5_000}}
}

func writeRows(t *testing.T, tw *TableWriter[ProcessEvent], from, n int) {
	t.Helper()
	for i := from; i < from+n; i++ {
		if err := tw.Write(ProcessEvent{TimeNs: uint64(i), Kind: ProcessFork, PID: uint32(i), Comm: "c"}); err != nil {
			t.Fatal(err)
		}
	}
}

func TestWriteFinishRead(t *testing.T) {
	out := filepath.Join(t.TempDir(), "a.bpfsnap")
	w, err := Create(out, testManifest(), CreateOptions{SealInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	w.MaxChunkRows = 100
	tw := NewTable[ProcessEvent](w, TableProcesses)
	writeRows(t, tw, 0, 1050)
	if err := w.Finish(func(m *Manifest) { m.Drops["x.test"] = 3 }); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(out + PartialSuffix); !os.IsNotExist(err) {
		t.Fatalf("partial dir still there: %v", err)
	}
	a, err := Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	m := a.Manifest()
	if !m.Complete || m.Tables[TableProcesses] != 1050 || m.Drops["x.test"] != 3 {
		t.Fatalf("manifest: %+v", m)
	}
	tables, err := a.Tables()
	if err != nil {
		t.Fatal(err)
	}
	if len(tables) != 1 || tables[0].Rows != 1050 || tables[0].Chunks != 11 {
		t.Fatalf("tables: %+v", tables)
	}
	rows, err := ReadAll[ProcessEvent](a, TableProcesses)
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range rows {
		if r.PID != uint32(i) {
			t.Fatalf("row %d has pid %d: chunks out of order", i, r.PID)
		}
	}
}

// A capture that dies leaves sealed chunks readable in the partial
// directory, and Recover seals them into an archive.
func TestPartialAndRecover(t *testing.T) {
	out := filepath.Join(t.TempDir(), "a.bpfsnap")
	w, err := Create(out, testManifest(), CreateOptions{SealInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	tw := NewTable[ProcessEvent](w, TableProcesses)
	writeRows(t, tw, 0, 10)
	if err := w.Seal(); err != nil {
		t.Fatal(err)
	}
	writeRows(t, tw, 10, 5) // open chunk, lost by the "crash"
	w.Abort()

	a, err := Open(out + PartialSuffix)
	if err != nil {
		t.Fatal(err)
	}
	rows, err := ReadAll[ProcessEvent](a, TableProcesses)
	a.Close()
	if err != nil || len(rows) != 10 {
		t.Fatalf("partial read: %d rows, %v", len(rows), err)
	}
	// A torn chunk (no footer) must be skipped, not trusted.
	torn := filepath.Join(out+PartialSuffix, "processes-000099.parquet")
	if err := os.WriteFile(torn, []byte("PAR1garbage"), 0o640); err != nil {
		t.Fatal(err)
	}
	res, err := Recover(out+PartialSuffix, out)
	if err != nil {
		t.Fatal(err)
	}
	if res.Tables[TableProcesses] != 10 || len(res.Skipped) != 1 {
		t.Fatalf("recover: %+v", res)
	}
	b, err := Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if m := b.Manifest(); !m.Complete || !m.Recovered || m.Window.EndReason != "crash" {
		t.Fatalf("recovered manifest: %+v", m)
	}
}

func TestCorruptArchivesGiveErrors(t *testing.T) {
	dir := t.TempDir()
	cases := map[string][]byte{
		"empty":    nil,
		"text":     []byte("hello"),
		"zipnoman": mustZip(t, map[string][]byte{"x.txt": []byte("x")}),
		"badman":   mustZip(t, map[string][]byte{ManifestName: []byte("{")}),
		"future":   mustZip(t, map[string][]byte{ManifestName: []byte(`{"format_version": 99}`)}),
		"hugefoot": mustZip(t, map[string][]byte{ManifestName: []byte(`{"format_version": 1}`), "processes-000001.parquet": append([]byte("PAR1xxxx"), 0xff, 0xff, 0xff, 0x7f, 'P', 'A', 'R', '1')}),
	}
	for name, data := range cases {
		p := filepath.Join(dir, name)
		os.WriteFile(p, data, 0o640)
		a, err := Open(p)
		if err == nil {
			_, err = ReadAll[ProcessEvent](a, TableProcesses)
			a.Close()
		}
		if err == nil {
			t.Errorf("%s: no error", name)
		} else if !strings.Contains(err.Error(), p) {
			t.Errorf("%s: error does not name the file: %v", name, err)
		}
	}
}
