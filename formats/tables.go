package formats

// Table names. Each table is a set of Parquet chunk files named
// "<table>-<seq>.parquet" whose rows decode into the struct named beside it.
const (
	TableProcesses = "processes" // ProcessEvent
)

// RingRetained reports whether a flight recorder (capture --ring) keeps a
// table's chunks for as long as it runs instead of only its last window:
// rows that later rows refer to (stacks, frames, the processes that own
// them) are written once, when first seen, and must stay.
func RingRetained(table string) bool {
	switch table {
	case TableProcesses, TableStacks, TableFrames:
		return true
	}
	return false
}

// Process event kinds, in the Kind column of the processes table.
const (
	ProcessScan = "scan" // already running when the capture started (from /proc)
	ProcessFork = "fork" // a new process (not a thread) was created
	ProcessExec = "exec" // the process replaced its program
	ProcessExit = "exit" // the whole thread group exited
	// ProcessInfo is written by user space when it learns more about a
	// process (e.g. its command line) after the kernel event.
	ProcessInfo = "info"
	// ProcessOOM: the kernel's OOM killer chose this process (its exit
	// follows).
	ProcessOOM = "oom"
)

// ProcessEvent is one row of the processes table: an observation of a
// process's life. Readers fold the rows of one pid into a process record
// (see analyze.Processes); a fork or scan after an exit of the same pid
// starts a new record, so pid reuse inside a window is not confused.
type ProcessEvent struct {
	// TimeNs is CLOCK_MONOTONIC nanoseconds (see Window).
	TimeNs uint64 `parquet:"time_ns"`
	Kind   string `parquet:"kind,dict"`
	// PID is the host's thread-group id; PPID its parent's.
	PID  uint32 `parquet:"pid"`
	PPID uint32 `parquet:"ppid"`
	Comm string `parquet:"comm"`
	// Exe is the executable path as the process sees it (inside its mount
	// namespace); empty when unknown.
	Exe     string `parquet:"exe"`
	Cmdline string `parquet:"cmdline"`
	// CgroupID is the cgroup v2 id (the inode of the cgroup directory);
	// CgroupPath its path below the cgroup v2 root, when it could be resolved.
	CgroupID   uint64 `parquet:"cgroup_id"`
	CgroupPath string `parquet:"cgroup_path"`
	// ExitCode is the raw wait status of an exit event.
	ExitCode int32 `parquet:"exit_code"`
	// StartNs is the process start time on CLOCK_MONOTONIC (from the
	// kernel's task start_time), so scans of old processes keep their age.
	StartNs uint64 `parquet:"start_ns"`
	// Kubernetes/container attribution (issue 5), from the process's cgroup
	// paths and node-local runtime state; empty outside containers.
	ContainerID string `parquet:"container_id,dict"`
	PodUID      string `parquet:"pod_uid,dict"`
	Namespace   string `parquet:"namespace,dict"`
	Pod         string `parquet:"pod,dict"`
	Container   string `parquet:"container,dict"`
	Image       string `parquet:"image,dict"`
	// MntNS and PidNS are the inode numbers of /proc/PID/ns/{mnt,pid};
	// NSPid is the pid inside the innermost pid namespace (NSpid).
	MntNS uint64 `parquet:"mntns"`
	PidNS uint64 `parquet:"pidns"`
	NSPid uint32 `parquet:"ns_pid"`
}
