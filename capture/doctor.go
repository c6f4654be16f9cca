//go:build linux

package capture

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/bpfsnap/bpfsnap/capture/recorder"
	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"
)

// Check is one line of `bpfsnap doctor`.
type Check struct {
	Name string `json:"name"`
	OK   bool   `json:"ok"`
	// Required checks decide the exit code: without them no capture runs.
	Required bool   `json:"required"`
	Detail   string `json:"detail"`
	// Affects names what does not work when the check fails.
	Affects string `json:"affects,omitempty"`
}

// DoctorReport is the result of Doctor.
type DoctorReport struct {
	Kernel   string   `json:"kernel"`
	Checks   []Check  `json:"checks"`
	CanRun   bool     `json:"can_capture"`
	Unusable []string `json:"unavailable,omitempty"`
	// Sets says, for every probe set, whether it can start here.
	Sets []SetVerdict `json:"probe_sets"`
}

// Doctor inspects the machine and loads and attaches one tiny program of
// every kind bpfsnap uses, so "it should work" becomes "it worked here".
// It mounts tracefs when it is missing and we are root.
func Doctor() DoctorReport {
	r := DoctorReport{Kernel: recorder.KernelRelease()}
	add := func(c Check) { r.Checks = append(r.Checks, c) }

	if _, err := os.Stat("/sys/kernel/btf/vmlinux"); err == nil {
		add(Check{Name: "btf", OK: true, Required: true, Detail: "/sys/kernel/btf/vmlinux present (CO-RE works)"})
	} else {
		add(Check{Name: "btf", Required: true, Detail: "no /sys/kernel/btf/vmlinux: this kernel was built without CONFIG_DEBUG_INFO_BTF", Affects: "everything"})
	}
	add(privilegeCheck())
	add(paranoidCheck())
	add(tracefsCheck())

	add(liveCheck("ringbuf", true, "all probe sets", func() error {
		m, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.RingBuf, MaxEntries: 4096})
		if err == nil {
			m.Close()
		}
		return err
	}))
	add(liveCheck("tracepoint", false, "mem (mmap/brk syscalls)", func() error {
		return recorder.TryProgram(ebpf.TracePoint, "", 0, func(p *ebpf.Program) (io.Closer, error) {
			return link.Tracepoint("syscalls", "sys_enter_getpid", p, nil)
		})
	}))
	add(liveCheck("tp_btf", true, "process tracking", func() error {
		return recorder.TryProgram(ebpf.Tracing, "sched_process_fork", ebpf.AttachTraceRawTp, func(p *ebpf.Program) (io.Closer, error) {
			return link.AttachTracing(link.TracingOptions{Program: p})
		})
	}))
	for _, f := range recorder.Features() {
		add(featureCheck(f))
	}
	add(liveCheck("cgroup_skb", false, "http", func() error {
		root := recorder.NewCgroupResolver("/").Root()
		if root == "" {
			return errors.New("no cgroup v2 hierarchy mounted")
		}
		return recorder.TryProgram(ebpf.CGroupSKB, "", ebpf.AttachCGroupInetEgress, func(p *ebpf.Program) (io.Closer, error) {
			return link.AttachCgroup(link.CgroupOptions{Path: root, Attach: ebpf.AttachCGroupInetEgress, Program: p})
		})
	}))
	// Not used by bpfsnap; reported so users know why other tools fail here.
	kprobe := liveCheck("kprobe", false, "nothing in bpfsnap (other tools that rely on kprobes)", func() error {
		return recorder.TryProgram(ebpf.Kprobe, "", 0, func(p *ebpf.Program) (io.Closer, error) {
			return link.Kprobe("do_sys_openat2", p, nil)
		})
	})
	if !kprobe.OK && !kprobeSupport() {
		kprobe.Detail = "this kernel has no kprobes (CONFIG_KPROBES is off: no kprobe_events in tracefs, no kprobe PMU)"
	}
	add(kprobe)
	fentry := liveCheck("fentry", false, "nothing in bpfsnap (other tools that rely on fentry/fexit)", func() error {
		return recorder.TryProgram(ebpf.Tracing, "do_sys_openat2", ebpf.AttachTraceFEntry, func(p *ebpf.Program) (io.Closer, error) {
			return link.AttachTracing(link.TracingOptions{Program: p})
		})
	})
	if !fentry.OK && strings.Contains(fentry.Detail, "operation not permitted") {
		fentry.Detail = "function tracing (fentry/fexit) is refused by this kernel (EPERM: locked down or no ftrace direct calls): " + fentry.Detail
	}
	add(fentry)

	r.CanRun = true
	for _, c := range r.Checks {
		if !c.OK {
			r.Unusable = append(r.Unusable, c.Name)
			if c.Required {
				r.CanRun = false
			}
		}
	}
	for _, ps := range NewProbeSets() {
		v := SetVerdict{Name: ps.Name(), OK: r.CanRun}
		if !r.CanRun {
			v.Reason = "capture cannot run here: a required check failed"
		} else if err := recorder.Unsupported(ps); err != nil {
			v.OK, v.Reason = false, err.Error()
		}
		r.Sets = append(r.Sets, v)
	}
	return r
}

