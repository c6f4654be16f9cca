package main

import (
	"runtime"

	"github.com/bpfsnap/bpfsnap/capture"
)

// A held child must exec from the main thread: the recorder's per-pid
// probes (uprobes of -p mem) are bound to the task that has the pid, and an
// exec from another thread of a multi-threaded process replaces that task
// (the exec'ing thread takes the pid over), leaving the probes bound to a
// task that is gone. Locking in init keeps the main goroutine, which
// runs RunHeldChild, on the main thread.
func init() {
	if capture.IsHeldChild() {
		runtime.LockOSThread()
	}
}

// runHeldChildIfAsked turns this process into the held child of
// `capture -- COMMAND` when the recorder started it as one.
func runHeldChildIfAsked() {
	if capture.IsHeldChild() {
		capture.RunHeldChild()
	}
}
