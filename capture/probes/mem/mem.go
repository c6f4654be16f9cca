//go:build linux

package mem

import (
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/spf13/pflag"

	"github.com/bpfsnap/bpfsnap/capture/recorder"
	"github.com/bpfsnap/bpfsnap/formats"
	"github.com/bpfsnap/bpfsnap/internal/probeplace"
	"github.com/bpfsnap/bpfsnap/internal/unwind"
)

// New returns the mem probe set with the defaults its flags give, for
// callers that bind no flags.
func New() recorder.ProbeSet {
	return &memProbe{traceMaps: true, unwindFlag: string(recorder.UnwindFP), stackSize: defaultMemStackSize}
}

// memProbe traces the C allocator of the targeted processes with uprobes on
// the libc each process maps, attached per pid so no other process on the
// node takes a trap.
type memProbe struct {
	drops recorder.DropCounters
	s     *recorder.Session
	objs  bpfObjects
	ring  *recorder.RingReader
	table *formats.TableWriter[formats.MemEvent]

	// Flags.
	sampleBytes uint64 // --mem-sample: mean bytes between samples, 0 = all
	traceMaps   bool   // --mem-mmap: mmap/munmap/mremap/brk tracepoints
	unwindFlag  string // --mem-unwind
	unwindMode  recorder.UnwindMode
	stackSize   int  // --mem-stack-size
	floor       bool // --mem-floor (hidden): empty programs, for the bench
	empty       map[ebpf.ProgramType]*ebpf.Program
	unwound     unwind.Counts // DWARF walks of mem's stacks
	hdr         bpfMemEvent   // decoding buffer of the ring reader

	mu       sync.Mutex
	links    []link.Link            // the syscall tracepoints
	pidLinks map[uint32][]link.Link // per-pid allocator uprobes
	attached map[string]bool        // "pid:dev:inode" of the libc attached
	closer   recorder.LinkCloser
	plans    map[string]*allocPlan
	pids     map[uint32]string // pid -> the allocators attached ("jemalloc, libc")
	// pid -> time of its last allocation event, and of its last exec:
	// the allocations before an exec were another program's (the held
	// child of `-- COMMAND` is bpfsnap until it execs, and a test binary
	// built with cgo allocates through libc while it waits).
	lastAlloc map[uint32]uint64
	execAt    map[uint32]uint64
	details   map[string]string
}

// allocFunc is one allocator entry point. All entry points of a process
// are one uprobe.multi link to alloc_enter, which tells them apart by the
// BPF cookie (enum alloc_fn in bpf/mem.bpf.c); those that return a block
// are one uretprobe.multi link to alloc_return.
type allocFunc struct {
	name   string
	cookie bpfAllocFn
	ret    bool // also a return probe for the returned block
	placed bool // the entry probe may move past the first instruction
}

