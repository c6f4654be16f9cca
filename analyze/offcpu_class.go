package analyze

import (
	"strings"

	"github.com/bpfsnap/bpfsnap/formats"
)

// Wait classes of off-CPU time. The kernel records facts with each
// interval (task state, in_iowait, the syscall, preemption); the class is
// decided here, from those and the names of the kernel frames the thread
// left the CPU from (only a symbolized stack says "futex" or "fsync"), so
// the rules are pure Go, tested on fixtures, and improve on old archives.
const (
	WaitLock      = "lock"       // futex (pthread mutexes, condition variables, Java monitors), kernel mutexes and rwsems
	WaitDisk      = "disk"       // io_schedule, page cache and block I/O, fsync
	WaitNetwork   = "network"    // sockets, and epoll/poll/select (an event loop waits on its connections)
	WaitSleep     = "sleep"      // nanosleep and kernel timeouts
	WaitPageFault = "page_fault" // blocked inside a page fault (swap-in, a file-backed page read)
	WaitIdle      = "idle"       // a runtime's scheduler parked the thread: it had nothing to run (Go's stopm)
	WaitPreempted = "preempted"  // runnable all along: CPU contention, run-queue wait only
	WaitNewThread = "new_thread" // a new thread waiting for its first CPU
	WaitOther     = "other"
)

// WaitClasses lists the classes in the order reports show them.
var WaitClasses = []string{WaitLock, WaitDisk, WaitNetwork, WaitSleep, WaitPageFault, WaitIdle, WaitPreempted, WaitNewThread, WaitOther}

// Kernel functions that name a wait, matched on the name without a
// compiler suffix (".constprop.0"). Checked in the order of waitRules:
// a page fault that reads the disk is a page fault, a socket wait with a
// timeout is network, not sleep.
var waitRules = []struct {
	class string
	exact []string
	pre   []string
}{
	{WaitPageFault, []string{"exc_page_fault", "asm_exc_page_fault", "do_user_addr_fault", "handle_mm_fault", "__handle_mm_fault", "do_swap_page"}, nil},
	{WaitDisk, []string{"vfs_fsync", "vfs_fsync_range", "do_fsync", "ext4_sync_file", "xfs_file_fsync", "btrfs_sync_file", "blkdev_fsync",
		"file_write_and_wait_range", "submit_bio_wait", "iomap_dio_rw", "__iomap_dio_rw", "__blockdev_direct_IO", "do_sync_read", "sync_file_range"},
		[]string{"io_schedule", "folio_wait", "__folio_lock", "wait_on_page", "__lock_page", "__wait_on_buffer", "jbd2_", "filemap_fdatawait", "__filemap_fdatawait", "blk_mq_", "bio_wait"}},
	{WaitLock, []string{"futex_wait", "__futex_wait", "futex_wait_queue", "futex_wait_multiple", "futex_lock_pi", "__mutex_lock", "mutex_lock",
		"mutex_lock_interruptible", "mutex_lock_killable", "down_read", "down_write", "down_read_killable", "down_write_killable", "__down", "percpu_rwsem_wait"},
		[]string{"rwsem_down_", "__mutex_lock", "rt_mutex", "__rt_mutex", "__down_"}},
	{WaitNetwork, []string{"sk_wait_data", "sk_stream_wait_memory", "sk_stream_wait_connect", "inet_csk_accept", "inet_csk_wait_for_connect",
		"tcp_recvmsg", "tcp_recvmsg_locked", "tcp_sendmsg", "tcp_sendmsg_locked", "udp_recvmsg", "udpv6_recvmsg", "unix_stream_read_generic", "unix_stream_data_wait",
		"unix_dgram_recvmsg", "unix_wait_for_peer", "__skb_wait_for_more_packets", "__skb_recv_datagram", "skb_recv_datagram", "__inet_stream_connect",
		"ep_poll", "do_epoll_wait", "do_sys_poll", "do_poll", "do_select", "core_sys_select"}, []string{"sk_wait_"}},
	{WaitSleep, []string{"do_nanosleep", "hrtimer_nanosleep", "common_nsleep", "__x64_sys_nanosleep", "__x64_sys_clock_nanosleep", "schedule_timeout",
		"msleep", "msleep_interruptible", "usleep_range_state", "__x64_sys_pause", "do_sigtimedwait", "schedule_hrtimeout_range", "schedule_hrtimeout_range_clock"}, nil},
}

// runtimeIdle are user functions of language runtimes whose scheduler
// parks an OS thread that has nothing to run: the request's goroutine
// waits elsewhere (a channel, a timer, the network poller), which blocks
// no thread.
var runtimeIdle = []string{"runtime.stopm", "runtime.findRunnable", "runtime.findrunnable", "runtime.stoplockedm", "runtime.templateThread"}

// syscallClasses classify by the system call (x86-64 numbers) when the
// kernel stack names nothing: read and write are left out, as they wait
// on anything.
var syscallClasses = map[int32]string{
	202: WaitLock, 449: WaitLock, // futex, futex_waitv
	35: WaitSleep, 230: WaitSleep, 34: WaitSleep, // nanosleep, clock_nanosleep, pause
	74: WaitDisk, 75: WaitDisk, 162: WaitDisk, 306: WaitDisk, 277: WaitDisk, 26: WaitDisk, // fsync, fdatasync, sync, syncfs, sync_file_range, msync
	43: WaitNetwork, 288: WaitNetwork, 42: WaitNetwork, 45: WaitNetwork, 47: WaitNetwork, 299: WaitNetwork, // accept, accept4, connect, recvfrom, recvmsg, recvmmsg
	44: WaitNetwork, 46: WaitNetwork, 307: WaitNetwork, // sendto, sendmsg, sendmmsg
	232: WaitNetwork, 281: WaitNetwork, 441: WaitNetwork, 7: WaitNetwork, 271: WaitNetwork, 23: WaitNetwork, 270: WaitNetwork, // epoll_wait, epoll_pwait, epoll_pwait2, poll, ppoll, select, pselect6
}

// stackClass is what a stack alone says about a wait ("" when nothing).
func stackClass(frames []*formats.Frame) string {
	for _, f := range frames {
		if !f.Kernel {
			if matchesAny(f.Function, runtimeIdle) {
				return WaitIdle
			}
		}
	}
	for _, r := range waitRules {
		for _, f := range frames {
			if !f.Kernel || f.Function == "" {
				continue
			}
			name := f.Function
			if i := strings.IndexByte(name, '.'); i > 0 {
				name = name[:i]
			}
			if matchesAny(name, r.exact) {
				return r.class
			}
			for _, p := range r.pre {
				if strings.HasPrefix(name, p) {
					return r.class
				}
			}
		}
	}
	return ""
}

func matchesAny(name string, list []string) bool {
	for _, n := range list {
		if name == n {
			return true
		}
	}
	return false
}

// waitClass decides an interval's class from the recorded facts and its
// stack's class (stackClass). amd64 tells whether syscall numbers are
// x86-64's (the archive's arch).
func waitClass(r *formats.OffCPUInterval, fromStack string, amd64 bool) string {
	switch {
	case r.Preempted:
		return WaitPreempted
	case r.NewThread:
		return WaitNewThread
	case fromStack == WaitPageFault || fromStack == WaitIdle:
		return fromStack
	case r.IOWait:
		return WaitDisk
	case fromStack != "":
		return fromStack
	}
	if amd64 {
		if c := syscallClasses[r.Syscall]; c != "" {
			return c
		}
	}
	return WaitOther
}
