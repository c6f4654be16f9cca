// Package offcpufixture writes a small archive of a server whose requests
// are slow for known reasons (a lock, a sleep, the CPU, a throttled
// cgroup), as the offcpu, cpu and http probe sets record them, for the
// analysis and rendering tests. Tests only.
package offcpufixture

import (
	"fmt"
	"path/filepath"
	"time"

	"github.com/bpfsnap/bpfsnap/formats"
)

// Window and process geometry.
const (
	StartMono = uint64(1_000_000_000)
	Span      = 10 * time.Second
	PID       = 300
	ServerTID = 301
	HolderTID = 302
	FreqHz    = 100
	Requests  = 10 // per route
	CgroupV2  = "/kubepods/pod1"
	Namespace = "shop"
	Pod       = "web-1"
	// HostileFunc is the name of a frame of the lock stack, chosen by a
	// hostile workload: it must stay inert everywhere.
	HostileFunc = "</script><svg onload=alert(1)>\x1b[31m;evil\n"
)

// What each route's requests spend, per request (ms).
const (
	LockWall, LockBlocked, LockRunq          = 10.0, 8.0, 0.5
	SleepWall, SleepBlocked, SleepRunq       = 20.0, 18.0, 1.0
	ComputeWall, ComputeRunq, ComputeSamples = 20.0, 4.0, 2
	// The room the exact rows leave in the first /sleep request.
	SummedRoomMs = SleepWall - SleepBlocked - SleepRunq
	// The throttled cgroup's counters during the window.
	ThrottledPeriods, ThrottledMs = 20, 50.0
)

const (
	kProbe = iota + 1 // the BPF program (JIT code: no symbol)
	kTrace
	kSchedInner
	kSched
	kFutexWaitQ
	kFutex
	kSysFutex
	kNanosleep
	kSysNanosleep
	kIOSched
	kExt4Sync
	kEntry
	uLLL
	uMutexLock
	uWaitForLock
	uHostile
	uNap
	uHandle
	uServe
	uCrunch
)

func frames() []formats.Frame {
	k := func(id uint64, name string) formats.Frame {
		return formats.Frame{FrameID: id, Kernel: true, Module: "[kernel]", Address: 0xffffffff81000000 + id*0x100, Function: name}
	}
	u := func(id uint64, mod, name string) formats.Frame {
		return formats.Frame{FrameID: id, Module: mod, BuildID: "ab", FileOffset: id * 0x100, Address: 0x400000 + id*0x100, Function: name}
	}
	return []formats.Frame{
		{FrameID: kProbe, Kernel: true, Module: "[kernel]", Address: 0xffffffffa0000000, Function: "_einittext"},
		k(kTrace, "bpf_trace_run4"), k(kSchedInner, "__schedule"), k(kSched, "schedule"),
		k(kFutexWaitQ, "futex_wait_queue"), k(kFutex, "futex_wait"), k(kSysFutex, "__x64_sys_futex"),
		k(kNanosleep, "do_nanosleep"), k(kSysNanosleep, "__x64_sys_clock_nanosleep"),
		k(kIOSched, "io_schedule"), k(kExt4Sync, "ext4_sync_file.constprop.0"), k(kEntry, "entry_SYSCALL_64_after_hwframe"),
		u(uLLL, "/lib/libc.so.6", "__lll_lock_wait"), u(uMutexLock, "/lib/libc.so.6", "pthread_mutex_lock"),
		u(uWaitForLock, "/srv", "wait_for_lock"), u(uHostile, "/srv", HostileFunc), u(uNap, "/srv", "nap"),
		u(uHandle, "/srv", "handle"), u(uServe, "/srv", "serve"), u(uCrunch, "/srv", "crunch"),
	}
}

// Stack ids.
const (
	StackLock = iota + 1
	StackSleep
	StackDisk
	StackCrunch
)

