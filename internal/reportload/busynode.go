package reportload

import (
	"fmt"
	"math"
	"math/rand"
	"time"

	"github.com/bpfsnap/bpfsnap/formats"
)

// The busy node: a 60 s whole-node capture (default probe sets) of a
// 32-CPU Kubernetes node running 40 services in 8 namespaces, each with
// its own code and a few hot paths through libc and the kernel, plus a
// stream of short-lived jobs. What makes a report heavy is all there: wide
// flame graphs (thousands of distinct stacks, up to 48 frames deep) drawn
// once for the window and once per slice, and a long endpoint table.
const (
	BusyCPUs      = 32
	BusyHz        = 99
	BusyWindow    = 60 * time.Second
	BusyServices  = 40
	BusyJobs      = 500
	BusyStacks    = 6000
	BusyEndpoints = 160
	BusyRequests  = 200_000
)

// WriteBusyNode writes the busy-node archive at path with formats' writer,
// as a capture would.
func WriteBusyNode(path string) error {
	rng := rand.New(rand.NewSource(42))
	const start = uint64(10_000_000_000_000)
	end := start + uint64(BusyWindow)
	wall := time.Date(2026, 12, 1, 9, 30, 0, 0, time.UTC)
	m := formats.Manifest{BpfsnapVersion: "busy-node", Host: "node-busy-7", Kernel: "6.18", Arch: "amd64",
		Window: formats.Window{StartWall: wall, EndWall: wall.Add(BusyWindow), StartMonoNs: start, EndMonoNs: end,
			Requested: BusyWindow.String(), EndReason: "duration"},
		Probes: []formats.Probe{{Name: "process", Attached: true}, {Name: "cpu", Attached: true,
			Details: map[string]string{"frequency_hz": fmt.Sprint(BusyHz)}}, {Name: "http", Attached: true}},
		Options: map[string]string{"probes": "cpu,http"},
		Drops:   map[string]uint64{"cpu.ringbuf_full": 120, "http.no_response": 35, "stacks.unsymbolized_frames": 210},
	}
	w, err := formats.Create(path, m, formats.CreateOptions{SealInterval: time.Hour})
	if err != nil {
		return err
	}
	fail := func(err error) error { w.Abort(); return err }

	// Processes: one per service (pid 1000+s), the jobs after them.
	type svc struct {
		pid             uint32
		comm, ns, pod   string
		funcs           []uint64 // frame ids of its own code
		routes          []string
		cgroup          uint64
		module, buildID string
	}
	services := make([]svc, BusyServices)
	var procs []formats.ProcessEvent
	for i := range services {
		s := &services[i]
		s.pid = uint32(1000 + i)
		s.comm = fmt.Sprintf("svc-%02d", i)
		s.ns = fmt.Sprintf("team-%d", i%8)
		s.pod = fmt.Sprintf("%s-%x-%05d", s.comm, rng.Uint32()&0xfffff, i)
		s.cgroup = uint64(5000 + i)
		s.module = "/app/" + s.comm
		s.buildID = fmt.Sprintf("%040x", rng.Uint64())
		procs = append(procs, formats.ProcessEvent{TimeNs: start, Kind: formats.ProcessScan, PID: s.pid, PPID: 1, Comm: s.comm,
			Exe: s.module, Cmdline: s.module + " --port 8080", CgroupID: s.cgroup,
			CgroupPath: fmt.Sprintf("/kubepods/pod%d/%x", i, rng.Uint64()), StartNs: start - 3600e9,
			Namespace: s.ns, Pod: s.pod, Container: s.comm, Image: "registry/" + s.comm + ":1.4"})
	}
	for j := 0; j < BusyJobs; j++ {
		pid := uint32(20000 + j)
		t := start + uint64(rng.Int63n(int64(BusyWindow)-1e9))
		procs = append(procs,
			formats.ProcessEvent{TimeNs: t, Kind: formats.ProcessFork, PID: pid, PPID: 1000, Comm: "sh", StartNs: t},
			formats.ProcessEvent{TimeNs: t + 1e6, Kind: formats.ProcessExec, PID: pid, PPID: 1000, Comm: "job", Exe: "/usr/bin/job", Cmdline: fmt.Sprintf("job --shard %d", j), StartNs: t},
			formats.ProcessEvent{TimeNs: t + 5e8, Kind: formats.ProcessExit, PID: pid, PPID: 1000, Comm: "job", StartNs: t})
	}
	if err := formats.NewTable[formats.ProcessEvent](w, formats.TableProcesses).Write(procs...); err != nil {
		return fail(err)
	}

	// Frames: per service 150 functions; libc 200; kernel 300.
	var frames []formats.Frame
	nextID := uint64(1)
	frame := func(f formats.Frame) uint64 {
		f.FrameID = nextID
		nextID++
		frames = append(frames, f)
		return f.FrameID
	}
	var libc, kernel []uint64
	for i := 0; i < 200; i++ {
		libc = append(libc, frame(formats.Frame{Module: "/usr/lib/x86_64-linux-gnu/libc.so.6", FileOffset: uint64(0x28000 + i*0x140),
			Address: uint64(0x7f0000028000 + i*0x140), Function: fmt.Sprintf("__libc_fn_%d", i)}))
	}
	for i := 0; i < 300; i++ {
		kernel = append(kernel, frame(formats.Frame{Kernel: true, Module: "[kernel]", Address: 0xffffffff81000000 + uint64(i)*0x200,
			Function: fmt.Sprintf("kernel_fn_%d", i)}))
	}
	for i := range services {
		s := &services[i]
		for f := 0; f < 150; f++ {
			s.funcs = append(s.funcs, frame(formats.Frame{Module: s.module, BuildID: s.buildID, FileOffset: uint64(0x1000 + f*0x80),
				Address: uint64(0x400000 + f*0x80), Function: fmt.Sprintf("%s/internal/handler.(*Server).step%d", s.comm, f),
				File: fmt.Sprintf("/src/%s/handler.go", s.comm), Line: uint32(10 + f)}))
		}
		for r := 0; r < BusyEndpoints/BusyServices; r++ {
			s.routes = append(s.routes, fmt.Sprintf("/api/v%d/%s/items", r+1, s.comm))
		}
	}
	if err := formats.NewTable[formats.Frame](w, formats.TableFrames).Write(frames...); err != nil {
		return fail(err)
	}

	// Stacks: each a walk down its service's code (a shared trunk, then
	// branches), sometimes into libc and the kernel; leaf first.
	stacks := make([]formats.Stack, BusyStacks)
	owner := make([]int, BusyStacks)
	weight := make([]float64, BusyStacks)
	var total float64
	for i := range stacks {
		si := i % BusyServices
		s := &services[si]
		depth := 8 + rng.Intn(32)
		var ids []uint64
		if rng.Intn(3) == 0 {
			for k := 0; k < 1+rng.Intn(6); k++ {
				ids = append(ids, kernel[rng.Intn(len(kernel))])
			}
		}
		if rng.Intn(2) == 0 {
			ids = append(ids, libc[rng.Intn(len(libc))], libc[rng.Intn(len(libc))])
		}
		user := make([]uint64, depth)
		for d := range user {
			// Outer frames are shared (main, server loop), inner ones vary.
			spread := 1 + d*d/4
			user[depth-1-d] = s.funcs[(d*7+rng.Intn(spread))%len(s.funcs)]
		}
		stacks[i] = formats.Stack{StackID: uint64(i + 1), PID: s.pid, FrameIDs: append(ids, user...)}
		owner[i] = si
		weight[i] = math.Exp(rng.NormFloat64() * 1.5) // a few hot stacks, a long tail
		total += weight[i]
	}
	if err := formats.NewTable[formats.Stack](w, formats.TableStacks).Write(stacks...); err != nil {
		return fail(err)
	}

	// CPU samples over the window, stacks drawn by weight.
	cum := make([]float64, len(weight))
	acc := 0.0
	for i, v := range weight {
		acc += v / total
		cum[i] = acc
	}
	samplesTab := &batched[formats.CPUSample]{t: formats.NewTable[formats.CPUSample](w, formats.TableCPUSamples)}
	nSamples := int(BusyWindow.Seconds()) * BusyHz * BusyCPUs * 3 / 4 // 75% busy
	for i := 0; i < nSamples; i++ {
		x := rng.Float64()
		lo, hi := 0, len(cum)-1
		for lo < hi {
			mid := (lo + hi) / 2
			if cum[mid] < x {
				lo = mid + 1
			} else {
				hi = mid
			}
		}
		s := &services[owner[lo]]
		samplesTab.add(formats.CPUSample{TimeNs: start + uint64(i)*uint64(BusyWindow)/uint64(nSamples), CPU: uint32(i % BusyCPUs),
			PID: s.pid, TID: s.pid + uint32(rng.Intn(8)), CgroupID: s.cgroup, Comm: s.comm, StackID: stacks[lo].StackID})
	}
	if err := samplesTab.flush(); err != nil {
		return fail(err)
	}

	// HTTP: every service serves its routes; a few are slow.
	reqTab := &batched[formats.HTTPRequest]{t: formats.NewTable[formats.HTTPRequest](w, formats.TableHTTPRequests)}
	for i := 0; i < BusyRequests; i++ {
		s := &services[rng.Intn(len(services))]
		r := rng.Intn(len(s.routes))
		t := start + uint64(i)*uint64(BusyWindow)/BusyRequests
		median := 2e6 * float64(1+r)
		if r == 0 && s.pid%7 == 0 {
			median = 250e6
		}
		lat := uint64(median * math.Exp(rng.NormFloat64()*0.6))
		status := uint32(200)
		if rng.Intn(200) == 0 {
			status = 503
		}
		method := "GET"
		if r%2 == 1 {
			method = "POST"
		}
		reqTab.add(formats.HTTPRequest{RequestNs: t, ResponseNs: t + lat, PID: s.pid, TID: s.pid + 1, CgroupID: s.cgroup,
			Role: formats.RoleServer, Method: method, Path: fmt.Sprintf("%s/%d", s.routes[r], rng.Intn(100000)), Status: status,
			LocalAddr: "10.0.3.7:8080", RemoteAddr: fmt.Sprintf("10.0.%d.%d:%d", rng.Intn(8), rng.Intn(250), 30000+rng.Intn(30000)),
			Connection: uint64(rng.Intn(5000)), RequestBytes: int64(200 + rng.Intn(2000)), ResponseBytes: int64(500 + rng.Intn(50000))})
	}
	if err := reqTab.flush(); err != nil {
		return fail(err)
	}
	return w.Finish(nil)
}

// batched writes rows to a table 4096 at a time; the first error sticks.
type batched[T any] struct {
	t    *formats.TableWriter[T]
	rows []T
	err  error
}

func (b *batched[T]) add(r T) {
	if b.rows = append(b.rows, r); len(b.rows) == 4096 {
		b.flush()
	}
}

func (b *batched[T]) flush() error {
	if b.err == nil && len(b.rows) > 0 {
		b.err = b.t.Write(b.rows...)
	}
	b.rows = b.rows[:0]
	return b.err
}
