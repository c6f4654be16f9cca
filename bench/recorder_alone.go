package main

import (
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/bpfsnap/bpfsnap/capture/probes/cpu"
	"github.com/bpfsnap/bpfsnap/capture/probes/http"
	"github.com/bpfsnap/bpfsnap/capture/recorder"
	"github.com/bpfsnap/bpfsnap/formats"
)

// benchRecorderAlone measures the user-space half of the recorder without
// a workload: ring records shaped like the kernel's fed to the probe sets'
// own decoders (their Replay functions: http and cpu decode, pair and
// deduplicate stacks exactly as in a capture; mem's stream is still a
// stand-in, bench/recorder_alone_mem.go) and written one row per event
// into a real archive (zstd Parquet, 1 s seals, bundled at the end) on one
// goroutine. It leaves out the ring buffer read itself and symbolization,
// so it is an upper bound on what the recorder can take, and says whether
// the writer or the kernel side limits the rows above.
// aloneKind is one probe set's record stream: setup returns a function
// that decodes and writes the i-th record.
type aloneKind struct {
	name  string
	setup func(w *formats.Writer) func(i int) error
}

// replayed adapts a probe set's Replay to a writer.
func replayed(replay func(*recorder.Session) func(int) error) func(w *formats.Writer) func(int) error {
	return func(w *formats.Writer) func(int) error {
		return replay(recorder.NewDetachedSession(w, recorder.Options{}))
	}
}

// aloneUserStack is the 12-frame user stack every synthetic record carries.
var aloneUserStack = [12]uint64{0x401000, 0x401200, 0x401400, 0x7f0000001000, 0x7f0000002000, 0x401600, 0x401800, 0x401a00, 0x401c00, 0x7f0000003000, 0x7f0000004000, 0x401e00}

func benchRecorderAlone(env *Env) ([]Row, error) {
	const n = 2_000_000
	kinds := []aloneKind{{"mem", aloneMem}, {"cpu", replayed(cpu.Replay)}, {"http", replayed(http.Replay)}}
	var rows []Row
	for _, k := range kinds {
		var rates, sizes []float64
		for rep := 0; rep < max(min(env.Reps, 3), 1); rep++ {
			out := filepath.Join(env.Dir, "alone-"+k.name+".bpfsnap")
			os.Remove(out)
			w, err := formats.Create(out, formats.Manifest{}, formats.CreateOptions{})
			if err != nil {
				return nil, err
			}
			write := k.setup(w)
			start := time.Now()
			for i := 0; i < n; i++ {
				if err := write(i); err != nil {
					w.Abort()
					return nil, err
				}
			}
			if err := w.Finish(nil); err != nil {
				return nil, err
			}
			rates = append(rates, n/time.Since(start).Seconds())
			if st, err := os.Stat(out); err == nil {
				sizes = append(sizes, float64(st.Size())/n)
			}
			os.Remove(out)
		}
		unit := "events"
		if k.name == "http" {
			unit = "requests (1 ring record each)"
		}
		r := stats(rates)
		rows = append(rows, Row{
			Name:   "recorder alone (synthetic, no kernel), " + k.name + ": " + unit + "/s decoded and written",
			Result: r.Format("%.0f") + fmt.Sprintf(", %.1f B/row", stats(sizes).Median),
			Goal:   "≥ 1,000,000 events/s", Met: yesNo(r.Median >= 1e6),
			Note: fmt.Sprintf("`go run ./bench -only \"recorder throughput\"`: %d real-shaped ring records (the bpf package structs) through the probe set's own decoder (cpu: with stack deduplication; mem: a stand-in decode), one goroutine, sealed and bundled; "+
				"no ring read, no symbolization: an upper bound for the user-space side, not a capture", n),
		})
	}
	return rows, nil
}