func stacks() []formats.Stack {
	wait := []uint64{kProbe, kTrace, kSchedInner, kSched}
	return []formats.Stack{
		{StackID: StackLock, PID: PID, FrameIDs: append(append([]uint64{}, wait...), kFutexWaitQ, kFutex, kSysFutex, kEntry, uLLL, uMutexLock, uWaitForLock, uHostile, uHandle, uServe)},
		{StackID: StackSleep, PID: PID, FrameIDs: append(append([]uint64{}, wait...), kNanosleep, kSysNanosleep, kEntry, uNap, uServe)},
		{StackID: StackDisk, PID: PID, FrameIDs: append(append([]uint64{}, wait...), kIOSched, kExt4Sync, kEntry, uServe)},
		{StackID: StackCrunch, PID: PID, FrameIDs: []uint64{uCrunch, uHandle, uServe}},
	}
}

// Start returns the monotonic time request i of a route begins: routes
// take turns, 100 ms apart, in the window's first half.
func Start(route, i int) uint64 {
	return StartMono + uint64(time.Second) + uint64(i*3+route)*uint64(100*time.Millisecond)
}

func ms(v float64) uint64 { return uint64(v * 1e6) }

// Rows returns the fixture's tables: requests, intervals, samples,
// cgroup counters and the process.
func Rows() ([]formats.HTTPRequest, []formats.OffCPUInterval, []formats.CPUSample, []formats.CgroupCPU, []formats.ProcessEvent) {
	var reqs []formats.HTTPRequest
	var ivs []formats.OffCPUInterval
	var samples []formats.CPUSample
	req := func(route string, t uint64, wall float64) {
		reqs = append(reqs, formats.HTTPRequest{RequestNs: t, ResponseNs: t + ms(wall)/2, ResponseEndNs: t + ms(wall), PID: PID, TID: ServerTID, Role: formats.RoleServer,
			Method: "GET", Path: route, Status: 200, RequestBytes: -1, ResponseBytes: -1})
	}
	for i := 0; i < Requests; i++ {
		// /lock: blocked on the mutex from 1 ms in, then the run queue.
		t := Start(0, i)
		req("/lock", t, LockWall)
		ivs = append(ivs, formats.OffCPUInterval{StartNs: t + ms(1), EndNs: t + ms(1+LockBlocked+LockRunq), BlockedNs: ms(LockBlocked),
			RunqueueNs: ms(LockRunq), Count: 1, PID: PID, TID: ServerTID, StackID: StackLock, State: 1, Syscall: 202, WakerPID: PID, WakerTID: HolderTID})
		// /sleep.
		t = Start(1, i)
		req("/sleep", t, SleepWall)
		ivs = append(ivs, formats.OffCPUInterval{StartNs: t + ms(0.5), EndNs: t + ms(0.5+SleepBlocked+SleepRunq), BlockedNs: ms(SleepBlocked),
			RunqueueNs: ms(SleepRunq), Count: 1, PID: PID, TID: ServerTID, StackID: StackSleep, State: 1, Syscall: 230})
		// /compute: on the CPU but for one preemption.
		t = Start(2, i)
		req("/compute", t, ComputeWall)
		ivs = append(ivs, formats.OffCPUInterval{StartNs: t + ms(5), EndNs: t + ms(5+ComputeRunq), RunqueueNs: ms(ComputeRunq),
			Count: 1, PID: PID, TID: ServerTID, Preempted: true, Syscall: -1})
		for k := 0; k < ComputeSamples; k++ {
			samples = append(samples, formats.CPUSample{TimeNs: t + ms(2+float64(k)*10), PID: PID, TID: ServerTID, Comm: "srv", StackID: StackCrunch})
		}
	}
	// The holder thread sleeps in the second half (not in any request);
	// a summed row of 50 short disk waits of the server thread comes after
	// the requests; one of 20 short network waits spans the first 10 ms of
	// the first /sleep request, which its exact sleep row fills but for
	// SummedRoomMs: the summed row is scaled down to that.
	ivs = append(ivs, formats.OffCPUInterval{StartNs: StartMono + ms(6000), EndNs: StartMono + ms(6500), BlockedNs: ms(499), RunqueueNs: ms(1),
		Count: 1, PID: PID, TID: HolderTID, StackID: StackSleep, State: 1, Syscall: 230},
		formats.OffCPUInterval{StartNs: StartMono + ms(7000), EndNs: StartMono + ms(7010), BlockedNs: ms(5), RunqueueNs: ms(1),
			Count: 50, PID: PID, TID: ServerTID, StackID: StackDisk, State: 2, Syscall: 74, IOWait: true},
		formats.OffCPUInterval{StartNs: Start(1, 0), EndNs: Start(1, 0) + ms(10), BlockedNs: ms(2), RunqueueNs: ms(1),
			Count: 20, PID: PID, TID: ServerTID, Syscall: 45})
	cg := []formats.CgroupCPU{
		{TimeNs: StartMono, Phase: formats.CgroupPhaseStart, Version: 2, Path: CgroupV2, QuotaUs: 50000, PeriodUs: 100000,
			NrPeriods: 100, NrThrottled: 10, ThrottledUs: 1000, PIDs: []uint32{PID}},
		{TimeNs: StartMono + uint64(Span), Phase: formats.CgroupPhaseEnd, Version: 2, Path: CgroupV2, QuotaUs: 50000, PeriodUs: 100000,
			NrPeriods: 200, NrThrottled: 10 + ThrottledPeriods, ThrottledUs: 1000 + uint64(ThrottledMs*1000), PIDs: []uint32{PID}},
		{TimeNs: StartMono + uint64(Span), Phase: formats.CgroupPhaseEnd, Version: 1, Path: "/other", QuotaUs: 10000, PeriodUs: 100000,
			NrPeriods: 5, PIDs: []uint32{999}},
	}
	procs := []formats.ProcessEvent{{TimeNs: StartMono, Kind: formats.ProcessScan, PID: PID, PPID: 1, Comm: "srv", Exe: "/srv",
		CgroupPath: CgroupV2, Namespace: Namespace, Pod: Pod}}
	return reqs, ivs, samples, cg, procs
}

