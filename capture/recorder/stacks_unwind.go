//go:build linux

package recorder

import (
	"io"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/bpfsnap/bpfsnap/formats"
	"github.com/bpfsnap/bpfsnap/internal/symbolize"
	"github.com/bpfsnap/bpfsnap/internal/unwind"
)

// UnwindMode chooses how user stacks are walked (capture --unwind).
type UnwindMode string

const (
	// UnwindAuto uses the CFI (.eh_frame/.debug_frame) of mappings that
	// have it and follows frame pointers through mappings that do not
	// (Go binaries, JIT code); the decision is per mapping.
	UnwindAuto UnwindMode = "auto"
	// UnwindFP walks frame pointers in the kernel (bpf_get_stack) only.
	UnwindFP UnwindMode = "fp"
	// UnwindDWARF uses CFI only: frames without CFI end the walk.
	UnwindDWARF UnwindMode = "dwarf"
)

// ParseUnwindMode validates a --unwind value.
func ParseUnwindMode(s string) (UnwindMode, bool) {
	switch m := UnwindMode(s); m {
	case UnwindAuto, UnwindFP, UnwindDWARF:
		return m, true
	}
	return "", false
}

// UserStack is what a probe copied at a sample so user space can walk the
// stack with the binaries' CFI: the user registers, the stack bytes from SP
// up, and (optional) the kernel's frame-pointer walk of the same stack.
// The bytes are only read here, never stored in the archive.
type UserStack struct {
	Regs         unwind.Regs
	Bytes        []byte
	FramePointer []uint64 // raw return addresses, leaf first, as bpf_get_stack returns them
	// LeafIsReturnAddress is set when the registers were read at a return
	// (a uretprobe on an allocator): Regs.PC is then a return address and
	// is named by its call instruction like the other frames.
	LeafIsReturnAddress bool
}

// maxUnwindDecisions bounds the per-binary decision list in the manifest.
const maxUnwindDecisions = 64

// userUnwinder is the DWARF-unwinding state of one StackRecorder: CFI
// tables per binary (loaded through the recorder's open files, so they
// outlive the process) and a module list per process.
type userUnwinder struct {
	mu        sync.Mutex
	cache     *unwind.Cache
	procs     map[uint32]*unwoundProc
	decisions map[string]string // binary path -> "dwarf" | "fp"
	counts    unwind.Counts
	fpUsed    uint64 // auto: walks continued by the kernel's frame-pointer walk past the copied window
	elapsed   time.Duration
	code      codePages
	// fpChecked and fpCut count the kernel's frame-pointer walks checked
	// for --unwind fp (TrimFramePointerStack) and those cut short.
	fpChecked, fpCut uint64
}

type unwoundProc struct {
	version time.Time // procState.refreshed the module list was built from
	proc    *unwind.Process
	withCFI bool
}

// The unwinder hangs off the recorder without a field in StackRecorder so
// this file stays separate from the frame-pointer recorder.
var recorderUnwinders sync.Map // *StackRecorder -> *userUnwinder

func (r *StackRecorder) unwinder() *userUnwinder {
	if u, ok := recorderUnwinders.Load(r); ok {
		return u.(*userUnwinder)
	}
	u, _ := recorderUnwinders.LoadOrStore(r, &userUnwinder{
		cache:     unwind.NewCache(),
		procs:     map[uint32]*unwoundProc{},
		decisions: map[string]string{},
	})
	return u.(*userUnwinder)
}

// RecordUserStack unwinds a copied user stack with the binaries' CFI and
// records the result like Record (kernel frames raw, leaf first). Probe sets
// that sample stacks without frame pointers (cpu, mem) call it instead of
// Record; the walk's outcome is counted in UnwindStats.
func (r *StackRecorder) RecordUserStack(pid uint32, kernel []uint64, us UserStack, mode UnwindMode) uint64 {
	u := r.unwinder()
	start := time.Now()
	id, res := r.RecordUserStackResult(pid, kernel, us, mode)
	u.counts.Add(res)
	u.mu.Lock()
	u.elapsed += time.Since(start)
	u.mu.Unlock()
	return id
}

// RecordWalkOrCopy records a stack a program sent with both a frame-pointer
// walk and, optionally, a copy of the user stack (the growth and offcpu
// sets): kernel and fp are the raw walks (leaf first, as bpf_get_stack
// gives them), regs and copied where the copy started and its bytes. The
// copy is unwound with CFI unless mode is fp or nothing was copied; then
// the frame-pointer walk stands. The walk's outcome goes to counts.
func (r *StackRecorder) RecordWalkOrCopy(pid uint32, kernel, fp []uint64, regs unwind.Regs, copied []byte, mode UnwindMode, counts *unwind.Counts) uint64 {
	kernel = ReturnAddresses(kernel)
	if mode == UnwindFP || regs.SP == 0 || len(copied) == 0 {
		return r.Record(pid, kernel, ReturnAddresses(fp))
	}
	id, res := r.RecordUserStackResult(pid, kernel, UserStack{Regs: regs, Bytes: copied, FramePointer: fp}, mode)
	counts.Add(res)
	return id
}