// allocFuncs are the entry points probed in every allocator file that has
// them: the C API (glibc and any allocator replacing it), the prefixed APIs
// of jemalloc, tcmalloc and mimalloc (a program may call je_malloc
// itself), jemalloc's non-standard API, and the C++ operators replacement
// allocators define themselves (libstdc++'s call malloc, so only files that
// define malloc are probed at all). Functions that are aliases of one
// another (one address) are probed once.
var allocFuncs = func() []allocFunc {
	var out []allocFunc
	add := func(cookie bpfAllocFn, ret, placed bool, names ...string) {
		for _, n := range names {
			out = append(out, allocFunc{n, cookie, ret, placed})
		}
	}
	add(bpfAllocFnFN_MALLOC, true, false, "malloc", "je_malloc", "tc_malloc", "mi_malloc", "mallocx", "je_mallocx",
		"_Znwm", "_Znam", "_ZnwmRKSt9nothrow_t", "_ZnamRKSt9nothrow_t", "tc_new", "tc_newarray")
	add(bpfAllocFnFN_CALLOC, true, false, "calloc", "je_calloc", "tc_calloc", "mi_calloc")
	add(bpfAllocFnFN_REALLOC, true, false, "realloc", "je_realloc", "tc_realloc", "mi_realloc", "rallocx", "je_rallocx")
	add(bpfAllocFnFN_REALLOCARRAY, true, false, "reallocarray")
	add(bpfAllocFnFN_MEMALIGN, true, false, "aligned_alloc", "memalign", "je_aligned_alloc", "je_memalign", "tc_memalign", "mi_aligned_alloc", "mi_memalign")
	add(bpfAllocFnFN_VALLOC, true, false, "valloc", "pvalloc", "je_valloc", "tc_valloc", "tc_pvalloc")
	add(bpfAllocFnFN_POSIX_MEMALIGN, true, false, "posix_memalign", "je_posix_memalign", "tc_posix_memalign", "mi_posix_memalign")
	// free needs no return probe, so its entry probe can sit on the first
	// emulated instruction (probeplace).
	add(bpfAllocFnFN_FREE, false, true, "free", "je_free", "tc_free", "mi_free", "dallocx", "sdallocx", "je_dallocx", "je_sdallocx",
		"_ZdlPv", "_ZdaPv", "_ZdlPvm", "_ZdaPvm", "tc_delete", "tc_deletearray")
	return out
}()

// allocPlan is where each allocator function of one file gets probed.
type allocPlan struct {
	path string // host path (through /proc/PID/root)
	// funcs maps function name to its address (ELF vaddr) and the entry
	// probe offset from it; aliases at one address are probed once.
	funcs map[string]probeAt
}

type probeAt struct {
	addr      uint64
	offset    uint64
	reason    string
	aliasOf   string
	available bool
}

// memDropNames names the kernel counters in the order of enum mem_drop.
var memDropNames = formats.DropNames("mem", "ringbuf_full", "inflight_full", "stack_failed", "sampled_set_full", "user_regs_missing")

// memSyscalls are the syscalls traced with --mem-mmap (sys_enter program
// per syscall, one shared sys_exit program).
var memSyscalls = []struct {
	name  string
	enter func(*bpfObjects) *ebpf.Program
}{
	{"mmap", func(o *bpfObjects) *ebpf.Program { return o.MmapEnter }},
	{"munmap", func(o *bpfObjects) *ebpf.Program { return o.MunmapEnter }},
	{"mremap", func(o *bpfObjects) *ebpf.Program { return o.MremapEnter }},
	{"brk", func(o *bpfObjects) *ebpf.Program { return o.BrkEnter }},
}

// Default --mem-stack-size: allocation sites sit a few frames above
// main in most programs, and every byte is copied per allocation.
const defaultMemStackSize = 4096

func (*memProbe) Name() string  { return "mem" }
func (*memProbe) Default() bool { return false } // a trap per allocation: opt-in

func (m *memProbe) BindFlags(fs *pflag.FlagSet) {
	fs.Uint64Var(&m.sampleBytes, "mem-sample", 0, "mem: record a Poisson sample of allocations, on average one per BYTES allocated (0: every allocation); figures are scaled back")
	fs.BoolVar(&m.traceMaps, "mem-mmap", true, "mem: also trace anonymous mmap/munmap/mremap and brk (syscall tracepoints: every syscall on the host takes the slow path while they are on)")
	fs.StringVar(&m.unwindFlag, "mem-unwind", "fp", "mem: allocation stacks: fp (frame pointers, cheapest), auto or dwarf (copy --mem-stack-size bytes of stack per allocation and unwind with CFI, for code without frame pointers)")
	fs.IntVar(&m.stackSize, "mem-stack-size", defaultMemStackSize, "mem: bytes of user stack copied per allocation for --mem-unwind auto|dwarf")
	fs.BoolVar(&m.floor, "mem-floor", false, "mem: attach empty programs at the same places (benchmark floor)")
	_ = fs.MarkHidden("mem-floor")
}

