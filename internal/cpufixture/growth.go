package cpufixture

import (
	"path/filepath"
	"time"

	"github.com/bpfsnap/bpfsnap/formats"
)

// Growth fixture: pid GrowthPID ("grower") makes LeakBytes resident in
// leak (through LeakEvents sampled events of 64 KiB, weight 1) and
// FileBytes of file pages; it exec'd at GrowthExecAt, and an event and
// an RSS reading before that belong to the program it replaced. Its RSS
// readings climb from RSSFrom to RSSTo. A second process, the hostile
// comm, grows HostileBytes at frames with hostile names.
const (
	GrowthPID    = 300
	LeakEvents   = 40
	LeakBytes    = LeakEvents * 64 << 10
	FileBytes    = 16 << 10
	HostileBytes = 8 << 10
	RSSFrom      = 10 << 20
	RSSTo        = 20 << 20
)

// GrowthExecAt is when GrowthPID exec'd its program.
const GrowthExecAt = StartMono + uint64(time.Second)

// WriteGrowth writes the growth fixture archive into dir and returns its
// path.
func WriteGrowth(dir string) (string, error) {
	out := filepath.Join(dir, "growth-fixture.bpfsnap")
	m := formats.Manifest{BpfsnapVersion: "test", Host: "fixture-host", Kernel: "6.18-test", Arch: "amd64",
		Window: formats.Window{StartWall: time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC),
			EndWall:     time.Date(2026, 11, 24, 12, 0, 10, 0, time.UTC),
			StartMonoNs: StartMono, EndMonoNs: StartMono + uint64(Span)},
		Probes: []formats.Probe{{Name: "growth", Attached: true, Details: map[string]string{"sample_bytes": "65536"}}}}
	w, err := formats.Create(out, m, formats.CreateOptions{SealInterval: time.Hour})
	if err != nil {
		return "", err
	}
	frames := []formats.Frame{
		{FrameID: 1, Module: "/usr/bin/grower", BuildID: "aa", FileOffset: 0x10, Function: "main"},
		{FrameID: 2, Module: "/usr/bin/grower", BuildID: "aa", FileOffset: 0x20, Function: "leak"},
		{FrameID: 3, Kernel: true, Module: "[kernel]", Address: 0xffffffff81000000, Function: "do_anonymous_page"},
		{FrameID: 4, Module: "/usr/bin/old", FileOffset: 0x30, Function: "old_program"},
		{FrameID: 5, Module: HostileModule, FileOffset: 0x40, Function: HostileFunc3},
		{FrameID: 6, Module: "/usr/bin/grower", BuildID: "aa", FileOffset: 0x50, Function: "load_file"},
	}
	stacks := []formats.Stack{
		{StackID: 1, PID: GrowthPID, FrameIDs: []uint64{3, 2, 1}},
		{StackID: 2, PID: GrowthPID, FrameIDs: []uint64{3, 4}},
		{StackID: 3, PID: HostilePID, FrameIDs: []uint64{3, 5}},
		{StackID: 4, PID: GrowthPID, FrameIDs: []uint64{6, 1}},
	}
	var events []formats.GrowthEvent
	events = append(events, formats.GrowthEvent{TimeNs: StartMono + 1000, PID: GrowthPID, Kind: formats.GrowthAnon, Bytes: 1 << 20, Weight: 1, StackID: 2})
	for i := 0; i < LeakEvents; i++ {
		events = append(events, formats.GrowthEvent{TimeNs: GrowthExecAt + uint64(i)*100_000_000, PID: GrowthPID, TID: GrowthPID, Kind: formats.GrowthAnon,
			Bytes: 64 << 10, Weight: 1, Fault: true, Addr: 0x7f0000000000 + uint64(i)<<16, StackID: 1})
	}
	events = append(events,
		formats.GrowthEvent{TimeNs: GrowthExecAt + 5, PID: GrowthPID, Kind: formats.GrowthFile, Bytes: FileBytes, Weight: 1, StackID: 4},
		formats.GrowthEvent{TimeNs: GrowthExecAt + 7, PID: HostilePID, Kind: formats.GrowthAnon, Bytes: HostileBytes, Weight: 1, StackID: 3})
	var rss []formats.RSSSample
	rss = append(rss, formats.RSSSample{TimeNs: StartMono + 500, PID: GrowthPID, RSS: 99 << 20, RSSAnon: 99 << 20, VMData: 500 << 20})
	for i := 0; i <= 10; i++ {
		v := uint64(RSSFrom + (RSSTo-RSSFrom)*i/10)
		rss = append(rss, formats.RSSSample{TimeNs: GrowthExecAt + uint64(i)*500_000_000, PID: GrowthPID, RSS: v, RSSAnon: v - 1<<20, VMData: v + 4<<20})
	}
	procs := []formats.ProcessEvent{
		{TimeNs: StartMono, Kind: formats.ProcessScan, PID: GrowthPID, Comm: "old"},
		{TimeNs: GrowthExecAt, Kind: formats.ProcessExec, PID: GrowthPID, Comm: "grower"},
		{TimeNs: StartMono, Kind: formats.ProcessScan, PID: HostilePID, Comm: HostileComm},
	}
	totals := []formats.GrowthTotal{{PID: GrowthPID, AnonBytes: LeakBytes + 1<<20, FileBytes: FileBytes, Changes: 1000}}
	for _, write := range []func() error{
		func() error { return formats.NewTable[formats.Frame](w, formats.TableFrames).Write(frames...) },
		func() error { return formats.NewTable[formats.Stack](w, formats.TableStacks).Write(stacks...) },
		func() error {
			return formats.NewTable[formats.GrowthEvent](w, formats.TableGrowthEvents).Write(events...)
		},
		func() error { return formats.NewTable[formats.RSSSample](w, formats.TableRSSSamples).Write(rss...) },
		func() error { return formats.NewTable[formats.ProcessEvent](w, formats.TableProcesses).Write(procs...) },
		func() error {
			return formats.NewTable[formats.GrowthTotal](w, formats.TableGrowthTotals).Write(totals...)
		},
	} {
		if err := write(); err != nil {
			w.Abort()
			return "", err
		}
	}
	if err := w.Finish(nil); err != nil {
		return "", err
	}
	return out, nil
}