// RecordUserStackResult is RecordUserStack without the recorder-wide
// counts: it also returns the walk's outcome, for a probe set that keeps
// its own (mem, beside cpu on the same recorder).
func (r *StackRecorder) RecordUserStackResult(pid uint32, kernel []uint64, us UserStack, mode UnwindMode) (uint64, unwind.Result) {
	u := r.unwinder()
	opt := unwind.Options{FramePointerFallback: mode != UnwindDWARF, LeafIsReturnAddress: us.LeafIsReturnAddress}
	walk := func() (*unwind.Process, unwind.Result) {
		proc := r.processModules(u, pid, true)
		return proc, unwind.Unwind(proc, us.Regs, unwind.Stack{Base: us.Regs.SP, Data: us.Bytes}, opt)
	}
	proc, res := walk()
	if stale(proc, res) && r.refreshStale(pid) {
		// Code outside the snapshot's mappings: the process may have
		// mapped a library since. Walk again over fresh maps.
		proc, res = walk()
	}
	if mode == UnwindAuto {
		// The kernel's frame-pointer walk is not limited by the copied
		// window: deep stacks of frame-pointer code (Go) go on with it
		// where it checks out.
		var added int
		res, added = unwind.ContinueWithFramePointers(proc, res, us.FramePointer)
		if added > 0 {
			u.mu.Lock()
			u.fpUsed++
			u.mu.Unlock()
		}
	}
	user := res.PCs
	if us.Regs.SP == 0 {
		user = nil
	}
	// Return addresses point after their call: move them back one byte, as
	// the frame-pointer path does, so they resolve to the call's function.
	adj := make([]uint64, len(user))
	for i, pc := range user {
		adj[i] = pc
		if (i > 0 || us.LeafIsReturnAddress) && pc > 0 {
			adj[i] = pc - 1
		}
	}
	return r.Record(pid, kernel, adj), res
}

// TrimFramePointerStack keeps the part of a kernel frame-pointer walk
// (bpf_get_stack's raw return addresses, leaf first) that checks out, for
// --unwind fp: it stops before the first return address outside executable
// code or not after a call (rbp followed through code built without frame
// pointers yields data, not return addresses). Cuts are counted as
// bad_return_address walks in UnwindDrops.
func (r *StackRecorder) TrimFramePointerStack(pid uint32, raw []uint64) []uint64 {
	if len(raw) < 2 {
		return raw
	}
	u := r.unwinder()
	proc := r.processModules(u, pid, false)
	// No re-read of the maps on a cut (garbage is the usual cause here);
	// a library mapped since is learned when a sample's leaf runs in it.
	keep := unwind.TrustedReturnAddresses(proc, raw)
	u.mu.Lock()
	u.fpChecked++
	if keep < len(raw) {
		u.fpCut++
	}
	u.mu.Unlock()
	return raw[:keep]
}

// stale reports whether a walk stopped at code outside every executable
// mapping of the snapshot it used: the sampled PC, or a return address a
// step produced (CFI, or a frame pointer into JIT code mapped since the
// snapshot: V8 and HotSpot map code space as they compile).
func stale(proc *unwind.Process, res unwind.Result) bool {
	switch res.Reason {
	case unwind.ReasonNoModule:
		exec, _ := proc.CodeAt(res.StopPC)
		return !exec
	case unwind.ReasonBadReturnAddress:
		return res.Unmapped != 0
	}
	return false
}

// refreshStale re-reads pid's maps if the rate limit allows (as userFrame
// does for an address outside every mapping) and reports whether it did.
func (r *StackRecorder) refreshStale(pid uint32) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	p := r.snapshot(pid)
	if p.refreshes >= 4 && time.Since(p.refreshed) <= mapsRefreshEvery {
		return false
	}
	r.refresh(pid, p)
	return true
}