// memMaxSample bounds --mem-sample so the kernel's fixed-point draw does
// not overflow (sample_bytes × 2^21 < 2^64).
const memMaxSample = 1 << 40

func (m *memProbe) Validate() error {
	mode, ok := recorder.ParseUnwindMode(m.unwindFlag)
	if !ok {
		return fmt.Errorf("--mem-unwind %q: want fp, auto or dwarf", m.unwindFlag)
	}
	m.unwindMode = mode
	if m.sampleBytes > memMaxSample {
		return fmt.Errorf("--mem-sample %d: at most %d", m.sampleBytes, uint64(memMaxSample))
	}
	if mode != recorder.UnwindFP {
		return recorder.CheckStackCopy("--mem-stack-size", m.stackSize)
	}
	return nil
}

// Start runs after Validate (the unwind mode is parsed there).
func (m *memProbe) Start(s *recorder.Session) (map[string]string, error) {
	m.s = s
	m.attached, m.plans, m.pids = map[string]bool{}, map[string]*allocPlan{}, map[uint32]string{}
	m.lastAlloc, m.execAt = map[uint32]uint64{}, map[uint32]uint64{}
	m.pidLinks = map[uint32][]link.Link{}
	m.details = map[string]string{}
	if !s.Filtered() {
		return nil, errors.New("mem needs targets: give --pid PID or -- COMMAND (allocation tracing costs every traced allocation a trap)")
	}
	mode := m.unwindMode // parsed by Validate
	copyBytes := uint32(0)
	if mode != recorder.UnwindFP {
		copyBytes = uint32(m.stackSize)
		m.details["unwind.stack_bytes"] = strconv.Itoa(m.stackSize)
	}
	m.details["unwind"] = string(mode)
	m.details["sample_bytes"] = strconv.FormatUint(m.sampleBytes, 10)
	m.details["page_size"] = strconv.Itoa(os.Getpagesize())
	m.details["mmap"] = strconv.FormatBool(m.traceMaps)
	if m.floor {
		m.details["floor"] = "empty programs at the same places (benchmark)"
	}
	spec, err := loadBpf()
	if err != nil {
		return nil, err
	}
	loadAsSingleUprobes(spec)
	if singleUprobes() {
		m.details["uprobes"] = "one per function and process (this kernel has no uprobe.multi links)"
	}
	sysCopy := uint32(defaultMemStackSize)
	if copyBytes > 0 {
		sysCopy = copyBytes
	}
	vars := map[string]any{"sample_bytes": m.sampleBytes, "stack_size": copyBytes, "sys_stack_size": sysCopy, "log2_mantissa": recorder.Log2MantissaTable()}
	if err := recorder.SetVariables(spec, vars); err != nil {
		return nil, err
	}
	if err := s.LoadObjects(spec, &m.objs); err != nil {
		return nil, err
	}
	if m.floor {
		m.empty = map[ebpf.ProgramType]*ebpf.Program{}
		for _, typ := range []ebpf.ProgramType{ebpf.Kprobe, ebpf.TracePoint} {
			var attach ebpf.AttachType
			if typ == ebpf.Kprobe {
				attach = uprobeAttachType() // attached as the real ones are
			}
			if m.empty[typ], err = recorder.EmptyProgram(typ, attach, 0); err != nil {
				return nil, err
			}
		}
	}
	m.table = formats.NewTable[formats.MemEvent](s.Writer(), formats.TableMemEvents)
	stacks := s.Stacks()
	if m.ring, err = s.ReadRing(m.objs.MemEvents, func(raw []byte) { m.handle(stacks, raw) }); err != nil {
		return nil, err
	}
	if m.traceMaps {
		if err := m.attachSyscalls(); err != nil {
			// Allocator tracing still works; say what is missing.
			s.Warnf("mem: mmap/munmap/brk not traced: %v", err)
			m.details["mmap"] = "failed: " + err.Error()
		}
	}
	for _, pid := range s.TargetPIDs() {
		if err := m.attach(pid); err != nil {
			s.Warnf("mem: pid %d: %v", pid, err)
		}
	}
	// New processes of the targets (forks keep the parent's libc; an exec
	// may map another) get their own per-pid probes.
	s.OnProcess(func(ev formats.ProcessEvent) {
		switch ev.Kind {
		case formats.ProcessFork, formats.ProcessExec:
			if ev.Kind == formats.ProcessExec {
				m.mu.Lock()
				m.execAt[ev.PID] = ev.TimeNs
				m.mu.Unlock()
			}
			if err := m.attach(ev.PID); err != nil {
				s.Warnf("mem: pid %d: %v", ev.PID, err)
			}
		case formats.ProcessExit:
			m.detach(ev.PID)
		}
	})
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.links) == 0 && len(m.pidLinks) == 0 {
		return m.details, errors.New("no allocator probe could be attached to any target")
	}
	return m.details, nil
}

