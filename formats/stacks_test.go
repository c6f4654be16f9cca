package formats

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
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
	rows := readBackAs[Frame](t, TableFrames, []frameV1{{FrameID: 7, Module: "/bin/x", FileOffset: 0x40, Function: "main", File: "x.c", Line: 3}})
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

// The documented way to expand a stack's inlined frames works in an
// independent reader: docs/format.md's DuckDB query, on an archive with
// two inlined levels, lists the logical frames leaf first.
func TestInlinedFramesWithDuckDB(t *testing.T) {
	tool, unzip := requireDuckDB(t)
	doc, err := os.ReadFile("../docs/format.md")
	if err != nil {
		t.Fatal(err)
	}
	_, after, _ := strings.Cut(string(doc), "-- one stack's logical frames, leaf first\n")
	sql, _, ok := strings.Cut(after, "\n```")
	if !ok || !strings.Contains(sql, "stack_id = 1234") {
		t.Fatalf("the inline query is not in docs/format.md")
	}
	dir := t.TempDir()
	out := filepath.Join(dir, "a.bpfsnap")
	w, err := Create(out, testManifest(), CreateOptions{SealInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	NewTable[Stack](w, TableStacks).Write(Stack{StackID: 1234, FrameIDs: []uint64{30, 20, 10}})
	inl := func(of uint64, d uint32, fn string) Frame {
		return Frame{FrameID: InlineFrameID(of, d), Function: fn, Inlined: true, InlineOf: of, InlineDepth: d}
	}
	NewTable[Frame](w, TableFrames).Write(
		inl(20, 1, "mix"), Frame{FrameID: 10, Function: "main"}, Frame{FrameID: 30, Function: "spin"},
		Frame{FrameID: 20, Function: "run"}, inl(20, 2, "step"), inl(99, 1, "elsewhere"))
	if err := w.Finish(nil); err != nil {
		t.Fatal(err)
	}
	ex := filepath.Join(dir, "x")
	if msg, err := exec.Command(unzip, "-q", out, "-d", ex).CombinedOutput(); err != nil {
		t.Fatalf("unzip: %v: %s", err, msg)
	}
	cmd := exec.Command("node", tool, strings.ReplaceAll(sql, "'x/", "'"))
	cmd.Dir = ex
	data, err := cmd.Output()
	if err != nil {
		t.Fatalf("duckdb: %v", err)
	}
	var rows []struct {
		Function string `json:"function"`
	}
	if err := json.Unmarshal(data, &rows); err != nil {
		t.Fatalf("duckdb output %q: %v", data, err)
	}
	var got []string
	for _, r := range rows {
		got = append(got, r.Function)
	}
	if strings.Join(got, " ") != "spin step mix run main" {
		t.Errorf("DuckDB expands the stack to %q", got)
	}
}
