package report

import (
	"fmt"
	"io"
	"math/rand/v2"
	"testing"

	"github.com/bpfsnap/bpfsnap/analyze"
	"github.com/bpfsnap/bpfsnap/formats"
	"github.com/bpfsnap/bpfsnap/internal/cpufixture"
)

// bigProfileArchive writes an archive of n samples over 5000 distinct
// stacks 8-48 frames deep drawn from 4000 functions in 20 processes, with a
// skewed distribution like a real profile (a few hot stacks, a long tail).
func bigProfileArchive(b *testing.B, n int) string {
	b.Helper()
	rng := rand.New(rand.NewPCG(1, 2))
	const nFrames, nStacks = 4000, 5000
	frames := make([]formats.Frame, nFrames)
	for i := range frames {
		frames[i] = formats.Frame{FrameID: uint64(i + 1), Module: "/usr/bin/svc", BuildID: "ab",
			FileOffset: uint64(i * 16), Function: fmt.Sprintf("pkg%d.(*Type%d).Method%d", i%50, i%200, i), Kernel: i < 200}
	}
	stacks := make([]formats.Stack, nStacks)
	for i := range stacks {
		depth := 8 + rng.IntN(40)
		ids := make([]uint64, depth)
		// Shared roots (first frames of the user part) make a real tree.
		for d := range ids {
			level := depth - 1 - d
			if level < 4 {
				ids[d] = uint64(200 + level*10 + i%3 + 1)
			} else {
				ids[d] = uint64(200 + rng.IntN(nFrames-200) + 1)
			}
		}
		if i%4 == 0 { // a kernel part on a quarter of the stacks
			ids = append([]uint64{uint64(rng.IntN(200) + 1), uint64(rng.IntN(200) + 1)}, ids...)
		}
		stacks[i] = formats.Stack{StackID: uint64(i + 1), FrameIDs: ids}
	}
	samples := make([]formats.CPUSample, n)
	for i := range samples {
		s := uint64(rng.ExpFloat64()*nStacks/8)%nStacks + 1
		pid := uint32(1000 + s%20)
		samples[i] = formats.CPUSample{TimeNs: cpufixture.StartMono + uint64(i)*10_000, PID: pid, TID: pid,
			Comm: fmt.Sprintf("svc-%d", pid%20), StackID: s}
	}
	var procs []formats.ProcessEvent
	for pid := uint32(1000); pid < 1020; pid++ {
		procs = append(procs, formats.ProcessEvent{TimeNs: cpufixture.StartMono, Kind: formats.ProcessScan, PID: pid, Comm: fmt.Sprintf("svc-%d", pid%20)})
	}
	path, err := cpufixture.WriteWith(b.TempDir(), samples, stacks, frames, procs...)
	if err != nil {
		b.Fatal(err)
	}
	return path
}

// BenchmarkFlameGraph measures the flamegraph verb on one million
// samples: "archive" is everything (read and join the tables, fold, build
// the tree, write the SVG); "render" starts from the loaded profile (fold,
// tree, SVG), i.e. what this package adds on top of reading Parquet.
func BenchmarkFlameGraph(b *testing.B) {
	path := bigProfileArchive(b, 1_000_000)
	load := func(b *testing.B) *analyze.CPUProfile {
		a, err := formats.Open(path)
		if err != nil {
			b.Fatal(err)
		}
		defer a.Close()
		p, err := analyze.LoadCPU(a, analyze.Options{})
		if err != nil {
			b.Fatal(err)
		}
		return p
	}
	render := func(b *testing.B, p *analyze.CPUProfile) int64 {
		cw := &countingWriter{}
		if err := WriteFlameGraph(cw, FlameTreeFromFolded(p.Folded(analyze.FoldOptions{})), FlameOptions{}); err != nil {
			b.Fatal(err)
		}
		return cw.n
	}
	b.Run("archive", func(b *testing.B) {
		var size int64
		for b.Loop() {
			size = render(b, load(b))
		}
		b.ReportMetric(float64(size), "svg-bytes")
	})
	b.Run("render", func(b *testing.B) {
		p := load(b)
		var size int64
		for b.Loop() {
			size = render(b, p)
		}
		b.ReportMetric(float64(size), "svg-bytes")
	})
}

type countingWriter struct{ n int64 }

func (c *countingWriter) Write(p []byte) (int, error) { c.n += int64(len(p)); return len(p), nil }

var _ io.Writer = (*countingWriter)(nil)