// maxAllocatorDetails bounds the per-process allocator entries in the
// manifest (allocator.PID); the rest are counted in allocator.more.
const maxAllocatorDetails = 64

// attach probes the allocators of pid (allocatorsOf): the C library and
// every file that replaces its malloc.
func (m *memProbe) attach(pid uint32) error {
	files := m.allocatorsOf(pid)
	if len(files) == 0 {
		return errors.New("no C library or allocator found: its allocations cannot be traced")
	}
	var names []string
	var errs []error
	for _, f := range files {
		if err := m.attachFile(pid, f.path); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", f.name, err))
			continue
		}
		if !contains(names, f.name) {
			names = append(names, f.name)
		}
	}
	if len(names) > 0 {
		m.mu.Lock()
		m.pids[pid] = strings.Join(names, ", ")
		key := "allocator." + recorder.Itoa(pid)
		if _, ok := m.details[key]; ok || m.allocatorDetails() < maxAllocatorDetails {
			m.details[key] = m.pids[pid]
		} else {
			m.details["allocator.more"] = strconv.Itoa(len(m.pids) - maxAllocatorDetails)
		}
		m.mu.Unlock()
	}
	return errors.Join(errs...)
}

// allocatorDetails counts the allocator.PID entries. The caller holds m.mu.
func (m *memProbe) allocatorDetails() int {
	n := 0
	for k := range m.details {
		if strings.HasPrefix(k, "allocator.") && k != "allocator.more" {
			n++
		}
	}
	return n
}

// attachFile puts the entry and return probes on the allocator functions
// of one file, for pid only.
func (m *memProbe) attachFile(pid uint32, path string) error {
	// The same library is often reachable by two paths (/lib is a link
	// to /usr/lib): key by inode, or every call would be traced twice.
	st, err := os.Stat(path)
	if err != nil {
		return err
	}
	sys, _ := st.Sys().(*syscall.Stat_t)
	m.mu.Lock()
	defer m.mu.Unlock()
	key := fmt.Sprintf("%d:%d:%d", pid, sys.Dev, sys.Ino)
	if m.attached[key] {
		return nil
	}
	plan, err := m.plan(path)
	if err != nil {
		return err
	}
	ex, err := link.OpenExecutable(path)
	if err != nil {
		return err
	}
	var entry, ret link.UprobeMultiOptions
	entry.PID, ret.PID = pid, pid
	for _, f := range allocFuncs {
		at := plan.funcs[f.name]
		if !at.available || at.aliasOf != "" {
			continue
		}
		entry.Addresses = append(entry.Addresses, at.addr)
		entry.Offsets = append(entry.Offsets, at.offset)
		entry.Cookies = append(entry.Cookies, uint64(f.cookie))
		if f.ret {
			ret.Addresses = append(ret.Addresses, at.addr)
			ret.Offsets = append(ret.Offsets, 0)
		}
	}
	if len(entry.Addresses) == 0 {
		return errors.New("no allocator function found in " + path)
	}
	enterProg, retProg := m.objs.AllocEnter, m.objs.AllocReturn
	if m.floor {
		enterProg, retProg = m.empty[ebpf.Kprobe], m.empty[ebpf.Kprobe]
	}
	// The return probes go first: an entry without its return would leave
	// the thread marked as inside the allocator, and its later calls would
	// be taken for nested ones.
	if len(ret.Addresses) > 0 {
		ls, err := attachUprobes(ex, retProg, &ret, true)
		if err != nil {
			return fmt.Errorf("uretprobes on %s: %w", path, err)
		}
		m.pidLinks[pid] = append(m.pidLinks[pid], ls...)
	}
	ls, err := attachUprobes(ex, enterProg, &entry, false)
	if err != nil {
		return fmt.Errorf("uprobes on %s: %w", path, err)
	}
	m.pidLinks[pid] = append(m.pidLinks[pid], ls...)
	m.attached[key] = true
	return nil
}

