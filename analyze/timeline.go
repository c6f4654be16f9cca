package analyze

import (
	"time"

	"github.com/bpfsnap/bpfsnap/formats"
)

const (
	timelineBuckets = 100
	minTimelineStep = 10 * time.Millisecond
	// maxTimelineBuckets bounds a timeline whose window end is unknown (a
	// crashed capture) against timestamps far in the future.
	maxTimelineBuckets = 10_000
)

// Timeline is a count of events per fixed step.
type Timeline struct {
	// StartOffsetNs is where the first bucket starts, from the window
	// start (the --from of the analysis).
	StartOffsetNs int64    `json:"start_offset_ns"`
	StepNs        int64    `json:"step_ns"`
	Samples       []uint64 `json:"samples"`
}

type timelineBuilder struct {
	Timeline
	startMono uint64
	step      uint64
}

// newTimeline splits the analyzed slice of the window into about 100 steps
// (at least 10 ms). When the window's end is unknown, the steps are 1 s and
// the timeline grows as samples arrive.
func newTimeline(w formats.Window, f Filter) *timelineBuilder {
	from := f.From
	to := f.To
	if to == 0 && w.EndMonoNs > w.StartMonoNs {
		to = w.Duration()
	}
	step := time.Second
	if to > from {
		step = max((to-from+timelineBuckets-1)/timelineBuckets, minTimelineStep)
	}
	b := &timelineBuilder{startMono: w.StartMonoNs + uint64(from), step: uint64(step)}
	b.StartOffsetNs, b.StepNs = int64(from), int64(step)
	if to > from {
		// Rounded up without (to-from+step-1), which overflows for a
		// window of centuries (a hostile or corrupt manifest).
		n := (to - from) / step
		if (to-from)%step != 0 {
			n++
		}
		b.Samples = make([]uint64, int(n))
	}
	return b
}

func (b *timelineBuilder) add(t uint64) {
	if t < b.startMono {
		return
	}
	i := (t - b.startMono) / b.step
	if i >= uint64(len(b.Samples)) {
		if i >= maxTimelineBuckets {
			return
		}
		b.Samples = append(b.Samples, make([]uint64, int(i)+1-len(b.Samples))...)
	}
	b.Samples[i]++
}
