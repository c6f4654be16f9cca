package analyze

import (
	"testing"

	"github.com/bpfsnap/bpfsnap/formats"
)

// Found by FuzzAnalyzeArchive: a window of ~292 years (a corrupt or
// hostile manifest) overflowed the bucket count's rounding and panicked in
// make. It gets its ~100 buckets like any window.
func TestTimelineWindowOfCenturies(t *testing.T) {
	w := formats.Window{StartMonoNs: 5_042_000_000, EndMonoNs: 1 << 63}
	b := newTimeline(w, Filter{})
	if n := len(b.Samples); n < 1 || n > timelineBuckets+1 {
		t.Fatalf("%d buckets", n)
	}
	b.add(w.StartMonoNs + 1)
	b.add(^uint64(0))
	if b.Samples[0] != 1 {
		t.Fatalf("samples %v", b.Samples[:3])
	}
}