// plan reads an allocator file once (per device and inode): each
// allocator function's address and where its entry probe sits, recorded in
// the manifest details with the reason ("probe.FUNC" for libc,
// "probe.ALLOCATOR.FUNC" for the others). A statically linked program has
// its allocator in its symbol table rather than its dynamic symbols.
func (m *memProbe) plan(path string) (*allocPlan, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	sys, _ := st.Sys().(*syscall.Stat_t)
	key := fmt.Sprintf("%d:%d", sys.Dev, sys.Ino)
	if p := m.plans[key]; p != nil {
		return p, nil
	}
	f, err := elf.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	byName := map[string]uint64{}
	for _, load := range []func() ([]elf.Symbol, error){f.DynamicSymbols, f.Symbols} {
		syms, _ := load()
		for _, s := range syms {
			if elf.ST_TYPE(s.Info) == elf.STT_FUNC && s.Value != 0 && s.Section != elf.SHN_UNDEF {
				name, _, _ := strings.Cut(s.Name, "@")
				if _, dup := byName[name]; !dup {
					byName[name] = s.Value
				}
			}
		}
		if _, ok := byName["malloc"]; ok {
			break
		}
	}
	name := allocatorName(filepath.Base(path))
	prefix := "probe."
	if name != "libc" {
		prefix += name + "."
	}
	plan := &allocPlan{path: path, funcs: map[string]probeAt{}}
	byAddr := map[uint64]string{}
	for _, fn := range allocFuncs {
		addr, ok := byName[fn.name]
		if !ok {
			continue
		}
		at := probeAt{addr: fileOffset(f, addr), available: true, reason: "entry"}
		if first, dup := byAddr[addr]; dup {
			at.aliasOf = first // e.g. aligned_alloc and memalign are one function
		} else {
			byAddr[addr] = fn.name
		}
		if fn.placed {
			code := make([]byte, 32)
			if _, err := readAtVaddr(f, addr, code); err == nil {
				pl := probeplace.Entry(code)
				at.offset, at.reason = pl.Offset, pl.Reason
			}
		} else if fn.ret {
			at.reason = "entry (a uretprobe must sit at the entry; the entry probe shares its trap)"
		}
		plan.funcs[fn.name] = at
		detail := fmt.Sprintf("%s+%d: %s", filepath.Base(path), at.offset, at.reason)
		if at.aliasOf != "" {
			detail = "same function as " + at.aliasOf
		}
		m.details[prefix+fn.name] = detail
	}
	m.plans[key] = plan
	return plan, nil
}