// processModules returns the executable mappings of pid's current
// snapshot, with their CFI when withCFI (--unwind fp needs only where code
// is, and never loads CFI tables).
func (r *StackRecorder) processModules(u *userUnwinder, pid uint32, withCFI bool) *unwind.Process {
	r.mu.Lock()
	defer r.mu.Unlock()
	p := r.snapshot(pid)
	u.mu.Lock()
	up := u.procs[pid]
	u.mu.Unlock()
	if up != nil && up.version.Equal(p.refreshed) && (up.withCFI || !withCFI) {
		return up.proc
	}
	binary := func(symbolize.Mapping) *unwind.Binary { return nil }
	if withCFI {
		binary = func(m symbolize.Mapping) *unwind.Binary { return r.binaryCFI(u, pid, m) }
	}
	proc := unwind.NewProcess(p.maps, binary)
	proc.SetCodeReader(r.codeReader(&u.code, pid, p))
	u.mu.Lock()
	u.procs[pid] = &unwoundProc{version: p.refreshed, proc: proc, withCFI: withCFI}
	u.mu.Unlock()
	return proc
}

// binaryCFI loads the CFI of a mapping's file (once per file) and records
// the per-binary decision for the manifest. The caller holds r.mu.
func (r *StackRecorder) binaryCFI(u *userUnwinder, pid uint32, m symbolize.Mapping) *unwind.Binary {
	bin := r.binary(pid, m)
	b := u.cache.Get(bin, func() (io.ReaderAt, error) {
		if bin.file != nil {
			// Shared with the symbolizer: read through a section
			// reader, which the cache will not close.
			return io.NewSectionReader(bin.file, 0, 1<<62), nil
		}
		if bin.reopen == "" {
			return nil, os.ErrNotExist
		}
		return os.Open(bin.reopen)
	})
	u.mu.Lock()
	if _, ok := u.decisions[m.Path]; !ok && len(u.decisions) < maxUnwindDecisions {
		if b.Table != nil {
			u.decisions[m.Path] = "dwarf"
		} else {
			u.decisions[m.Path] = "fp"
		}
	}
	u.mu.Unlock()
	return b
}

// UnwindDrops returns the walks that did not reach the outermost frame, by
// reason, as "<set>.unwind_<reason>" drop counters.
func (r *StackRecorder) UnwindDrops(set string) map[string]uint64 {
	u := r.unwinder()
	out := map[string]uint64{}
	for reason, n := range u.counts.Map() {
		if reason != unwind.ReasonEnd.String() {
			out[set+".unwind_"+reason] = n
		}
	}
	u.mu.Lock()
	if u.fpCut > 0 {
		out[set+".unwind_"+unwind.ReasonBadReturnAddress.String()] += u.fpCut
	}
	u.mu.Unlock()
	return out
}

// UnwindDetails summarizes the walks for the manifest's probe details: the
// mode, how many walks reached a thread root (unwind.complete: the
// outermost frame, whose return address is undefined, as _start, clone3
// and runtime.goexit mark it, or a frame-pointer chain ending in zero), and
// the per-binary decision.
func (r *StackRecorder) UnwindDetails(mode UnwindMode, stackSize int) map[string]string {
	u := r.unwinder()
	u.mu.Lock()
	defer u.mu.Unlock()
	total := u.counts.Total()
	complete := u.counts.Map()[unwind.ReasonEnd.String()]
	var bins []string
	for path, how := range u.decisions {
		bins = append(bins, path+"="+how)
	}
	sort.Strings(bins)
	d := map[string]string{
		"unwind":              string(mode),
		"unwind.stack_bytes":  strconv.Itoa(stackSize),
		"unwind.walks":        strconv.FormatUint(total, 10),
		"unwind.complete":     strconv.FormatUint(complete, 10),
		"unwind.fp_continued": strconv.FormatUint(u.fpUsed, 10),
		"unwind.user_cpu_us":  strconv.FormatInt(u.elapsed.Microseconds(), 10),
		"unwind.binaries":     strings.Join(bins, " "),
	}
	if total > 0 {
		d["unwind.complete_pct"] = strconv.FormatFloat(100*float64(complete)/float64(total), 'f', 1, 64)
	}
	return d
}

// FramePointerDetails summarizes --unwind fp for the manifest's probe
// details: the kernel's walks checked and those cut where they left code.
func (r *StackRecorder) FramePointerDetails() map[string]string {
	u := r.unwinder()
	u.mu.Lock()
	defer u.mu.Unlock()
	return map[string]string{
		"unwind.fp_walks": strconv.FormatUint(u.fpChecked, 10),
		"unwind.fp_cut":   strconv.FormatUint(u.fpCut, 10),
	}
}

// MergeProbeDetails adds details to a probe set's manifest entry.
func MergeProbeDetails(s *Session, name string, details map[string]string) {
	s.Writer().UpdateManifest(func(m *formats.Manifest) {
		for i := range m.Probes {
			if m.Probes[i].Name != name {
				continue
			}
			if m.Probes[i].Details == nil {
				m.Probes[i].Details = map[string]string{}
			}
			for k, v := range details {
				m.Probes[i].Details[k] = v
			}
		}
	})
}
