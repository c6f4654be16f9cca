//go:build linux

package capture

import (
	"debug/elf"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/spf13/pflag"

	"github.com/bpfsnap/bpfsnap/bpf"
	"github.com/bpfsnap/bpfsnap/formats"
	"github.com/bpfsnap/bpfsnap/internal/probeplace"
	"github.com/bpfsnap/bpfsnap/internal/symbolize"
)

func init() { Register("mem", func() ProbeSet { return &memProbe{} }) }

// memProbe traces the C allocator of the targeted processes with uprobes on
// the libc each process maps, attached per pid so no other process on the
// node takes a trap.
type memProbe struct {
	s     *Session
	objs  bpf.MemObjects
	ring  *RingReader
	table *formats.TableWriter[formats.MemEvent]

	mu       sync.Mutex
	links    []link.Link
	attached map[string]bool // "pid:dev:inode" of the libc attached
	libcs    map[string]*libcPlan
	pids     map[uint32]string // pid -> libc it was attached to
	seen     map[uint32]uint64 // pid -> allocation events
	details  map[string]string
}

// allocFunc is one allocator entry point and the programs that trace it.
type allocFunc struct {
	name   string
	enter  func(*bpf.MemObjects) *ebpf.Program
	ret    bool // also a uretprobe for the returned block
	placed bool // the entry probe may move past the first instruction
}

var allocFuncs = []allocFunc{
	{"malloc", func(o *bpf.MemObjects) *ebpf.Program { return o.MallocEnter }, true, false},
	{"calloc", func(o *bpf.MemObjects) *ebpf.Program { return o.CallocEnter }, true, false},
	{"realloc", func(o *bpf.MemObjects) *ebpf.Program { return o.ReallocEnter }, true, false},
	{"reallocarray", func(o *bpf.MemObjects) *ebpf.Program { return o.ReallocarrayEnter }, true, false},
	{"aligned_alloc", func(o *bpf.MemObjects) *ebpf.Program { return o.MemalignEnter }, true, false},
	{"memalign", func(o *bpf.MemObjects) *ebpf.Program { return o.MemalignEnter }, true, false},
	{"valloc", func(o *bpf.MemObjects) *ebpf.Program { return o.VallocEnter }, true, false},
	{"pvalloc", func(o *bpf.MemObjects) *ebpf.Program { return o.VallocEnter }, true, false},
	{"posix_memalign", func(o *bpf.MemObjects) *ebpf.Program { return o.PosixMemalignEnter }, true, false},
	// free needs no return probe, so its entry probe can sit on the first
	// emulated instruction (probeplace).
	{"free", func(o *bpf.MemObjects) *ebpf.Program { return o.FreeEnter }, false, true},
}

// libcPlan is where each allocator function of one libc file gets probed.
type libcPlan struct {
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

var memDropNames = []string{"mem.ringbuf_full", "mem.inflight_full", "mem.stack_failed"}

func (*memProbe) Name() string  { return "mem" }
func (*memProbe) Default() bool { return false } // a trap per allocation: opt-in

func (m *memProbe) BindFlags(*pflag.FlagSet) {}

func (m *memProbe) Start(s *Session) (map[string]string, error) {
	m.s = s
	m.attached, m.libcs, m.pids, m.seen = map[string]bool{}, map[string]*libcPlan{}, map[uint32]string{}, map[uint32]uint64{}
	m.details = map[string]string{}
	if !s.Filtered() {
		return nil, errors.New("mem needs targets: give --pid PID or -- COMMAND (allocation tracing costs every traced allocation a trap)")
	}
	spec, err := bpf.LoadMem()
	if err != nil {
		return nil, err
	}
	if err := s.LoadObjects(spec, &m.objs); err != nil {
		return nil, err
	}
	m.table = formats.NewTable[formats.MemEvent](s.Writer(), formats.TableMemEvents)
	stacks := s.Stacks()
	if m.ring, err = s.ReadRing(m.objs.MemEvents, func(raw []byte) { m.handle(stacks, raw) }); err != nil {
		return nil, err
	}
	s.targetMu.Lock()
	var pids []uint32
	for pid := range s.targetPIDs {
		pids = append(pids, pid)
	}
	s.targetMu.Unlock()
	sort.Slice(pids, func(i, j int) bool { return pids[i] < pids[j] })
	for _, pid := range pids {
		if err := m.attach(pid); err != nil {
			s.Warnf("mem: pid %d: %v", pid, err)
		}
	}
	// New processes of the targets (forks keep the parent's libc; an exec
	// may map another) get their own per-pid probes.
	s.OnProcess(func(ev formats.ProcessEvent) {
		if ev.Kind == formats.ProcessFork || ev.Kind == formats.ProcessExec {
			if err := m.attach(ev.PID); err != nil {
				s.Warnf("mem: pid %d: %v", ev.PID, err)
			}
		}
	})
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.links) == 0 {
		return m.details, errors.New("no allocator probe could be attached to any target")
	}
	return m.details, nil
}

