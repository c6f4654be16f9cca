package analyze

import (
	"testing"

	"github.com/bpfsnap/bpfsnap/formats"
)

// Kernel stacks seen at sched_switch on this project's kernel (leaf first,
// the probe's frames and __schedule already off), and the class each is.
func TestStackClass(t *testing.T) {
	k := func(names ...string) []*formats.Frame {
		var out []*formats.Frame
		for _, n := range names {
			out = append(out, &formats.Frame{Kernel: true, Function: n})
		}
		return out
	}
	withUser := func(fr []*formats.Frame, names ...string) []*formats.Frame {
		for _, n := range names {
			fr = append(fr, &formats.Frame{Function: n})
		}
		return fr
	}
	cases := []struct {
		frames []*formats.Frame
		want   string
	}{
		{k("schedule", "futex_do_wait", "__futex_wait", "futex_wait", "do_futex", "__x64_sys_futex"), WaitLock},
		{k("schedule", "io_schedule", "folio_wait_bit", "folio_wait_writeback", "__filemap_fdatawait_range", "file_write_and_wait_range", "ext4_fsync_nojournal.constprop.0", "ext4_sync_file", "do_fsync"), WaitDisk},
		{k("schedule", "schedule_timeout", "wait_woken", "sk_wait_data", "tcp_recvmsg_locked", "tcp_recvmsg"), WaitNetwork},
		{k("schedule", "schedule_hrtimeout_range_clock", "do_epoll_wait", "__x64_sys_epoll_wait"), WaitNetwork},
		{k("schedule", "schedule_timeout", "inet_csk_accept", "do_accept"), WaitNetwork},
		{k("schedule", "do_nanosleep", "hrtimer_nanosleep", "common_nsleep"), WaitSleep},
		{k("schedule", "io_schedule", "folio_wait_bit_common", "filemap_fault", "__do_fault", "handle_mm_fault", "do_user_addr_fault", "exc_page_fault"), WaitPageFault},
		{k("schedule", "rwsem_down_write_slowpath", "down_write", "do_truncate"), WaitLock},
		{k("schedule", "anon_pipe_read", "vfs_read"), ""},
		// A Go thread parked by the runtime's scheduler: idle, although
		// it waits in a futex.
		{withUser(k("schedule", "futex_do_wait", "futex_wait"), "runtime.futex", "runtime.futexsleep", "runtime.notesleep", "runtime.stopm", "runtime.findRunnable"), WaitIdle},
	}
	for _, c := range cases {
		if got := stackClass(c.frames); got != c.want {
			var names []string
			for _, f := range c.frames {
				names = append(names, f.Function)
			}
			t.Errorf("stackClass(%v) = %q, want %q", names, got, c.want)
		}
	}
}

// The recorded facts come before the stack, and the syscall number is the
// last resort.
func TestWaitClass(t *testing.T) {
	cases := []struct {
		row       formats.OffCPUInterval
		fromStack string
		amd64     bool
		want      string
	}{
		{formats.OffCPUInterval{Preempted: true}, WaitLock, true, WaitPreempted},
		{formats.OffCPUInterval{NewThread: true}, "", true, WaitNewThread},
		{formats.OffCPUInterval{IOWait: true}, WaitLock, true, WaitDisk},
		{formats.OffCPUInterval{IOWait: true}, WaitPageFault, true, WaitPageFault},
		{formats.OffCPUInterval{Syscall: 202}, "", true, WaitLock},
		{formats.OffCPUInterval{Syscall: 74}, "", true, WaitDisk},
		{formats.OffCPUInterval{Syscall: 202}, "", false, WaitOther}, // not x86-64's numbers
		{formats.OffCPUInterval{Syscall: 0}, "", true, WaitOther},    // read: could be anything
		{formats.OffCPUInterval{Syscall: 202}, WaitIdle, true, WaitIdle},
	}
	for _, c := range cases {
		if got := waitClass(&c.row, c.fromStack, c.amd64); got != c.want {
			t.Errorf("waitClass(%+v, %q, amd64=%v) = %q, want %q", c.row, c.fromStack, c.amd64, got, c.want)
		}
	}
}

// A row of one interval is blocked first, then queued; a summed row is
// spread evenly over its span.
func TestOffRowClip(t *testing.T) {
	exact := offRow{start: 100, end: 200, blocked: 80, runq: 20, count: 1}
	summed := offRow{start: 100, end: 200, blocked: 30, runq: 10, count: 5}
	cases := []struct {
		r        offRow
		lo, hi   uint64
		bl, runq float64
	}{
		{exact, 0, 1000, 80, 20},
		{exact, 150, 190, 30, 10},
		{exact, 185, 195, 0, 10},
		{exact, 200, 300, 0, 0},
		{summed, 150, 200, 15, 5},
		{summed, 0, 125, 7.5, 2.5},
		{offRow{start: 50, end: 50, blocked: 0, runq: 0, count: 1}, 0, 100, 0, 0},
	}
	for _, c := range cases {
		bl, rq := c.r.clip(c.lo, c.hi)
		if bl != c.bl || rq != c.runq {
			t.Errorf("%+v clipped to [%d,%d) = %v, %v; want %v, %v", c.r, c.lo, c.hi, bl, rq, c.bl, c.runq)
		}
	}
}
