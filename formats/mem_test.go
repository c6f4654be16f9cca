package formats

import (
	"math"
	"path/filepath"
	"testing"
	"time"
)

// memEventV1 is mem_events as the first version wrote it (weight was a
// reserved uint32, always 1; no old_size or in_allocator).
type memEventV1 struct {
	TimeNs  uint64 `parquet:"time_ns"`
	PID     uint32 `parquet:"pid"`
	TID     uint32 `parquet:"tid"`
	Kind    string `parquet:"kind,dict"`
	Addr    uint64 `parquet:"addr"`
	OldAddr uint64 `parquet:"old_addr"`
	Size    uint64 `parquet:"size"`
	StackID uint64 `parquet:"stack_id"`
	Weight  uint32 `parquet:"weight"`
}

// Archives written before byte sampling still read: the weight column
// converts and the new columns read as zero.
func TestMemEventsOfFirstVersionRead(t *testing.T) {
	var old []memEventV1
	for i := 0; i < 3; i++ {
		old = append(old, memEventV1{TimeNs: uint64(i), PID: 7, Kind: MemMalloc, Addr: 0x1000 + uint64(i), Size: 64, StackID: 9, Weight: 1})
	}
	rows := readBackAs[MemEvent](t, TableMemEvents, old)
	if len(rows) != 3 {
		t.Fatalf("%d rows", len(rows))
	}
	for _, r := range rows {
		if r.Weight != 1 || r.Size != 64 || r.StackID != 9 || r.OldSize != 0 || r.InAllocator || r.Kind != MemMalloc {
			t.Errorf("row %+v", r)
		}
	}
}

func TestMemSampleWeight(t *testing.T) {
	if w := MemSampleWeight(100, 0); w != 1 {
		t.Errorf("unsampled weight %v", w)
	}
	// A block much larger than the interval is always sampled.
	if w := MemSampleWeight(100<<20, 512<<10); math.Abs(w-1) > 1e-9 {
		t.Errorf("huge block weight %v", w)
	}
	// Small blocks: weight ≈ N/size (+1/2).
	if w := MemSampleWeight(64, 512<<10); math.Abs(w-(512*1024/64.0+0.5)) > 0.01 {
		t.Errorf("small block weight %v", w)
	}
	// size == N: 1/(1-1/e).
	if w := MemSampleWeight(4096, 4096); math.Abs(w-1/(1-math.Exp(-1))) > 1e-12 {
		t.Errorf("weight at N %v", w)
	}
}

// readBackAs writes rows of an older row type O to table in a new archive
// and reads the table back as the current row type R: how an archive
// written by an earlier bpfsnap reads today.
func readBackAs[R, O any](t *testing.T, table string, rows []O) []R {
	t.Helper()
	out := filepath.Join(t.TempDir(), "old.bpfsnap")
	w, err := Create(out, testManifest(), CreateOptions{SealInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	tw := NewTable[O](w, table)
	for _, r := range rows {
		if err := tw.Write(r); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Finish(nil); err != nil {
		t.Fatal(err)
	}
	a, err := Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	got, err := ReadAll[R](a, table)
	if err != nil {
		t.Fatal(err)
	}
	return got
}
