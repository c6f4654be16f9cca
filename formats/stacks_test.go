package formats

import (
	"path/filepath"
	"testing"
	"time"
)

// frameV1 is the frames row as archives written before inline support
// have it: no inline_of, no inline_depth.
type frameV1 struct {
	FrameID    uint64 `parquet:"frame_id"`
	Kernel     bool   `parquet:"kernel"`
	Address    uint64 `parquet:"address"`
	Module     string `parquet:"module,dict"`
	BuildID    string `parquet:"build_id,dict"`
	FileOffset uint64 `parquet:"file_offset"`
	Function   string `parquet:"function"`
	File       string `parquet:"file"`
	Line       uint32 `parquet:"line"`
	Inlined    bool   `parquet:"inlined"`
}

// Archives from before the inline columns read with the current Frame:
// the missing columns read as zero (every frame is a stack's own frame).
func TestFramesWithoutInlineColumns(t *testing.T) {
	out := filepath.Join(t.TempDir(), "old.bpfsnap")
	w, err := Create(out, testManifest(), CreateOptions{SealInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	tw := NewTable[frameV1](w, TableFrames)
	if err := tw.Write(frameV1{FrameID: 7, Module: "/bin/x", FileOffset: 0x40, Function: "main", File: "x.c", Line: 3}); err != nil {
		t.Fatal(err)
	}
	if err := w.Finish(nil); err != nil {
		t.Fatal(err)
	}
	a, err := Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	rows, err := ReadAll[Frame](a, TableFrames)
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 1 || rows[0].FrameID != 7 || rows[0].Function != "main" || rows[0].Line != 3 || rows[0].InlineOf != 0 || rows[0].InlineDepth != 0 || rows[0].Inlined {
		t.Fatalf("old frames row read as %+v", rows)
	}
}

func TestInlineFrameID(t *testing.T) {
	seen := map[uint64]bool{}
	for _, phys := range []uint64{0, 1, 2, 0xdeadbeef, ^uint64(0)} {
		seen[phys] = true
	}
	for _, phys := range []uint64{1, 2, 0xdeadbeef, ^uint64(0)} {
		for d := uint32(1); d <= MaxInlineDepth; d++ {
			id := InlineFrameID(phys, d)
			if id == 0 || seen[id] {
				t.Fatalf("InlineFrameID(%#x, %d) = %#x: zero or repeated", phys, d, id)
			}
			seen[id] = true
			if InlineFrameID(phys, d) != id {
				t.Fatal("not deterministic")
			}
		}
	}
}
