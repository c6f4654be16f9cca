//go:build linux

package http

import (
	"path/filepath"
	"testing"

	"github.com/bpfsnap/bpfsnap/capture/recorder"
	"github.com/bpfsnap/bpfsnap/formats"
)

// BenchmarkHTTPRecord measures the recorder's user-space work per ring
// record of the http probe set — decoding, parsing and writing the row —
// on records shaped like those nginx under wrk produces (the kernel paired
// and framed them). `go test -bench HTTPRecord ./capture/`.
func BenchmarkHTTPRecord(b *testing.B) {
	w, err := formats.Create(filepath.Join(b.TempDir(), "b.bpfsnap"), formats.Manifest{}, formats.CreateOptions{})
	if err != nil {
		b.Fatal(err)
	}
	next := Replay(recorder.NewDetachedSession(w, recorder.Options{}))
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		if err := next(i); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	w.Abort()
}

// The kernel's drop counters are named from formats' catalog in the order
// of enum http_drop: one name per counter.
func TestDropNamesMatchEnum(t *testing.T) {
	if len(httpDropNames) != int(bpfHttpDropHTTP_DROP_MAX) {
		t.Fatalf("%d names for %d kernel counters", len(httpDropNames), bpfHttpDropHTTP_DROP_MAX)
	}
}