// fileOffset converts an ELF virtual address to a file offset, which is
// what uprobes are placed by.
func fileOffset(f *elf.File, vaddr uint64) uint64 {
	for _, p := range f.Progs {
		if p.Type == elf.PT_LOAD && vaddr >= p.Vaddr && vaddr < p.Vaddr+p.Filesz {
			return vaddr - p.Vaddr + p.Off
		}
	}
	return vaddr
}

func readAtVaddr(f *elf.File, vaddr uint64, buf []byte) (int, error) {
	for _, p := range f.Progs {
		if p.Type == elf.PT_LOAD && vaddr >= p.Vaddr && vaddr < p.Vaddr+p.Filesz {
			return p.ReadAt(buf, int64(vaddr-p.Vaddr))
		}
	}
	return 0, fmt.Errorf("address %#x is in no loaded segment", vaddr)
}

// memKinds names the table's kind of each record kind of enum mem_kind
// (bpfMemKind* come from the C enum through bpf2go).
var memKinds = map[bpfMemKind]string{
	bpfMemKindMEM_MALLOC: formats.MemMalloc, bpfMemKindMEM_CALLOC: formats.MemCalloc,
	bpfMemKindMEM_REALLOC: formats.MemRealloc, bpfMemKindMEM_FREE: formats.MemFree,
	bpfMemKindMEM_MEMALIGN: formats.MemMemalign, bpfMemKindMEM_POSIX_MEMALIGN: formats.MemPosixMemalign,
	bpfMemKindMEM_MMAP: formats.MemMmap, bpfMemKindMEM_MUNMAP: formats.MemMunmap,
	bpfMemKindMEM_MREMAP: formats.MemMremap, bpfMemKindMEM_BRK: formats.MemBrk,
}

// isAllocatorCall reports whether a record kind is a C allocator call
// (read at its uretprobe), as opposed to free or a mapping syscall.
func isAllocatorCall(k bpfMemKind) bool {
	switch k {
	case bpfMemKindMEM_MALLOC, bpfMemKindMEM_CALLOC, bpfMemKindMEM_REALLOC,
		bpfMemKindMEM_MEMALIGN, bpfMemKindMEM_POSIX_MEMALIGN:
		return true
	}
	return false
}

// isMapping reports whether a record kind is a mapping syscall
// (mmap, munmap, mremap, brk).
func isMapping(k bpfMemKind) bool {
	switch k {
	case bpfMemKindMEM_MMAP, bpfMemKindMEM_MUNMAP, bpfMemKindMEM_MREMAP, bpfMemKindMEM_BRK:
		return true
	}
	return false
}

// Event flags (mem.bpf.c).
const (
	memFlagInAlloc = 1
	memFlagSampled = 2
)

var (
	memHeadSize = int(unsafe.Sizeof(bpfMemEvent{}.H))
	// A free's record is the head up to old_addr (MEM_EVENT_FREE).
	memFreeSize = int(unsafe.Offsetof(bpfMemEvent{}.H.OldAddr))
	memFPSize   = int(unsafe.Offsetof(bpfMemEvent{}.Stack))
)

