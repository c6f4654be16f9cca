package formats

// Tables of the growth probe set: who makes memory resident (page faults
// and every other change of a process's resident set, with stacks), exact
// totals per process, and each process's RSS over the window.
const (
	TableGrowthEvents = "growth_events" // GrowthEvent
	TableGrowthTotals = "growth_totals" // GrowthTotal
	TableRSSSamples   = "rss_samples"   // RSSSample
)

// Kinds of resident memory, the kernel's resident-set counters.
const (
	GrowthAnon  = "anon"  // anonymous pages: heaps, stacks, a runtime's arenas
	GrowthFile  = "file"  // file pages mapped in (code, mapped files)
	GrowthShmem = "shmem" // shared memory (memfd, tmpfs, MAP_SHARED|MAP_ANONYMOUS)
)

// GrowthEvent is one change that made memory resident in a target process:
// a page fault (4 KiB, or a transparent huge page at once, or the pages
// fault-around mapped), or a syscall that filled fresh memory. With byte
// sampling (growth's --growth-sample) only some are recorded, each with
// the weight of those it stands for.
type GrowthEvent struct {
	TimeNs uint64 `parquet:"time_ns"`
	PID    uint32 `parquet:"pid"`
	TID    uint32 `parquet:"tid"`
	Kind   string `parquet:"kind,dict"`
	// Bytes made resident by this change (pages × page size).
	Bytes uint64 `parquet:"bytes"`
	// Weight is how many changes of this size the row stands for
	// (1/probability of being sampled; 1 without sampling): estimated
	// bytes = Bytes × Weight.
	Weight float64 `parquet:"weight"`
	// Fault is set when a page fault at Addr made the memory resident
	// (a user fault, or the kernel's on a user address, as in read()).
	Fault bool   `parquet:"fault"`
	Addr  uint64 `parquet:"addr"`
	// Unmeasured marks a change the kernel counted before the recorder
	// had a reading to measure it against: one page is assumed.
	Unmeasured bool `parquet:"unmeasured"`
	// StackID references stacks.stack_id (kernel frames first, then the
	// user stack of the thread); 0 without a stack.
	StackID uint64 `parquet:"stack_id"`
}

// GrowthTotal is what a process made resident over the whole window,
// counted exactly in the kernel whatever the sampling.
type GrowthTotal struct {
	PID        uint32 `parquet:"pid"`
	AnonBytes  uint64 `parquet:"anon_bytes"`
	FileBytes  uint64 `parquet:"file_bytes"`
	ShmemBytes uint64 `parquet:"shmem_bytes"`
	// Changes counts the counter changes that grew the resident set.
	Changes uint64 `parquet:"changes"`
}

// RSSSample is a process's memory at one moment, from /proc/PID/status,
// in bytes.
type RSSSample struct {
	TimeNs uint64 `parquet:"time_ns"`
	PID    uint32 `parquet:"pid"`
	// RSS is the resident set: RSSAnon + RSSFile + RSSShmem.
	RSS      uint64 `parquet:"rss"`
	RSSAnon  uint64 `parquet:"rss_anon"`
	RSSFile  uint64 `parquet:"rss_file"`
	RSSShmem uint64 `parquet:"rss_shmem"`
	// VMData is the size of its private writable mappings (heap, brk,
	// anonymous mmaps, stacks): what brk and mmap grew, resident or not.
	VMData uint64 `parquet:"vm_data"`
	VMSize uint64 `parquet:"vm_size"`
}
