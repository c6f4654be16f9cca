//go:build linux

package recorder

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/features"
	"github.com/cilium/ebpf/link"
)

// Feature is a kernel capability a probe set needs beyond what every
// capture needs (BTF, ring buffers, tp_btf). It is probed live, once per
// process: a tiny program is loaded (and attached where attaching is what
// varies), so the answer is this kernel's, whatever its version says.
// `bpfsnap doctor` lists every feature; the session refuses to start a
// probe set whose features are missing, before the window, with the
// same words (Unsupported).
type Feature struct {
	// Name is the short name doctor lists ("uprobe.multi").
	Name string
	// What says what it is, as a user reads it in a refusal.
	What string
	// Since is the first mainline release that has it, as the kernel
	// tests on Debian's 6.1 and 6.12 confirm (docs/kernels.md).
	Since string
	// Without says what bpfsnap does on kernels without it, when a probe
	// set has another way ("" when the sets that need it cannot run).
	Without string
	probe   func() error
	once    sync.Once
	err     error
}

// Err probes the feature once and returns nil when the kernel has it.
func (f *Feature) Err() error {
	f.once.Do(func() { f.err = f.probe() })
	return f.err
}

// Problem says why f cannot be used here ("" when it can).
func (f *Feature) Problem() string {
	err := f.Err()
	switch {
	case err == nil:
		return ""
	case errors.Is(err, ebpf.ErrNotSupported):
		return fmt.Sprintf("%s (Linux %s+), which this kernel lacks", f.What, f.Since)
	default:
		return fmt.Sprintf("%s (Linux %s+), whose check failed: %v", f.What, f.Since, err)
	}
}

// Requirer is implemented by probe sets that need kernel features.
type Requirer interface {
	Requires() []*Feature
}

// Unsupported returns why p cannot run on this kernel, naming every
// missing feature, or nil. A set whose features are all present may still
// fail to load (the verifier of an old kernel may reject its programs);
// that error reaches the user as well, at start.
func Unsupported(p Probe) error {
	r, ok := p.(Requirer)
	if !ok {
		return nil
	}
	var missing []string
	for _, f := range r.Requires() {
		if why := f.Problem(); why != "" {
			missing = append(missing, why)
		}
	}
	if len(missing) == 0 {
		return nil
	}
	return fmt.Errorf("needs %s", strings.Join(missing, "; and "))
}

// The features probe sets need. Helpers are probed in the program type that
// calls them: which helpers a type may call grew over the years (cgroup_skb
// programs could not ask for the current pid before 6.10).
var (
	FeaturePerfEvent = &Feature{Name: "perf_event", What: "perf_event programs on the cpu-clock event", Since: "4.9",
		probe: func() error {
			return TryProgram(ebpf.PerfEvent, "", ebpf.AttachNone, func(p *ebpf.Program) (io.Closer, error) {
				pl, err := AttachCPUClock(p, 99)
				if err != nil {
					return nil, err
				}
				return closerFunc(pl.Close), nil
			})
		}}
	FeatureUprobeMulti = &Feature{Name: "uprobe.multi", What: "uprobe.multi links", Since: "6.6",
		Without: "mem attaches one classic uprobe per allocator function and process instead",
		probe:   features.HaveBPFLinkUprobeMulti}
	FeatureTaskStorage = &Feature{Name: "task_storage", What: "task storage maps", Since: "5.11",
		probe: func() error { return features.HaveMapType(ebpf.TaskStorage) }}
	FeatureSkStorage = &Feature{Name: "sk_storage", What: "socket storage maps", Since: "5.2",
		probe: func() error { return features.HaveMapType(ebpf.SkStorage) }}
	FeatureLoop = &Feature{Name: "bpf_loop", What: "the bpf_loop helper", Since: "5.17",
		probe: func() error { return features.HaveProgramHelper(ebpf.TracePoint, asm.FnLoop) }}
	FeatureTaskIter = &Feature{Name: "iter/task", What: "task iterators (iter/task programs)", Since: "5.8",
		probe: probeTaskIter}
	FeatureSKBPid = &Feature{Name: "cgroup_skb.pid", What: "bpf_get_current_pid_tgid in cgroup_skb programs", Since: "6.10",
		probe: func() error { return features.HaveProgramHelper(ebpf.CGroupSKB, asm.FnGetCurrentPidTgid) }}
	// The TLS write marker of http's egress program reads the writing
	// task's storage. Debian's 6.12 refuses both helpers in cgroup_skb
	// programs and 6.18 has them; the release between that brought them
	// is not pinned down, so Since names the first one measured.
	FeatureSKBTaskStorage = &Feature{Name: "cgroup_skb.task_storage", What: "bpf_task_storage_get and bpf_get_current_task_btf in cgroup_skb programs", Since: "6.18",
		Without: "http ties TLS connections to their socket by descriptor only (OpenSSL over memory BIOs, as node uses, is counted as not decoded)",
		probe: func() error {
			if err := features.HaveProgramHelper(ebpf.CGroupSKB, asm.FnTaskStorageGet); err != nil {
				return err
			}
			return features.HaveProgramHelper(ebpf.CGroupSKB, asm.FnGetCurrentTaskBtf)
		}}
	FeatureSKBCgroupID = &Feature{Name: "cgroup_skb.cgroup_id", What: "bpf_get_current_cgroup_id in cgroup_skb programs", Since: "6.10",
		probe: func() error { return features.HaveProgramHelper(ebpf.CGroupSKB, asm.FnGetCurrentCgroupId) }}
)

// Features lists every feature, in the order doctor shows them.
func Features() []*Feature {
	return []*Feature{FeaturePerfEvent, FeatureUprobeMulti, FeatureTaskStorage, FeatureSkStorage, FeatureLoop, FeatureTaskIter, FeatureSKBPid, FeatureSKBCgroupID, FeatureSKBTaskStorage}
}

// probeTaskIter loads an iter/task program that does nothing and makes an
// iterator link of it.
func probeTaskIter() error {
	return notSupportedIf(TryProgram(ebpf.Tracing, "task", ebpf.AttachTraceIter, func(p *ebpf.Program) (io.Closer, error) {
		return link.AttachIter(link.IterOptions{Program: p})
	}))
}

// notSupportedIf marks the errors an old kernel gives for an unknown
// program or attach type as ErrNotSupported.
func notSupportedIf(err error) error {
	if err == nil {
		return nil
	}
	var verr *ebpf.VerifierError
	if errors.Is(err, ebpf.ErrNotSupported) || errors.As(err, &verr) {
		return fmt.Errorf("%w: %v", ebpf.ErrNotSupported, err)
	}
	return err
}

// TryProgram loads a program of typ that does nothing (returns 0, or 1
// for cgroup_skb, which lets the packet pass), attaches it with attach and
// detaches it again: what doctor and the feature probes call a live check.
func TryProgram(typ ebpf.ProgramType, attachTo string, at ebpf.AttachType, attach func(*ebpf.Program) (io.Closer, error)) error {
	ret := int32(0)
	if typ == ebpf.CGroupSKB {
		ret = 1
	}
	p, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Name: "bpfsnap_check", Type: typ, AttachTo: attachTo, AttachType: at, License: "GPL",
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, ret), asm.Return()},
	})
	if err != nil {
		return err
	}
	defer p.Close()
	l, err := attach(p)
	if err != nil {
		return err
	}
	return l.Close()
}

// closerFunc adapts a close function to io.Closer.
type closerFunc func()

func (f closerFunc) Close() error { f(); return nil }
