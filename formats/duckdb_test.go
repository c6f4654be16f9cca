package formats

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/bpfsnap/bpfsnap/internal/testenv"
)

// requireDuckDB returns the DuckDB query tool (tools/duckdb, run by node)
// and unzip, or skips the test without them.
func requireDuckDB(t *testing.T) (tool, unzip string) {
	t.Helper()
	if runtime.GOOS != "linux" {
		t.Skip("the DuckDB tool is installed by scripts/deps.sh on Linux")
	}
	testenv.RequireTool(t, "node")
	unzip = testenv.RequireTool(t, "unzip")
	tool, _ = filepath.Abs("../tools/duckdb/query.mjs")
	if _, err := os.Stat(filepath.Join(filepath.Dir(tool), "node_modules", "@duckdb")); err != nil {
		testenv.Skip(t, "DuckDB is not installed (run scripts/deps.sh, which runs npm ci in tools/duckdb)")
	}
	return tool, unzip
}

// TestIndependentReader proves the archive is plain zip + Parquet: the real
// `unzip` extracts it and DuckDB (a separate Parquet implementation, from
// tools/duckdb) reads every table with the documented column names.
func TestIndependentReader(t *testing.T) {
	tool, unzip := requireDuckDB(t)

	dir := t.TempDir()
	out := filepath.Join(dir, "a.bpfsnap")
	w, err := Create(out, testManifest(), CreateOptions{SealInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	w.MaxChunkRows = 300 // several chunks per table
	procs := NewTable[ProcessEvent](w, TableProcesses)
	stacks := NewTable[Stack](w, TableStacks)
	var pidSum, frameSum uint64
	for i := 0; i < 1000; i++ {
		comm := fmt.Sprintf("p%d\"<x>", i%7)
		procs.Write(ProcessEvent{TimeNs: uint64(i) * 1000, Kind: ProcessExec, PID: uint32(i + 1), Comm: comm, CgroupID: 1 << 40})
		pidSum += uint64(i + 1)
		ids := []uint64{uint64(i), uint64(i) + 1, uint64(i) + 2}
		stacks.Write(Stack{StackID: uint64(i) + 1, PID: uint32(i), FrameIDs: ids})
		frameSum += 3*uint64(i) + 3
	}
	if err := w.Finish(nil); err != nil {
		t.Fatal(err)
	}
	ex := filepath.Join(dir, "x")
	if msg, err := exec.Command(unzip, "-q", out, "-d", ex).CombinedOutput(); err != nil {
		t.Fatalf("unzip: %v: %s", err, msg)
	}
	query := func(sql string) []map[string]any {
		t.Helper()
		cmd := exec.Command("node", tool, sql)
		cmd.Dir = ex
		data, err := cmd.Output()
		if err != nil {
			var stderr []byte
			if ee, ok := err.(*exec.ExitError); ok {
				stderr = ee.Stderr
			}
			t.Fatalf("duckdb %q: %v: %s", sql, err, stderr)
		}
		var rows []map[string]any
		if err := json.Unmarshal(data, &rows); err != nil {
			t.Fatalf("duckdb output %q: %v", data, err)
		}
		return rows
	}
	got := query(`select count(*)::BIGINT as n, sum(pid)::BIGINT as pids, count(distinct comm)::BIGINT as comms,
		min(cgroup_id)::VARCHAR as cg, min(kind) as kind from read_parquet('processes-*.parquet')`)[0]
	want := map[string]any{"n": 1000.0, "pids": float64(pidSum), "comms": 7.0, "cg": fmt.Sprint(uint64(1) << 40), "kind": "exec"}
	for k, v := range want {
		if fmt.Sprint(got[k]) != fmt.Sprint(v) {
			t.Errorf("processes %s: duckdb says %v, wrote %v", k, got[k], v)
		}
	}
	got = query(`select count(*)::BIGINT as n, sum(list_sum(frame_ids))::BIGINT as frames from read_parquet('stacks-*.parquet')`)[0]
	if fmt.Sprint(got["n"]) != "1000" || fmt.Sprint(got["frames"]) != fmt.Sprint(frameSum) {
		t.Errorf("stacks: duckdb says %v, wrote 1000 rows with frame id sum %d", got, frameSum)
	}
	// The escaping-sensitive strings survive byte for byte.
	got = query(`select comm from read_parquet('processes-*.parquet') where pid = 1`)[0]
	if got["comm"] != "p0\"<x>" {
		t.Errorf("comm read back as %q", got["comm"])
	}
}
