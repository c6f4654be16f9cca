package main

import (
	"fmt"
	"os"
	"path/filepath"
	"time"
	"unsafe"

	"github.com/bpfsnap/bpfsnap/capture/probes/cpu"
	"github.com/bpfsnap/bpfsnap/capture/probes/mem"
	"github.com/bpfsnap/bpfsnap/formats"
	"github.com/bpfsnap/bpfsnap/internal/httpparse"
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
func benchRecorderAlone(env *Env) ([]Row, error) {
	const n = 2_000_000
	type kind struct {
		name  string
		setup func(w *formats.Writer) func(i int) error
	}
	user := [12]uint64{0x401000, 0x401200, 0x401400, 0x7f0000001000, 0x7f0000002000, 0x401600, 0x401800, 0x401a00, 0x401c00, 0x7f0000003000, 0x7f0000004000, 0x401e00}
	kinds := []kind{
		{"mem", func(w *formats.Writer) func(int) error {
			t := formats.NewTable[formats.MemEvent](w, formats.TableMemEvents)
			raw := make([]byte, unsafe.Sizeof(mem.Event{}))
			ev := (*mem.Event)(unsafe.Pointer(&raw[0]))
			copy(ev.Ustack[:], user[:])
			ev.H.UstackBytes, ev.H.Pid, ev.H.Tid = int32(8*len(user)), 4242, 4243
			kinds := [...]string{"", formats.MemMalloc, formats.MemCalloc, formats.MemRealloc, formats.MemFree}
			return func(i int) error {
				ev.H.TimeNs, ev.H.Kind, ev.H.Addr, ev.H.Size = uint64(i)*500, uint16(1+3*(i&1)), 0x5500000000+uint64(i%4096)*64, uint64(32+i%256)
				e := (*mem.Event)(unsafe.Pointer(&raw[0]))
				row := formats.MemEvent{TimeNs: e.H.TimeNs, PID: e.H.Pid, TID: e.H.Tid, Kind: kinds[e.H.Kind], Addr: e.H.Addr, Size: e.H.Size, Weight: 1}
				if e.H.Kind != 4 {
					frames := make([]uint64, 0, e.H.UstackBytes/8)
					for _, f := range e.Ustack[:e.H.UstackBytes/8] {
						frames = append(frames, f-1)
					}
					row.StackID = frames[0] ^ uint64(len(frames)) // stands in for the dedup table's id
				}
				return t.Write(row)
			}
		}},
		{"cpu", func(w *formats.Writer) func(int) error {
			t := formats.NewTable[formats.CPUSample](w, formats.TableCPUSamples)
			raw := make([]byte, unsafe.Sizeof(cpu.Sample{}))
			ev := (*cpu.Sample)(unsafe.Pointer(&raw[0]))
			copy(ev.Ustack[:], user[:])
			copy(ev.Kstack[:], []uint64{0xffffffff81000000, 0xffffffff81000100, 0xffffffff81000200})
			ev.UstackBytes, ev.KstackBytes, ev.Pid, ev.Tid, ev.CgroupId = int32(8*len(user)), 24, 4242, 4243, 777
			copy(ev.Comm[:], []int8{'w', 'o', 'r', 'k', 'e', 'r'})
			return func(i int) error {
				ev.TimeNs, ev.Cpu = uint64(i)*50_000, uint32(i&1)
				e := (*cpu.Sample)(unsafe.Pointer(&raw[0]))
				k := append([]uint64(nil), e.Kstack[:e.KstackBytes/8]...)
				u := append([]uint64(nil), e.Ustack[:e.UstackBytes/8]...)
				comm := make([]byte, 0, 16)
				for _, c := range e.Comm {
					if c == 0 {
						break
					}
					comm = append(comm, byte(c))
				}
				return t.Write(formats.CPUSample{TimeNs: e.TimeNs, CPU: e.Cpu, PID: e.Pid, TID: e.Tid, CgroupID: e.CgroupId, Comm: string(comm), StackID: k[0] ^ u[len(u)-1]})
			}
		}},
		{"http", func(w *formats.Writer) func(int) error {
			t := formats.NewTable[formats.HTTPRequest](w, formats.TableHTTPRequests)
			req := []byte("GET /api/products/1234?page=2 HTTP/1.1\r\nHost: shop\r\nUser-Agent: wrk\r\nAccept: */*\r\n\r\n")
			resp := []byte("HTTP/1.1 200 OK\r\nServer: nginx\r\nContent-Type: text/html\r\nContent-Length: 17\r\n\r\n")
			return func(i int) error {
				// Two ring records make one row: the request head and the
				// response head.
				r, ok := httpparse.ParseRequest(req)
				st, ok2 := httpparse.ParseStatus(resp)
				if !ok || !ok2 {
					return fmt.Errorf("synthetic HTTP heads do not parse")
				}
				path, cut := httpparse.CleanTarget(r.Target, false)
				return t.Write(formats.HTTPRequest{RequestNs: uint64(i) * 20_000, ResponseNs: uint64(i)*20_000 + 50_000, PID: 4242, TID: 4242, CgroupID: 777,
					Role: formats.RoleServer, Method: r.Method, Path: path, PathTruncated: cut, Status: uint32(st), LocalAddr: "127.0.0.1:8080",
					RemoteAddr: "127.0.0.1:" + fmt.Sprint(40000+i%1000), Connection: uint64(i / 100), RequestBytes: -1, ResponseBytes: httpparse.ContentLength(resp)})
			}
		}},
	}
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
