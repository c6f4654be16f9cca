package analyze

import (
	"strings"
	"testing"
	"time"
)

// The slices counted in LoadCPU's one pass are exactly what a pass per
// slice with --from/--to gives (what the report did before): same sample
// counts, same folded stacks.
func TestCPUSlicesEqualOnePassPerSlice(t *testing.T) {
	a := fixtureArchive(t)
	for _, f := range []Filter{{}, {From: 200 * time.Millisecond}} {
		whole, err := LoadCPU(a, Options{Filter: f, Slices: 6})
		if err != nil {
			t.Fatal(err)
		}
		if len(whole.Slices) != 6 {
			t.Fatalf("filter %+v: %d slices, want 6", f, len(whole.Slices))
		}
		var sum uint64
		for _, sl := range whole.Slices {
			one, err := LoadCPU(a, Options{Filter: Filter{From: sl.From, To: sl.To}})
			if err != nil {
				t.Fatal(err)
			}
			if sl.Profile.Samples != one.Samples {
				t.Errorf("slice %s–%s: %d samples, a pass of its own gives %d", sl.From, sl.To, sl.Profile.Samples, one.Samples)
			}
			got, want := foldedString(t, sl.Profile), foldedString(t, one)
			if got != want {
				t.Errorf("slice %s–%s folded:\n%s\nwant:\n%s", sl.From, sl.To, got, want)
			}
			sum += sl.Profile.Samples
		}
		if sum == 0 || sum > whole.Samples {
			t.Errorf("filter %+v: slices hold %d samples of %d", f, sum, whole.Samples)
		}
	}
}

func foldedString(t *testing.T, p *CPUProfile) string {
	var b strings.Builder
	if err := WriteFolded(&b, p.Folded(FoldOptions{WithPID: true})); err != nil {
		t.Fatal(err)
	}
	return b.String()
}