func (m *memProbe) handle(stacks *recorder.StackRecorder, raw []byte) {
	if len(raw) < memFreeSize {
		return
	}
	// Records are shorter than the Go struct (a free's even than the
	// head): copy the head out, zero-extended, instead of casting past
	// their end (handle runs on the ring's one reader).
	head := unsafe.Slice((*byte)(unsafe.Pointer(&m.hdr.H)), memHeadSize)
	clear(head[copy(head, raw):])
	h := m.hdr.H
	kindOf := bpfMemKind(h.Kind)
	if kindOf == bpfMemKindMEM_FREES {
		if len(raw) >= int(unsafe.Sizeof(bpfFreeBatch{})) {
			if n := m.writeFrees((*bpfFreeBatch)(unsafe.Pointer(&raw[0]))); n > 1 {
				m.s.CountEvents(n - 1)
			}
		}
		return
	}
	kind, ok := memKinds[kindOf]
	if !ok {
		return
	}
	row := formats.MemEvent{TimeNs: h.TimeNs, PID: h.Pid, TID: h.Tid, Kind: kind, Addr: h.Addr, OldAddr: h.OldAddr,
		Size: h.Size, OldSize: h.OldSize, Weight: 1, InAllocator: h.Flags&memFlagInAlloc != 0}
	if h.Flags&memFlagSampled != 0 {
		row.Weight = formats.MemSampleWeight(h.Size, m.sampleBytes)
	}
	if kindOf != bpfMemKindMEM_FREE && kindOf != bpfMemKindMEM_MUNMAP {
		// Events with a stack: allocations (read at the allocator's
		// return, so every frame, the leaf too, is a return address) and
		// mappings (read at the syscall's exit). The frames follow the
		// head; the record ends after them unless stack bytes follow.
		n := max(min(int(h.UstackBytes)/8, 64, (len(raw)-memHeadSize)/8), 0)
		fp := make([]uint64, n)
		for i := range fp {
			fp[i] = binary.LittleEndian.Uint64(raw[memHeadSize+8*i:])
		}
		mode := m.unwindMode
		if mode == recorder.UnwindFP && isMapping(kindOf) {
			// The program's own mappings come with a stack copy in every
			// mode (sys_stack_size): CFI sees through libc's frameless
			// syscall wrappers, which hide the caller from frame pointers.
			mode = recorder.UnwindAuto
		}
		if mode == recorder.UnwindFP || h.Sp == 0 || len(raw) < memFPSize {
			user := make([]uint64, 0, n)
			for _, pc := range fp {
				if pc > 0 {
					user = append(user, pc-1)
				}
			}
			row.StackID = stacks.Record(h.Pid, nil, user)
		} else {
			nb := min(int(h.StackBytes), len(raw)-memFPSize)
			id, res := stacks.RecordUserStackResult(h.Pid, nil, recorder.UserStack{
				Regs:                unwind.Regs{PC: h.Ip, SP: h.Sp, BP: h.Bp},
				Bytes:               raw[memFPSize : memFPSize+nb],
				FramePointer:        fp,
				LeafIsReturnAddress: isAllocatorCall(kindOf), // read at a uretprobe
			}, mode)
			m.unwound.Add(res)
			row.StackID = id
		}
	}
	if isAllocatorCall(kindOf) {
		m.mu.Lock()
		m.lastAlloc[h.Pid] = max(m.lastAlloc[h.Pid], h.TimeNs)
		m.mu.Unlock()
	}
	_ = m.table.Write(row)
}

// writeFrees writes a batch's frees and returns how many. The session
// counts ring records as events; callers add the rest.
func (m *memProbe) writeFrees(b *bpfFreeBatch) uint64 {
	items := b.Items[:min(b.N, uint64(len(b.Items)))]
	for _, it := range items {
		_ = m.table.Write(formats.MemEvent{TimeNs: it.TimeNs, PID: it.Pid, TID: it.Tid, Kind: formats.MemFree, Addr: it.Addr, Weight: 1})
	}
	return uint64(len(items))
}

// flushFrees writes the frees still in the kernel's per-CPU batches: the
// probes are detached and the ring drained, so nothing adds to them.
func (m *memProbe) flushFrees(s *recorder.Session) {
	var batches []bpfFreeBatch
	if err := m.objs.FreeBatches.Lookup(uint32(0), &batches); err != nil {
		s.Warnf("mem: the last frees of each CPU could not be read (%v): some blocks freed late in the window show as outstanding", err)
		return
	}
	for i := range batches {
		m.s.CountEvents(m.writeFrees(&batches[i]))
	}
}

