//go:build linux

package recorder

import (
	"sync"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
)

// EmptyProgram is a program that does nothing but return ret, for the
// hidden --mem-floor and --http-floor flags: what the hooks alone cost
// where bpfsnap attaches, the floor its own programs are measured against.
func EmptyProgram(typ ebpf.ProgramType, attach ebpf.AttachType, ret int32) (*ebpf.Program, error) {
	return ebpf.NewProgram(&ebpf.ProgramSpec{
		Name: "bpfsnap_floor", Type: typ, AttachType: attach, License: "GPL",
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, ret), asm.Return()},
	})
}

// LinkCloser closes links in the background, so the caller never waits
// for the kernel. Closing a uprobe waits for an RCU grace period (~100 ms
// here), and one goroutine closing 30 exited children's probes in turn
// took 100 s; concurrent closes share grace periods, so a pool of them
// closes hundreds per second. The zero value is ready to use.
type LinkCloser struct {
	mu      sync.Mutex
	queue   []link.Link
	workers int
	idle    sync.Cond
}

const linkClosers = 64

// Close queues links to be closed in the background.
func (c *LinkCloser) Close(ls []link.Link) {
	if len(ls) == 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.queue = append(c.queue, ls...)
	for c.workers < linkClosers && c.workers < len(c.queue) {
		c.workers++
		go c.run()
	}
}

func (c *LinkCloser) run() {
	c.mu.Lock()
	for len(c.queue) > 0 {
		l := c.queue[0]
		c.queue = c.queue[1:]
		c.mu.Unlock()
		l.Close()
		c.mu.Lock()
	}
	c.workers--
	if c.workers == 0 && c.idle.L != nil {
		c.idle.Broadcast()
	}
	c.mu.Unlock()
}

// Wait returns once every queued link is closed.
func (c *LinkCloser) Wait() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.idle.L == nil {
		c.idle.L = &c.mu
	}
	for c.workers > 0 {
		c.idle.Wait()
	}
}