// Write writes the fixture archive into dir and returns its path; the
// tables named in skip are left out (an archive of a capture without
// -p offcpu, say).
func Write(dir string, skip ...string) (string, error) {
	out := filepath.Join(dir, "offcpu-fixture.bpfsnap")
	m := formats.Manifest{BpfsnapVersion: "test", Host: "fixture-host", Kernel: "6.18-test", Arch: "amd64",
		Window: formats.Window{StartWall: time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC), EndWall: time.Date(2026, 12, 1, 12, 0, 10, 0, time.UTC),
			StartMonoNs: StartMono, EndMonoNs: StartMono + uint64(Span)},
		Probes: []formats.Probe{{Name: "cpu", Attached: true, Details: map[string]string{"freq": fmt.Sprint(FreqHz)}},
			{Name: "http", Attached: true}, {Name: "offcpu", Attached: true}}}
	w, err := formats.Create(out, m, formats.CreateOptions{SealInterval: time.Hour})
	if err != nil {
		return "", err
	}
	reqs, ivs, samples, cg, procs := Rows()
	for _, t := range skip {
		switch t {
		case formats.TableOffCPU:
			ivs = nil
		case formats.TableCgroupCPU:
			cg = nil
		case formats.TableCPUSamples:
			samples = nil
		}
	}
	err = firstErr(
		formats.NewTable[formats.HTTPRequest](w, formats.TableHTTPRequests).Write(reqs...),
		formats.NewTable[formats.OffCPUInterval](w, formats.TableOffCPU).Write(ivs...),
		formats.NewTable[formats.CPUSample](w, formats.TableCPUSamples).Write(samples...),
		formats.NewTable[formats.CgroupCPU](w, formats.TableCgroupCPU).Write(cg...),
		formats.NewTable[formats.ProcessEvent](w, formats.TableProcesses).Write(procs...),
		formats.NewTable[formats.Stack](w, formats.TableStacks).Write(stacks()...),
		formats.NewTable[formats.Frame](w, formats.TableFrames).Write(frames()...),
	)
	if err != nil {
		w.Abort()
		return "", err
	}
	if err := w.Finish(nil); err != nil {
		return "", err
	}
	return out, nil
}

func firstErr(errs ...error) error {
	for _, e := range errs {
		if e != nil {
			return e
		}
	}
	return nil
}
