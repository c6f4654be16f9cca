package formats

// Tables of the offcpu probe set.
const (
	TableOffCPU    = "offcpu_intervals" // OffCPUInterval
	TableCgroupCPU = "cgroup_cpu"       // CgroupCPU
)

// OffCPUInterval is the time a thread spent off a CPU: blocked (from
// leaving the CPU until something made it runnable) and waiting in the run
// queue (from then until it ran again). Intervals at least the capture's
// --offcpu-exact long are one row each (Count 1, exact); shorter ones of one
// thread with one stack and state are summed into a row that spans from the
// first one's start to the last one's end (at most --offcpu-merge), and a
// reader spreads them evenly over that span.
type OffCPUInterval struct {
	// StartNs is when the (first) interval began: the thread left the CPU
	// (CLOCK_MONOTONIC). EndNs is when the (last) one ended: it ran again,
	// or the window's end for an open interval.
	StartNs uint64 `parquet:"start_ns"`
	EndNs   uint64 `parquet:"end_ns"`
	// BlockedNs and RunqueueNs are the summed blocked and run-queue parts.
	BlockedNs  uint64 `parquet:"blocked_ns"`
	RunqueueNs uint64 `parquet:"runqueue_ns"`
	Count      uint32 `parquet:"count"` // intervals summed in the row
	PID        uint32 `parquet:"pid"`
	TID        uint32 `parquet:"tid"`
	// StackID references stacks.stack_id: kernel and user stack where the
	// thread left the CPU. 0 for preempted threads and new threads (no
	// blocking call to show), or when the stack was lost (counted).
	StackID uint64 `parquet:"stack_id"`
	// State is the task state the thread left the CPU in (the kernel's
	// TASK_* bits: 1 interruptible sleep, 2 uninterruptible, 0 runnable).
	State uint32 `parquet:"state"`
	// Syscall is the system call the thread was in (the architecture's
	// number, see the manifest's arch), -1 outside a system call.
	Syscall int32 `parquet:"syscall"`
	// WakerPID and WakerTID are the task that made the thread runnable (the
	// last one of a summed row); 0 when none was seen.
	WakerPID uint32 `parquet:"waker_pid"`
	WakerTID uint32 `parquet:"waker_tid"`
	// Preempted: the thread was runnable all along (preempted or yielded);
	// the whole interval is run-queue wait.
	Preempted bool `parquet:"preempted"`
	// NewThread: a new thread's first wait for a CPU.
	NewThread bool `parquet:"new_thread"`
	// IOWait: the thread slept in io_schedule (the kernel's in_iowait).
	IOWait bool `parquet:"iowait"`
	// NoWakeup: no wakeup was seen (it raced with the switch-out); the
	// interval counts as blocked to its end.
	NoWakeup bool `parquet:"no_wakeup"`
	// Open: the thread was still off-CPU when the capture stopped.
	Open bool `parquet:"open"`
}

// Phases of a cgroup_cpu row.
const (
	CgroupPhaseStart = "start"
	CgroupPhaseEnd   = "end"
)

// CgroupCPU is a cgroup's CPU limit and throttling counters (cpu.stat) at
// the start or the end of the window; the difference is the throttling
// during it. Recorded for the cgroups of the captured processes and their
// ancestors that have a CPU limit or were ever throttled.
type CgroupCPU struct {
	TimeNs uint64 `parquet:"time_ns"`
	Phase  string `parquet:"phase,dict"`
	// Version is 2 for the unified hierarchy (cpu.max), 1 for the v1 cpu
	// controller (cpu.cfs_quota_us).
	Version uint32 `parquet:"version"`
	// Path is below the hierarchy's root ("/" for the root).
	Path string `parquet:"path"`
	// QuotaUs per PeriodUs is the limit; -1 when there is none.
	QuotaUs  int64  `parquet:"quota_us"`
	PeriodUs uint64 `parquet:"period_us"`
	// The counters of cpu.stat (v1's throttled_time, in ns, is converted).
	NrPeriods   uint64 `parquet:"nr_periods"`
	NrThrottled uint64 `parquet:"nr_throttled"`
	ThrottledUs uint64 `parquet:"throttled_us"`
	// PIDs are the captured processes in the cgroup or below it when the
	// row was read.
	PIDs []uint32 `parquet:"pids,list"`
}
