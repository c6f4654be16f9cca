// Package cpufixture writes small archives of CPU samples with a known
// profile, for the analysis and rendering tests (analyze/, report/,
// cmd/bpfsnap). It is the table schema exactly as the capture writes it,
// with names a hostile workload could choose. Tests only.
package cpufixture

import (
	"fmt"
	"path/filepath"
	"time"

	"github.com/bpfsnap/bpfsnap/formats"
)

// Hostile names that must stay inert in every output.
const (
	HostileComm   = `"><script>alert(1)</script>`
	HostileFunc1  = `'onmouseover='alert(1)'`
	HostileFunc2  = "</script><svg onload=alert(2)>]]>"
	HostileFunc3  = "bad\xff\xfeutf8\x00nul\nnew;line\x1b[31m"
	HostileModule = "/tmp/evil\n lib;x.so"
)

// Window geometry: samples are spread evenly over [StartMono, StartMono+Span).
const (
	StartMono = uint64(1_000_000_000)
	Span      = 10 * time.Second
)

// Profile: pid 100 "app" spends HotSamples in main;work;hot (the last
// KernelSamples of them inside the kernel's timer interrupt), ColdSamples in
// main;work;cold, and pid 200 (the hostile comm) HostileSamples in frames
// with hostile names plus unresolved ones, and NoStackSamples without a
// stack. App samples come in the first half of the window, pid 200's in the
// second half.
const (
	HotSamples     = 600
	KernelSamples  = 100
	ColdSamples    = 300
	HostileSamples = 90
	NoStackSamples = 10
	AppPID         = 100
	HostilePID     = 200
	FreqHz         = 99
)

// Frame ids.
const (
	fMain = iota + 1
	fWork
	fHot
	fCold
	fKIRQ
	fKTimer
	fH1
	fH2
	fH3
	fUnres
	fUnknown
	fKUnres
)

// Frames returns every frame of the fixture.
func Frames() []formats.Frame {
	exe := "/usr/bin/app"
	return []formats.Frame{
		{FrameID: fMain, Module: exe, BuildID: "aabb", FileOffset: 0x1000, Address: 0x401000, Function: "main", File: "app.c", Line: 30},
		{FrameID: fWork, Module: exe, BuildID: "aabb", FileOffset: 0x1100, Address: 0x401100, Function: "work", File: "app.c", Line: 20},
		{FrameID: fHot, Module: exe, BuildID: "aabb", FileOffset: 0x1200, Address: 0x401200, Function: "hot", File: "app.c", Line: 10},
		{FrameID: fCold, Module: exe, BuildID: "aabb", FileOffset: 0x1300, Address: 0x401300, Function: "cold", File: "app.c", Line: 15},
		{FrameID: fKIRQ, Kernel: true, Module: "[kernel]", Address: 0xffffffff81000000, Function: "asm_sysvec_apic_timer_interrupt"},
		{FrameID: fKTimer, Kernel: true, Module: "[kernel]", Address: 0xffffffff81000100, Function: "hrtimer_interrupt"},
		{FrameID: fH1, Module: HostileModule, BuildID: "ccdd", FileOffset: 0x10, Function: HostileFunc1, File: HostileFunc2, Line: 1},
		{FrameID: fH2, Module: HostileModule, BuildID: "ccdd", FileOffset: 0x20, Function: HostileFunc2},
		{FrameID: fH3, Module: HostileModule, BuildID: "ccdd", FileOffset: 0x30, Function: HostileFunc3},
		{FrameID: fUnres, Module: "/usr/lib/libx.so", BuildID: "eeff", FileOffset: 0x1234, Address: 0x7f0000001234},
		{FrameID: fUnknown, Address: 0x42},
		{FrameID: fKUnres, Kernel: true, Module: "[kernel]", Address: 0xffffffff81abcdef},
	}
}

// Stacks returns the fixture's stacks, leaf first, kernel frames first.
func Stacks() []formats.Stack {
	return []formats.Stack{
		{StackID: 1, PID: AppPID, FrameIDs: []uint64{fHot, fWork, fMain}},
		{StackID: 2, PID: AppPID, FrameIDs: []uint64{fCold, fWork, fMain}},
		{StackID: 3, PID: AppPID, FrameIDs: []uint64{fKTimer, fKIRQ, fHot, fWork, fMain}},
		{StackID: 4, PID: HostilePID, FrameIDs: []uint64{fKUnres, fH3, fUnknown, fUnres, fH2, fH1}},
		{StackID: 99, PID: AppPID, FrameIDs: []uint64{fMain}}, // referenced by nothing
	}
}

// Samples returns the fixture's samples in time order.
func Samples() []formats.CPUSample {
	var out []formats.CPUSample
	half := uint64(Span / 2)
	add := func(n int, pid uint32, comm string, stack uint64, from, span uint64) {
		for i := 0; i < n; i++ {
			out = append(out, formats.CPUSample{TimeNs: StartMono + from + span*uint64(i)/uint64(n),
				CPU: uint32(i % 2), PID: pid, TID: pid + uint32(i%3), Comm: comm, StackID: stack})
		}
	}
	// Interleave hot and cold over the first half so any slice keeps the ratio.
	add(HotSamples-KernelSamples, AppPID, "app", 1, 0, half)
	add(KernelSamples, AppPID, "app", 3, 0, half)
	add(ColdSamples, AppPID, "app", 2, 0, half)
	add(HostileSamples, HostilePID, HostileComm, 4, half, half)
	add(NoStackSamples, HostilePID, HostileComm, 0, half, half)
	return out
}

// Write writes the fixture archive into dir and returns its path.
func Write(dir string) (string, error) {
	return WriteWith(dir, Samples(), Stacks(), Frames())
}

// WriteWith writes an archive with the given rows (any may be nil).
func WriteWith(dir string, samples []formats.CPUSample, stacks []formats.Stack, frames []formats.Frame, procs ...formats.ProcessEvent) (string, error) {
	out := filepath.Join(dir, "cpu-fixture.bpfsnap")
	m := formats.Manifest{BpfsnapVersion: "test", Host: "fixture-host", Kernel: "6.18-test", Arch: "amd64",
		Window: formats.Window{StartWall: time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC),
			EndWall:     time.Date(2026, 11, 24, 12, 0, 10, 0, time.UTC),
			StartMonoNs: StartMono, EndMonoNs: StartMono + uint64(Span)},
		Probes: []formats.Probe{{Name: "cpu", Attached: true, Details: map[string]string{"freq": fmt.Sprint(FreqHz)}}}}
	w, err := formats.Create(out, m, formats.CreateOptions{SealInterval: time.Hour})
	if err != nil {
		return "", err
	}
	if len(samples) > 0 {
		if err := formats.NewTable[formats.CPUSample](w, formats.TableCPUSamples).Write(samples...); err != nil {
			w.Abort()
			return "", err
		}
	}
	if len(stacks) > 0 {
		if err := formats.NewTable[formats.Stack](w, formats.TableStacks).Write(stacks...); err != nil {
			w.Abort()
			return "", err
		}
	}
	if len(frames) > 0 {
		if err := formats.NewTable[formats.Frame](w, formats.TableFrames).Write(frames...); err != nil {
			w.Abort()
			return "", err
		}
	}
	if len(procs) > 0 {
		if err := formats.NewTable[formats.ProcessEvent](w, formats.TableProcesses).Write(procs...); err != nil {
			w.Abort()
			return "", err
		}
	}
	if err := w.Finish(nil); err != nil {
		return "", err
	}
	return out, nil
}