// libcOf finds the C library a process maps. A process that maps none yet
// (the held child of `-- COMMAND` is bpfsnap itself until it execs) gets
// the host's libc: once it execs a dynamically linked program, that is
// almost always what it maps, and its first allocation is traced.
func (m *memProbe) libcOf(pid uint32) string {
	root := filepath.Join(m.s.procRoot, itoa(pid), "root")
	if f, err := os.Open(filepath.Join(m.s.procRoot, itoa(pid), "maps")); err == nil {
		maps, _ := symbolize.ParseMaps(f)
		f.Close()
		for _, mp := range maps {
			base := filepath.Base(mp.Path)
			if mp.Executable() && (base == "libc.so.6" || strings.HasPrefix(base, "libc-")) {
				return filepath.Join(root, mp.Path)
			}
		}
	}
	// The held child is bpfsnap itself until it execs: look in its root,
	// then in the host's (the same mount namespace; /proc/PID/root can be
	// briefly unreadable while the child is being set up).
	for _, r := range []string{root, m.s.opts.HostRoot} {
		for _, p := range []string{"/lib/x86_64-linux-gnu/libc.so.6", "/usr/lib/x86_64-linux-gnu/libc.so.6", "/lib64/libc.so.6", "/usr/lib64/libc.so.6", "/lib/libc.so.6"} {
			if _, err := os.Stat(filepath.Join(r, p)); err == nil {
				return filepath.Join(r, p)
			}
		}
	}
	return ""
}

func (m *memProbe) attach(pid uint32) error {
	libc := m.libcOf(pid)
	if libc == "" {
		return errors.New("no C library found: its allocations cannot be traced")
	}
	// The same library is often reachable by two paths (/lib is a link
	// to /usr/lib): key by inode, or every call would be traced twice.
	st, err := os.Stat(libc)
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
	plan, err := m.plan(libc)
	if err != nil {
		return err
	}
	ex, err := link.OpenExecutable(libc)
	if err != nil {
		return err
	}
	for _, f := range allocFuncs {
		at := plan.funcs[f.name]
		if !at.available || at.aliasOf != "" {
			continue
		}
		opts := &link.UprobeOptions{PID: int(pid), Address: at.addr, Offset: at.offset}
		l, err := ex.Uprobe(f.name, f.enter(&m.objs), opts)
		if err != nil {
			return fmt.Errorf("uprobe %s: %w", f.name, err)
		}
		m.links = append(m.links, l)
		if f.ret {
			l, err := ex.Uretprobe(f.name, m.objs.AllocReturn, &link.UprobeOptions{PID: int(pid), Address: at.addr})
			if err != nil {
				return fmt.Errorf("uretprobe %s: %w", f.name, err)
			}
			m.links = append(m.links, l)
		}
	}
	m.attached[key] = true
	m.pids[pid] = libc
	return nil
}

// plan reads a libc once: each allocator function's address and where its
// entry probe sits, recorded in the manifest details with the reason.
func (m *memProbe) plan(path string) (*libcPlan, error) {
	if p := m.libcs[path]; p != nil {
		return p, nil
	}
	f, err := elf.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	syms, err := f.DynamicSymbols()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	byName := map[string]uint64{}
	for _, s := range syms {
		if elf.ST_TYPE(s.Info) == elf.STT_FUNC && s.Value != 0 {
			name, _, _ := strings.Cut(s.Name, "@")
			if _, dup := byName[name]; !dup {
				byName[name] = s.Value
			}
		}
	}
	plan := &libcPlan{path: path, funcs: map[string]probeAt{}}
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
		m.details["probe."+fn.name] = detail
	}
	m.libcs[path] = plan
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

var memKinds = map[uint32]string{1: formats.MemMalloc, 2: formats.MemCalloc, 3: formats.MemRealloc, 4: formats.MemFree, 5: formats.MemMemalign, 6: formats.MemPosixMemalign}

const memEventHead = int(unsafe.Offsetof(bpf.MemMemEvent{}.Ustack))

func (m *memProbe) handle(stacks *StackRecorder, raw []byte) {
	if len(raw) < memEventHead {
		return
	}
	ev := (*bpf.MemMemEvent)(unsafe.Pointer(&raw[0]))
	row := formats.MemEvent{TimeNs: ev.TimeNs, PID: ev.Pid, TID: ev.Tid, Kind: memKinds[ev.Kind], Addr: ev.Addr, OldAddr: ev.OldAddr, Size: ev.Size, Weight: 1}
	if ev.Kind != 4 && len(raw) >= int(unsafe.Sizeof(*ev)) {
		// Every frame, the leaf too, is a return address here: the stack
		// is read when the allocator returns to its caller.
		n := min(int(ev.UstackBytes)/8, len(ev.Ustack))
		user := make([]uint64, 0, max(n, 0))
		for i := 0; i < n; i++ {
			if ev.Ustack[i] > 0 {
				user = append(user, ev.Ustack[i]-1)
			}
		}
		row.StackID = stacks.Record(ev.Pid, nil, user)
		m.mu.Lock()
		m.seen[ev.Pid]++
		m.mu.Unlock()
	}
	_ = m.table.Write(row)
}

func (m *memProbe) Drops() map[string]uint64 { return SumPerCPU(m.objs.Drops, memDropNames) }

func (m *memProbe) Stop(s *Session) error {
	m.mu.Lock()
	for _, l := range m.links {
		l.Close()
	}
	m.links = nil
	m.mu.Unlock()
	m.ring.Stop()
	// Honest limits: a target whose allocations never reached libc (a Go
	// binary, a static or custom allocator) gets a warning, not an empty
	// and reassuring leak list.
	m.mu.Lock()
	for pid := range m.pids {
		if m.seen[pid] == 0 {
			s.Warnf("mem: no libc allocation seen from pid %d during the window: if it allocates through another allocator (Go runtime, static or custom malloc), its memory is not traced", pid)
		}
	}
	m.mu.Unlock()
	return m.objs.Close()
}