// attachSyscalls attaches the mapping tracepoints (host-wide: the programs
// filter to targets in the kernel).
func (m *memProbe) attachSyscalls() error {
	exit := m.objs.MemSysExit
	if m.floor {
		exit = m.empty[ebpf.TracePoint]
	}
	var links []link.Link
	for _, sc := range memSyscalls {
		enter := sc.enter(&m.objs)
		if m.floor {
			enter = m.empty[ebpf.TracePoint]
		}
		for _, tp := range []struct {
			name string
			prog *ebpf.Program
		}{{"sys_enter_" + sc.name, enter}, {"sys_exit_" + sc.name, exit}} {
			l, err := link.Tracepoint("syscalls", tp.name, tp.prog, nil)
			if err != nil {
				for _, l := range links {
					l.Close()
				}
				return fmt.Errorf("tracepoint syscalls:%s: %w", tp.name, err)
			}
			links = append(links, l)
		}
	}
	m.mu.Lock()
	m.links = append(m.links, links...)
	m.mu.Unlock()
	return nil
}

func (m *memProbe) Drops() map[string]uint64 {
	out := m.drops.Read(m.objs.Drops, memDropNames)
	for reason, n := range m.unwound.Map() {
		if reason != unwind.ReasonEnd.String() {
			out["mem.unwind_"+reason] = n
		}
	}
	return out
}

// detach releases the uprobes of a process that exited. Its pid-bound
// probes can never fire again, but each one holds a perf event and a
// kernel uprobe until closed: a target forking short-lived children left
// hundreds open, and closing them all at the end took minutes. Closing
// waits for the kernel (an RCU grace period per probe), so it happens on
// the closer's goroutine, not on the process reader's.
func (m *memProbe) detach(pid uint32) {
	m.mu.Lock()
	ls := m.pidLinks[pid]
	delete(m.pidLinks, pid)
	prefix := recorder.Itoa(pid) + ":"
	for key := range m.attached {
		if strings.HasPrefix(key, prefix) {
			delete(m.attached, key)
		}
	}
	m.mu.Unlock()
	m.closer.Close(ls)
}

func (m *memProbe) Stop(s *recorder.Session) error {
	m.mu.Lock()
	for _, l := range m.links {
		l.Close()
	}
	m.links = nil
	var rest []link.Link
	for pid, ls := range m.pidLinks {
		rest = append(rest, ls...)
		delete(m.pidLinks, pid)
	}
	m.mu.Unlock()
	m.closer.Close(rest)
	m.closer.Wait()
	m.ring.Stop()
	m.flushFrees(s)
	// Honest limits: a target whose allocations never reached libc (a Go
	// binary, a static or custom allocator) gets a warning, not an empty
	// and reassuring leak list.
	m.mu.Lock()
	for pid := range m.pids {
		if t := m.lastAlloc[pid]; t == 0 || t < m.execAt[pid] {
			s.Warnf("mem: no allocation seen from pid %d through %s during the window: if it allocates through another allocator (Go runtime, a JVM, a custom allocator without malloc), its memory is not traced (its anonymous mmaps and brk are, with --mem-mmap; -p growth sees every runtime)", pid, m.pids[pid])
		}
	}
	m.mu.Unlock()
	if total := m.unwound.Total(); total > 0 {
		complete := m.unwound.Map()[unwind.ReasonEnd.String()]
		d := map[string]string{"unwind.walks": strconv.FormatUint(total, 10), "unwind.complete": strconv.FormatUint(complete, 10),
			"unwind.complete_pct": strconv.FormatFloat(100*float64(complete)/float64(total), 'f', 1, 64)}
		recorder.MergeProbeDetails(s, "mem", d)
	}
	for _, p := range m.empty {
		p.Close()
	}
	m.drops.Freeze(m.objs.Drops, memDropNames)
	return m.objs.Close()
}

// Event is the ring record of an allocator call (struct mem_event of
// mem.bpf.c), for benchmarks that build records without a kernel.
type Event = bpfMemEvent

func contains(list []string, v string) bool {
	for _, x := range list {
		if x == v {
			return true
		}
	}
	return false
}
