package formats

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestReadColumnsMatchesReadTable reads the same HTTP rows through both
// readers, over many chunks and pages, with plain and dictionary-encoded
// strings, and stops early on request.
func TestReadColumnsMatchesReadTable(t *testing.T) {
	out := filepath.Join(t.TempDir(), "a.bpfsnap")
	w, err := Create(out, testManifest(), CreateOptions{SealInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	w.MaxChunkRows = 7000 // several chunks, each of several pages
	reqs := NewTable[HTTPRequest](w, TableHTTPRequests)
	const n = 50_000
	for i := 0; i < n; i++ {
		r := HTTPRequest{RequestNs: uint64(i) * 1000, ResponseNs: uint64(i)*1000 + uint64(i%977), PID: uint32(100 + i%13),
			Role: []string{RoleServer, RoleClient}[i%2], Method: []string{"GET", "POST", "PUT"}[i%3],
			Path: fmt.Sprintf("/p/%d/%s", i, strings.Repeat("x", i%50)), Status: uint32(200 + i%4), RemoteAddr: fmt.Sprintf("10.0.0.%d:%d", i%250, i),
			TLS: i%3 == 0 || i%7 == 0, GRPCStatus: int32(i%5 - 1)}
		if i%1000 == 0 {
			r.ResponseNs = 1 << 63 // beyond int64: read back with the same bits
		}
		if err := reqs.Write(r); err != nil {
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
	want, err := ReadAll[HTTPRequest](a, TableHTTPRequests)
	if err != nil || len(want) != n {
		t.Fatalf("ReadAll: %d rows, %v", len(want), err)
	}
	cols := []ColumnSpec{{Name: "response_ns", Kind: ColumnInt64}, {Name: "pid", Kind: ColumnInt32}, {Name: "role", Kind: ColumnBytes}, {Name: "method", Kind: ColumnBytes}, {Name: "path", Kind: ColumnBytes}, {Name: "status", Kind: ColumnInt32}, {Name: "remote_addr", Kind: ColumnBytes}, {Name: "tls", Kind: ColumnBool}, {Name: "grpc_status", Kind: ColumnInt32}}
	i := 0
	err = ReadColumns(a, TableHTTPRequests, cols, func(b *ColumnBatch) error {
		for k := 0; k < b.Rows; k++ {
			got := HTTPRequest{RequestNs: want[i].RequestNs, ResponseNs: uint64(b.Columns[0].Int64[k]), PID: uint32(b.Columns[1].Int32[k]),
				Role: string(b.Columns[2].Bytes(k)), Method: string(b.Columns[3].Bytes(k)), Path: string(b.Columns[4].Bytes(k)),
				Status: uint32(b.Columns[5].Int32[k]), RemoteAddr: string(b.Columns[6].Bytes(k)),
				TLS: b.Columns[7].Int32[k] == 1, GRPCStatus: b.Columns[8].Int32[k]}
			if got != want[i] {
				return fmt.Errorf("row %d: columns give %+v, rows give %+v", i, got, want[i])
			}
			i++
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if i != n {
		t.Fatalf("ReadColumns gave %d rows, want %d", i, n)
	}

	stop := errors.New("enough")
	seen := 0
	err = ReadColumns(a, TableHTTPRequests, cols[:1], func(b *ColumnBatch) error {
		seen += b.Rows
		if seen > 10_000 {
			return stop
		}
		return nil
	})
	if err != stop {
		t.Fatalf("a callback's error comes back as is, got %v", err)
	}
	for _, bad := range [][]ColumnSpec{{{Name: "path", Kind: ColumnInt64}}, {{Name: "pid", Kind: ColumnBytes}}, {{Name: "nope", Kind: ColumnInt32}}} {
		if err := ReadColumns(a, TableHTTPRequests, bad, func(*ColumnBatch) error { return nil }); err == nil {
			t.Errorf("ReadColumns(%v) accepted a column of the wrong kind or name", bad)
		}
	}
}

// An optional column a chunk predates reads as zeros beside the columns it
// has: archives of format 1 have no response_end_ns.
func TestReadColumnsOptionalAbsent(t *testing.T) {
	out := filepath.Join(t.TempDir(), "a.bpfsnap")
	w, err := Create(out, testManifest(), CreateOptions{SealInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	reqs := NewTable[HTTPRequest](w, TableHTTPRequests)
	var want []HTTPRequest
	for i := range 3000 {
		r := HTTPRequest{RequestNs: uint64(i)*1000 + 7, Path: "/x"}
		want = append(want, r)
		if err := reqs.Write(r); err != nil {
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
	cols := []ColumnSpec{{Name: "request_ns", Kind: ColumnInt64}, {Name: "no_such_column", Kind: ColumnInt64, Optional: true},
		{Name: "also_missing", Kind: ColumnBytes, Optional: true}}
	i := 0
	err = ReadColumns(a, TableHTTPRequests, cols, func(b *ColumnBatch) error {
		for k := 0; k < b.Rows; k++ {
			if uint64(b.Columns[0].Int64[k]) != want[i].RequestNs || b.Columns[1].Int64[k] != 0 || len(b.Columns[2].Bytes(k)) != 0 {
				t.Fatalf("row %d: request_ns %d, absent columns %d %q", i, b.Columns[0].Int64[k], b.Columns[1].Int64[k], b.Columns[2].Bytes(k))
			}
			i++
		}
		return nil
	})
	if err != nil || i != len(want) {
		t.Fatalf("read %d of %d rows: %v", i, len(want), err)
	}
	// Not optional, still an error.
	if err := ReadColumns(a, TableHTTPRequests, []ColumnSpec{{Name: "no_such_column", Kind: ColumnInt64}}, func(*ColumnBatch) error { return nil }); err == nil {
		t.Error("a missing required column was accepted")
	}
}
