//go:build linux

package recorder

import (
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"
)

// PerfLinks is a perf_event program attached to one software cpu-clock
// event per online CPU.
type PerfLinks struct {
	links []link.Link
	fds   []int
}

// AttachCPUClock opens the software cpu-clock event on every CPU at freq Hz
// and attaches prog to each through a bpf_link, so the kernel detaches it
// if the recorder dies.
func AttachCPUClock(prog *ebpf.Program, freq uint64) (*PerfLinks, error) {
	p := &PerfLinks{}
	cpus, err := OnlineCPUs()
	if err != nil {
		return nil, err
	}
	for _, cpu := range cpus {
		attr := unix.PerfEventAttr{
			Type:   unix.PERF_TYPE_SOFTWARE,
			Config: unix.PERF_COUNT_SW_CPU_CLOCK,
			Size:   uint32(unsafeSizeofPerfAttr),
			Sample: freq,
			Bits:   unix.PerfBitFreq,
		}
		fd, err := unix.PerfEventOpen(&attr, -1, cpu, -1, unix.PERF_FLAG_FD_CLOEXEC)
		if err != nil {
			p.Close()
			return nil, fmt.Errorf("perf_event_open(cpu-clock, cpu %d): %w", cpu, err)
		}
		p.fds = append(p.fds, fd)
		l, err := link.AttachRawLink(link.RawLinkOptions{Target: fd, Program: prog, Attach: ebpf.AttachPerfEvent})
		if err != nil {
			p.Close()
			return nil, fmt.Errorf("attaching perf_event program on cpu %d: %w", cpu, err)
		}
		p.links = append(p.links, l)
	}
	return p, nil
}

// Close detaches every link and closes the events.
func (p *PerfLinks) Close() {
	if p == nil {
		return
	}
	for _, l := range p.links {
		l.Close()
	}
	for _, fd := range p.fds {
		unix.Close(fd)
	}
	p.links, p.fds = nil, nil
}

const unsafeSizeofPerfAttr = unix.PERF_ATTR_SIZE_VER5

// OnlineCPUs parses /sys/devices/system/cpu/online ("0-3,5"); affinity masks
// (runtime.NumCPU) would miss CPUs the recorder itself may not run on.
func OnlineCPUs() ([]int, error) {
	data, err := os.ReadFile("/sys/devices/system/cpu/online")
	if err != nil {
		return nil, fmt.Errorf("listing online CPUs: %w", err)
	}
	var cpus []int
	for _, part := range strings.Split(strings.TrimSpace(string(data)), ",") {
		lo, hi, isRange := strings.Cut(part, "-")
		a, err1 := strconv.Atoi(lo)
		b := a
		var err2 error
		if isRange {
			b, err2 = strconv.Atoi(hi)
		}
		if err1 != nil || err2 != nil || b < a {
			return nil, fmt.Errorf("parsing online CPUs %q", data)
		}
		for c := a; c <= b; c++ {
			cpus = append(cpus, c)
		}
	}
	return cpus, nil
}
