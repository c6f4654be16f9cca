//go:build linux

package http

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"path/filepath"
	"sort"
	"time"
	"unsafe"

	"github.com/cilium/ebpf/link"

	"github.com/bpfsnap/bpfsnap/capture/recorder"
)

// Where the cgroup_skb programs attach.
//
// They run for every segment of the sockets of the cgroup they are
// attached to and of its descendants, so the narrower the place the less
// of the node's traffic pays for them, even for the hook's own dispatch.
// A socket belongs to the cgroup of the task that created it; an accepted
// one to its listener's. So:
//   - a Kubernetes selector: the selected pods' cgroups (and pods selected
//     later);
//   - target processes (--pid, a command): their own cgroups, where the
//     sockets they create live, and the cgroups of the TCP sockets they hold,
//     for a listener created elsewhere and handed to them (systemd socket
//     activation, a supervisor). Checked again every rescanEvery, for a
//     target started or moved elsewhere, or a socket received, later;
//   - the whole host, or a target whose sockets live in the root cgroup:
//     the root.

// rescanEvery is how often a capture of target processes looks for
// cgroups its targets' sockets live in that the programs do not cover yet.
const rescanEvery = 2 * time.Second

// attachment is where the programs are attached: one set of links per
// cgroup path.
type attachment struct {
	path  string
	links []link.Link
}

// attachAt attaches the three programs to cgroup cg (a path below root).
func (h *httpProbe) attachAt(root, cg string) error {
	h.linkMu.Lock()
	defer h.linkMu.Unlock()
	return h.attachLocked(root, cg)
}

func (h *httpProbe) attachLocked(root, cg string) error {
	a := attachment{path: cg}
	for _, p := range h.progs {
		l, err := link.AttachCgroup(link.CgroupOptions{Path: filepath.Join(root, cg), Attach: p.attach, Program: p.prog})
		if err != nil {
			for _, l := range a.links {
				l.Close()
			}
			return err
		}
		a.links = append(a.links, l)
	}
	h.attached = append(h.attached, a)
	return nil
}

// detachAll closes every link.
func (h *httpProbe) detachAll() {
	h.linkMu.Lock()
	defer h.linkMu.Unlock()
	for _, a := range h.attached {
		for _, l := range a.links {
			l.Close()
		}
	}
	h.attached = nil
}

// covered reports whether the programs already run for the sockets of
// cgroup p: attached there or to an ancestor.
func covered(attached []attachment, p string) bool {
	for _, a := range attached {
		if recorder.UnderCgroup(p, a.path) {
			return true
		}
	}
	return false
}

// targetCgroups returns the cgroups a capture of target processes attaches
// to (outermost first, "/" when one of them is the root), and the sockets'
// cgroups among them that are not a target's own, for the details. It
// also hands the kernel the sockets' cgroups that differ from their
// target's (learnHanded).
func (h *httpProbe) targetCgroups() (paths, socketOnly []string, err error) {
	cgs := h.s.Cgroups()
	all := map[string]bool{}
	for _, pid := range h.s.TargetPIDs() {
		if p := cgs.Abs(recorder.ProcCgroupV2(h.s.ProcRoot(), pid)); p != "" {
			all[p] = true
		}
	}
	socks, err := h.targetSockets()
	if err != nil {
		return nil, nil, err
	}
	h.learnHanded(socks)
	for _, rec := range socks {
		p := cgs.Path(rec.Cgroup)
		if p == "" {
			return nil, nil, fmt.Errorf("a target's socket is in cgroup id %d, which is not below %s", rec.Cgroup, cgs.Root())
		}
		if !all[p] {
			socketOnly = append(socketOnly, p)
		}
		all[p] = true
	}
	for p := range all {
		paths = append(paths, p)
	}
	sort.Strings(socketOnly)
	return recorder.OutermostCgroups(paths), socketOnly, nil
}

// targetSockets runs the http_sock_cgroups iterator: the TCP sockets the
// targets hold, with their cgroups and their holders'.
func (h *httpProbe) targetSockets() ([]bpfSockCgroup, error) {
	it, err := link.AttachIter(link.IterOptions{Program: h.objs.HttpSockCgroups})
	if err != nil {
		return nil, fmt.Errorf("the socket cgroup iterator: %w", err)
	}
	defer it.Close()
	rd, err := it.Open()
	if err != nil {
		return nil, fmt.Errorf("the socket cgroup iterator: %w", err)
	}
	defer rd.Close()
	data, err := io.ReadAll(rd)
	if err != nil {
		return nil, fmt.Errorf("reading the socket cgroup iterator: %w", err)
	}
	out := make([]bpfSockCgroup, len(data)/int(unsafe.Sizeof(bpfSockCgroup{})))
	if _, err := binary.Decode(data, binary.NativeEndian, out); err != nil {
		return nil, fmt.Errorf("reading the socket cgroup iterator: %w", err)
	}
	return out, nil
}