// SetVerdict says whether a probe set can start on this kernel. Reason is
// the words `capture -p NAME` refuses with.
type SetVerdict struct {
	Name   string `json:"name"`
	OK     bool   `json:"ok"`
	Reason string `json:"reason,omitempty"`
}

// featureCheck is doctor's line for a feature probe sets need: which sets
// cannot run without it, or what they do instead.
func featureCheck(f *recorder.Feature) Check {
	c := Check{Name: f.Name, OK: true, Detail: f.What + ": present (Linux " + f.Since + "+)"}
	if f.Err() == nil {
		return c
	}
	c.OK, c.Detail = false, f.Problem()
	var sets []string
	for _, ps := range NewProbeSets() {
		if r, ok := ps.(recorder.Requirer); ok && slices.Contains(r.Requires(), f) {
			sets = append(sets, ps.Name())
		}
	}
	c.Affects = strings.Join(sets, ", ")
	if f.Without != "" {
		c.Affects = strings.TrimPrefix(c.Affects+"; "+f.Without, "; ")
	}
	return c
}

func liveCheck(name string, required bool, affects string, fn func() error) Check {
	c := Check{Name: name, Required: required}
	if err := fn(); err != nil {
		c.Detail = "load/attach failed: " + err.Error()
		c.Affects = affects
		return c
	}
	c.OK = true
	c.Detail = "loaded and attached a test program"
	return c
}

var capNames = map[int]string{19: "CAP_SYS_PTRACE", 21: "CAP_SYS_ADMIN", 38: "CAP_PERFMON", 39: "CAP_BPF"}

func privilegeCheck() Check {
	c := Check{Name: "privileges", Required: true}
	eff := effectiveCaps()
	var have, missing []string
	for _, bit := range []int{39, 38, 21, 19} {
		if eff&(1<<bit) != 0 {
			have = append(have, capNames[bit])
		} else {
			missing = append(missing, capNames[bit])
		}
	}
	bpfOK := eff&(1<<39) != 0 || eff&(1<<21) != 0
	perfOK := eff&(1<<38) != 0 || eff&(1<<21) != 0
	c.OK = bpfOK && perfOK
	c.Detail = fmt.Sprintf("euid %d; effective: %s", os.Geteuid(), strings.Join(have, " "))
	if len(missing) > 0 {
		c.Detail += "; missing: " + strings.Join(missing, " ")
	}
	if !c.OK {
		c.Affects = "everything: run as root or with CAP_BPF, CAP_PERFMON (and CAP_SYS_PTRACE to read other processes' binaries)"
	}
	return c
}

func effectiveCaps() uint64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "CapEff:"); ok {
			n, _ := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			return n
		}
	}
	return 0
}

func paranoidCheck() Check {
	c := Check{Name: "perf_event_paranoid", OK: true}
	data, err := os.ReadFile("/proc/sys/kernel/perf_event_paranoid")
	if err != nil {
		c.Detail = "cannot read: " + err.Error()
		return c
	}
	v := strings.TrimSpace(string(data))
	c.Detail = "kernel.perf_event_paranoid = " + v + " (CAP_PERFMON or root bypasses it)"
	return c
}

func tracefsCheck() Check {
	c := Check{Name: "tracefs", Affects: "tracepoint lookups (mem's syscall tracepoints)"}
	const dir = "/sys/kernel/tracing"
	if _, err := os.Stat(dir + "/events"); err == nil {
		c.OK, c.Detail, c.Affects = true, "mounted at "+dir, ""
		return c
	}
	if os.Geteuid() == 0 {
		if err := unix.Mount("tracefs", dir, "tracefs", 0, ""); err == nil {
			c.OK, c.Detail, c.Affects = true, "was not mounted; mounted it at "+dir, ""
			return c
		} else {
			c.Detail = "not mounted and mounting failed: " + err.Error()
			return c
		}
	}
	c.Detail = "not mounted at " + dir + " (run: mount -t tracefs tracefs " + dir + ")"
	return c
}

// kprobeSupport reports whether the kernel offers kprobes through either
// interface cilium/ebpf can use.
func kprobeSupport() bool {
	for _, p := range []string{"/sys/bus/event_source/devices/kprobe", "/sys/kernel/tracing/kprobe_events"} {
		if _, err := os.Stat(p); err == nil {
			return true
		}
	}
	return false
}
