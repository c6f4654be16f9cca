package formats

import (
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// fakeClock is a writer clock the test moves by hand.
type fakeClock struct {
	mu   sync.Mutex
	mono uint64
}

func (c *fakeClock) now() (time.Time, uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return time.Unix(0, int64(c.mono)).UTC(), c.mono
}

func (c *fakeClock) set(s float64) {
	c.mu.Lock()
	c.mono = uint64(s * 1e9)
	c.mu.Unlock()
}

// A flight recorder's writer keeps the event chunks of its last window and
// every chunk of the retained tables; a snapshot of the window is an
// ordinary archive holding exactly those chunks plus the tables written
// for it, and the writer goes on.
func TestRingRetentionAndSnapshot(t *testing.T) {
	dir := t.TempDir()
	clk := &fakeClock{}
	clk.set(100)
	m := testManifest()
	m.Window.StartMonoNs, m.Window.StartWall = 100e9, time.Unix(100, 0).UTC()
	w, err := Create(filepath.Join(dir, "ring.bpfsnap"), m, CreateOptions{SealInterval: time.Hour, Clock: clk.now, Ring: 3 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	var seen int
	w.Observe(TableHTTPRequests, func(rows any) { seen += len(rows.([]HTTPRequest)) })
	reqs := NewTable[HTTPRequest](w, TableHTTPRequests)
	procs := NewTable[ProcessEvent](w, TableProcesses)
	// One chunk per second for 10 s: request i at second 100+i.
	for i := 0; i < 10; i++ {
		clk.set(100 + float64(i))
		if err := reqs.Write(HTTPRequest{RequestNs: uint64(100+i) * 1e9, Path: "/r"}); err != nil {
			t.Fatal(err)
		}
		if err := procs.Write(ProcessEvent{TimeNs: uint64(100+i) * 1e9, Kind: ProcessFork, PID: uint32(i + 1)}); err != nil {
			t.Fatal(err)
		}
		clk.set(100 + float64(i) + 0.9)
		if err := w.Seal(); err != nil {
			t.Fatal(err)
		}
	}
	if seen != 10 {
		t.Errorf("observer saw %d rows, want 10", seen)
	}
	var events, retained int
	for _, c := range w.Chunks() {
		if _, err := os.Stat(filepath.Join(w.Dir(), c.File)); err != nil {
			t.Errorf("listed chunk %s not on disk: %v", c.File, err)
		}
		switch c.Table {
		case TableHTTPRequests:
			events++
			if c.SealedMono+3e9 < 109.9e9 {
				t.Errorf("chunk %s sealed at %d outlived the 3 s ring", c.File, c.SealedMono)
			}
		case TableProcesses:
			retained++
		}
	}
	if events != 3 || retained != 10 {
		t.Errorf("%d event chunks (want the 3 of the last 3 s) and %d process chunks (want all 10)", events, retained)
	}
	ents, _ := os.ReadDir(w.Dir())
	if got := len(ents) - 1; got != events+retained { // and manifest.json
		t.Errorf("%d chunk files on disk, %d listed", got, events+retained)
	}
	if w.Manifest().Window.StartMonoNs < 106e9 {
		t.Errorf("the on-disk window still starts at %d, before the oldest event chunk kept", w.Manifest().Window.StartMonoNs)
	}

	// A snapshot of the last 2 s, with a table written for it.
	out := filepath.Join(dir, "dump.bpfsnap")
	dm := testManifest()
	dm.Dump = &Dump{Trigger: "signal", Ring: "3s", Sequence: 1}
	err = w.Snapshot(out, SnapshotOptions{
		Manifest: dm,
		Keep:     func(c ChunkInfo) bool { return c.Table == TableHTTPRequests && c.SealedMono >= 108e9 },
		Extra: func(dw *Writer) error {
			return NewTable[Frame](dw, TableFrames).Write(Frame{FrameID: 7, Function: "f"})
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	a, err := Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	rows, err := ReadAll[HTTPRequest](a, TableHTTPRequests)
	if err != nil || len(rows) != 2 || rows[0].RequestNs != 108e9 || rows[1].RequestNs != 109e9 {
		t.Errorf("snapshot rows %+v, %v", rows, err)
	}
	frames, err := ReadAll[Frame](a, TableFrames)
	if err != nil || len(frames) != 1 {
		t.Errorf("snapshot frames %+v, %v", frames, err)
	}
	if got := a.Manifest(); !got.Complete || got.Tables[TableHTTPRequests] != 2 || got.Tables[TableFrames] != 1 || got.Dump == nil || got.Dump.Trigger != "signal" {
		t.Errorf("snapshot manifest: complete %v tables %v dump %+v", got.Complete, got.Tables, got.Dump)
	}
	// The recorder goes on, and its chunks outlive the snapshot's links.
	clk.set(111)
	if err := reqs.Write(HTTPRequest{RequestNs: 111e9}); err != nil {
		t.Fatal(err)
	}
	if err := w.Finish(nil); err != nil {
		t.Fatal(err)
	}
}