// handedPair is a socket cgroup and the cgroup of a target holding one of
// its sockets: a send from the latter is the owner's (owner_sends in
// http.bpf.c; ownerSends here).
type handedPair struct{ sock, owner uint64 }

// learnHanded adds the pairs of socks whose socket and holder cgroups
// differ to the kernel's handed_cgroups and to h.handed. Pairs are never
// removed: a connection accepted from a handed listener may outlive it.
func (h *httpProbe) learnHanded(socks []bpfSockCgroup) {
	old := h.handed.Load()
	var next map[handedPair]bool
	for _, rec := range socks {
		p := handedPair{rec.Cgroup, rec.TaskCgroup}
		if p.sock == p.owner || p.owner == 0 || (old != nil && (*old)[p]) || next[p] {
			continue
		}
		if err := h.objs.HandedCgroups.Put(bpfHandedKey{SockCgroup: p.sock, OwnerCgroup: p.owner}, uint8(1)); err != nil {
			h.s.Warnf("http: sockets of cgroup id %d handed to a target in cgroup id %d: %v (their requests are not attributed)", p.sock, p.owner, err)
			continue
		}
		if next == nil {
			next = map[handedPair]bool{}
			if old != nil {
				for k := range *old {
					next[k] = true
				}
			}
		}
		next[p] = true
	}
	if next != nil {
		h.handed.Store(&next)
	}
}

// ownerSends is owner_sends of http.bpf.c: whether a record sent from a
// task of cgroup cur on a socket of cgroup sock comes from the socket's
// owner.
func (h *httpProbe) ownerSends(cur, sock uint64) bool {
	if cur == sock {
		return true
	}
	m := h.handed.Load()
	return m != nil && (*m)[handedPair{sock, cur}]
}

// placeTargets attaches the programs for a capture of target processes,
// and returns the hook's description for the details.
func (h *httpProbe) placeTargets(root string) (string, error) {
	paths, socketOnly, err := h.targetCgroups()
	if err != nil {
		// Not knowing where the targets' sockets live, the root is the
		// one place that surely covers them.
		h.s.Warnf("http: attaching on the cgroup root: %v", err)
		paths = []string{"/"}
	}
	if len(paths) == 0 {
		paths = []string{"/"} // no target left: nothing to narrow to
	}
	for _, p := range paths {
		if err := h.attachAt(root, p); err != nil {
			return "", err
		}
	}
	if len(paths) == 1 && paths[0] == "/" {
		return "cgroup_skb ingress+egress on " + root + " (a target runs, or holds sockets, in the root cgroup)", nil
	}
	h.rescanDone = make(chan struct{})
	h.rescanStopped = make(chan struct{})
	go h.rescanTargets(root)
	b, _ := json.Marshal(paths)
	desc := "cgroup_skb ingress+egress on the targets' cgroups " + string(b)
	if len(socketOnly) > 0 {
		so, _ := json.Marshal(socketOnly)
		desc += " (" + string(so) + " for sockets created there and handed to a target)"
	}
	return desc + ", checked again every " + rescanEvery.String(), nil
}

// rescanTargets attaches the programs where the targets' sockets have
// appeared since: a target forked or moved into another cgroup, or handed
// a socket created in one. Until found, that traffic is not seen; the
// warning says from when it is.
func (h *httpProbe) rescanTargets(root string) {
	defer close(h.rescanStopped)
	t := time.NewTicker(rescanEvery)
	defer t.Stop()
	for {
		select {
		case <-h.rescanDone:
			return
		case <-t.C:
		}
		paths, _, err := h.targetCgroups()
		if err != nil {
			continue // the start's attachment stays; try again
		}
		h.linkMu.Lock()
		for _, p := range paths {
			if covered(h.attached, p) {
				continue
			}
			if err := h.attachLocked(root, p); err != nil {
				h.s.Warnf("http: a target's sockets are now in cgroup %s, and attaching there failed: %v (its HTTP is not captured)", p, err)
				continue
			}
			h.s.Warnf("http: a target's sockets are now in cgroup %s too: captured there from %s on", p, time.Now().UTC().Format(time.RFC3339))
			// An attachment below the new one would run the programs
			// twice for its sockets.
			kept := h.attached[:0]
			for _, a := range h.attached {
				if a.path != p && recorder.UnderCgroup(a.path, p) {
					for _, l := range a.links {
						l.Close()
					}
					continue
				}
				kept = append(kept, a)
			}
			h.attached = kept
		}
		h.linkMu.Unlock()
	}
}

// stopRescan ends rescanTargets, if it runs.
func (h *httpProbe) stopRescan() {
	if h.rescanDone == nil {
		return
	}
	close(h.rescanDone)
	<-h.rescanStopped
	h.rescanDone = nil
}
