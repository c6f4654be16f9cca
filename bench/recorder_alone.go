package main

import (
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/bpfsnap/bpfsnap/formats"
)

// benchRecorderAlone measures the user-space half of the recorder without
// a workload: ring records shaped like the kernel's (the bpf package's
// event structs, with 12-frame stacks and real HTTP heads), decoded the way
// the probe sets decode them (cast, stack trim, HTTP head parse) and
// written one row per event into a real archive (zstd Parquet, 1 s seals,
// bundled at the end) on one goroutine. It leaves out the ring buffer
// read itself and stack deduplication/symbolization, so it is an upper
// bound on what the recorder can take, and says whether the writer or the
// kernel side limits the rows above.
// aloneKind is one probe set's synthetic record stream: setup returns a
// function that decodes and writes the i-th record.
type aloneKind struct {
	name  string
	setup func(w *formats.Writer) func(i int) error
}

// aloneUserStack is the 12-frame user stack every synthetic record carries.
var aloneUserStack = [12]uint64{0x401000, 0x401200, 0x401400, 0x7f0000001000, 0x7f0000002000, 0x401600, 0x401800, 0x401a00, 0x401c00, 0x7f0000003000, 0x7f0000004000, 0x401e00}

func benchRecorderAlone(env *Env) ([]Row, error) {
	const n = 2_000_000
	kinds := []aloneKind{{"mem", aloneMem}, {"cpu", aloneCPU}, {"http", aloneHTTP}}
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
			unit = "requests (2 ring records each)"
		}
		r := stats(rates)
		rows = append(rows, Row{
			Name:   "recorder alone (synthetic, no kernel), " + k.name + ": " + unit + "/s decoded and written",
			Result: r.Format("%.0f") + fmt.Sprintf(", %.1f B/row", stats(sizes).Median),
			Goal:   "≥ 1,000,000 events/s", Met: yesNo(r.Median*map[bool]float64{true: 2, false: 1}[k.name == "http"] >= 1e6),
			Note: fmt.Sprintf("`go run ./bench -only \"recorder throughput\"`: %d real-shaped ring records (bpf package structs, 12-frame stacks, real HTTP heads) decoded as the probe sets do and written one row per event, one goroutine, sealed and bundled; "+
				"no ring read, no stack dedup: an upper bound for the user-space side, not a capture", n),
		})
	}
	return rows, nil
}
