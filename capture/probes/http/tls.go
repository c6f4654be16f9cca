//go:build linux

package http

import (
	"debug/elf"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/cilium/ebpf/link"

	"github.com/bpfsnap/bpfsnap/capture/recorder"
	"github.com/bpfsnap/bpfsnap/formats"
	"github.com/bpfsnap/bpfsnap/internal/goprobe"
	"github.com/bpfsnap/bpfsnap/internal/symbolize"
)

// ---- TLS seen on the wire -------------------------------------------------------

// handleTLSWire takes the wire's TLS records: a socket carrying TLS seen
// from its owner (TLS_SEEN), and a TLS probe's connection tied to its
// socket (TLS_BIND).
func (h *httpProbe) handleTLSWire(ev *bpfRecHead) {
	switch ev.Kind {
	case kindTLSSeen:
		if _, ok := h.tlsSeen[ev.Cookie]; ok {
			break
		}
		if len(h.tlsSeen) < maxConnections {
			h.tlsSeen[ev.Cookie] = ev.CtxPid
		} else {
			// No room to wait for a bind: settled now, as if it closed
			// untied (a bind that comes later is not subtracted).
			h.tlsUntied[ev.CtxPid]++
		}
	case kindTLSBind:
		// Tied after all: decoded.
		delete(h.tlsSeen, ev.Cookie)
		c := h.conn(ev) // binds c (the record is flagged bound)
		if c.cookie != ev.Cookie {
			// The library's object now serves another connection (its
			// close was not seen).
			h.bind(c, ev)
		}
		h.learnOwner(c, ev)
	case kindTLSClose:
		// The library freed the connection: its object may be reused for
		// the next one.
		key := tlsKey{pid: ev.CtxPid, ptr: ev.ConnKey}
		if c := h.tlsConns[key]; c != nil {
			h.closeConn(c)
			delete(h.tlsConns, key)
		}
	}
}

// tlsClosed settles a released socket that carried TLS no probe tied to
// its connection: counted for its process at the end (endTLS), its entry
// gone now, so that the sockets waiting for a bind are only the open ones.
func (h *httpProbe) tlsClosed(cookie uint64) {
	if pid, ok := h.tlsSeen[cookie]; ok {
		delete(h.tlsSeen, cookie)
		h.tlsUntied[pid]++
	}
}

// closeConn ends a connection's state: requests queued without response,
// HTTP/2 streams still open, rows waiting for an address are written.
func (h *httpProbe) closeConn(c *httpConn) {
	for _, row := range c.pending {
		h.countFor(c, "no_response")
		h.emit(row, c)
	}
	c.pending = nil
	if c.h2 != nil {
		for _, x := range c.h2.Close() {
			h.h2Row(c, x)
		}
	}
	h.flushUnbound(c)
	h.forget(c)
}

// bind ties a TLS connection to its socket and writes the rows that
// waited for its addresses.
func (h *httpProbe) bind(c *httpConn, ev *bpfRecHead) {
	c.bound, c.cookie, c.cgroup = true, ev.Cookie, ev.SockCgroup
	c.local, c.remote = addrs(ev)
	for _, row := range c.unbound {
		h.write(row, c)
	}
	c.unbound = nil
}

// endTLS counts the sockets that carried TLS no probe decoded, per
// process. A socket of a process whose TLS library is probed, never
// written to in a TLS call, only had a handshake (or was idle): that is
// not a library bpfsnap misses.
func (h *httpProbe) endTLS() {
	for _, pid := range h.tlsSeen {
		h.tlsUntied[pid]++ // still open, never tied
	}
	h.tlsSeen = map[uint64]uint32{}
	undecoded := map[uint32]uint64{}
	for pid, n := range h.tlsUntied {
		if h.s.Filtered() && !h.s.IsTarget(pid) {
			continue
		}
		if h.tls != nil && h.tls.covers(pid) {
			h.counters["http.tls_idle"] += n
			continue
		}
		undecoded[pid] += n
		h.counters["http.tls_undecoded"] += n
	}
	if len(undecoded) == 0 {
		return
	}
	type entry struct {
		pid uint32
		n   uint64
	}
	var es []entry
	for pid, n := range undecoded {
		es = append(es, entry{pid, n})
	}
	sort.Slice(es, func(i, j int) bool { return es[i].n > es[j].n || es[i].n == es[j].n && es[i].pid < es[j].pid })
	var b strings.Builder
	for i, e := range es {
		if i == 20 {
			fmt.Fprintf(&b, " …")
			break
		}
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "pid %d: %d", e.pid, e.n)
	}
	recorder.MergeProbeDetails(h.s, "http", map[string]string{"tls_undecoded": b.String()})
}

// flushUnbound writes the rows of a TLS connection whose socket stayed
// unknown.
func (h *httpProbe) flushUnbound(c *httpConn) {
	if len(c.unbound) == 0 {
		return
	}
	h.countFor(c, "tls_unbound")
	for _, row := range c.unbound {
		h.write(row, c)
	}
	c.unbound = nil
}

// ---- Attaching the TLS and Go HTTP/2 uprobes ----------------------------------------

// tlsAttacher puts the uprobes on the TLS libraries (and Go HTTP/2 code)
// of the processes the capture is about. A targeted capture attaches per
// process (no other process on the node takes a trap); a whole-host
// capture attaches per file, once, for every process that maps it now or
// later. Processes are scanned at the start, after each fork or exec, and
// again a second and three seconds later (a library loaded with dlopen,
// as Python loads libssl, appears after the exec).
type tlsAttacher struct {
	h       *httpProbe
	s       *recorder.Session
	perPid  bool
	selfIno string // bpfsnap's own binary: never probed

	mu       sync.Mutex
	plans    map[string]*filePlan // dev:ino -> what it offers
	attached map[string]bool      // "pid/dev:ino" (pid 0: every process)
	pidLinks map[uint32][]link.Link
	links    []link.Link     // per-file links (whole host)
	named    map[uint32]bool // pids whose Go HTTP/2 code is probed for names
	tlsPids  map[uint32]bool // pids whose TLS library is probed
	queue    map[uint32]int  // pid -> scans left
	closer   recorder.LinkCloser
	errs     map[string]string // file -> why it was not probed
	// hostScan is how long the scan of every process took (whole host).
	hostScan time.Duration
	stopc    chan struct{}
	done     chan struct{}
}

// filePlan is where the probes go in one file.
type filePlan struct {
	path  string
	kind  string // "openssl", "go", "" (nothing to probe)
	enter link.UprobeMultiOptions
	ret   link.UprobeMultiOptions // OpenSSL: uretprobes; Go: uprobes at RET instructions
	names link.UprobeMultiOptions
	what  []string // for the details
}

// OpenSSL's functions probed (dynamic symbols of libssl, or of an
// executable that links OpenSSL in and exports them, as node does).
var opensslFuncs = []struct {
	name string
	fn   bpfTlsFn
	ret  bool
}{
	{"SSL_read", bpfTlsFnTLS_FN_SSL_READ, true},
	{"SSL_read_ex", bpfTlsFnTLS_FN_SSL_READ_EX, true},
	{"SSL_write", bpfTlsFnTLS_FN_SSL_WRITE, true},
	{"SSL_write_ex", bpfTlsFnTLS_FN_SSL_WRITE_EX, true},
	{"SSL_free", bpfTlsFnTLS_FN_SSL_FREE, false},
	// The descriptor a connection is given: its socket, before any byte.
	{"SSL_set_fd", bpfTlsFnTLS_FN_SSL_SET_FD, false},
}

func newTLSAttacher(h *httpProbe, details map[string]string) *tlsAttacher {
	a := &tlsAttacher{h: h, s: h.s, perPid: h.s.Filtered(), plans: map[string]*filePlan{}, attached: map[string]bool{},
		pidLinks: map[uint32][]link.Link{}, named: map[uint32]bool{}, tlsPids: map[uint32]bool{}, queue: map[uint32]int{}, errs: map[string]string{},
		stopc: make(chan struct{}), done: make(chan struct{})}
	if self, err := os.Executable(); err == nil {
		a.selfIno = fileKey(self)
	}
	mode := "per file (every process mapping it)"
	if a.perPid {
		mode = "per target process"
	}
	var what []string
	if h.tlsOn {
		what = append(what, "OpenSSL SSL_read/SSL_write(_ex)/SSL_free, Go crypto/tls (*Conn).Read/Write/Close")
	}
	if h.goH2 {
		what = append(what, "grpc-go operateHeaders/writeHeader, net/http and x/net processHeaders")
	}
	details["tls.uprobes"] = strings.Join(what, "; ") + ", attached " + mode
	return a
}

// start attaches to the processes there are now and follows new ones.
func (a *tlsAttacher) start() {
	if a.perPid {
		for _, pid := range a.s.TargetPIDs() {
			a.scan(pid)
		}
	} else {
		// The host's libssl gets the probes before any process maps it:
		// a program started later that loads it is decoded from its first
		// call.
		for _, p := range []string{"/usr/lib/x86_64-linux-gnu/libssl.so.3", "/lib/x86_64-linux-gnu/libssl.so.3",
			"/usr/lib64/libssl.so.3", "/usr/lib/x86_64-linux-gnu/libssl.so.1.1"} {
			if _, err := os.Stat(filepath.Join(a.s.HostRoot(), p)); err == nil {
				a.attachFile(0, filepath.Join(a.s.HostRoot(), p))
			}
		}
		// Every process of the host: in the background (each Go binary's
		// pclntab is read), so the capture starts at once.
		procs, _ := os.ReadDir(a.s.ProcRoot())
		a.mu.Lock()
		for _, p := range procs {
			if pid, err := strconv.ParseUint(p.Name(), 10, 32); err == nil {
				a.queue[uint32(pid)] = 1
			}
		}
		a.mu.Unlock()
	}
	a.s.OnProcess(func(ev formats.ProcessEvent) {
		switch ev.Kind {
		case formats.ProcessFork, formats.ProcessExec:
			if a.perPid && !a.s.IsTarget(ev.PID) {
				return
			}
			a.mu.Lock()
			a.queue[ev.PID] = 3
			a.mu.Unlock()
		case formats.ProcessExit:
			a.detach(ev.PID)
		}
	})
	go a.loop()
}

// loop scans queued processes: at once, then a second and three seconds
// later.
func (a *tlsAttacher) loop() {
	defer close(a.done)
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	n := 0
	for {
		select {
		case <-a.stopc:
			return
		case <-tick.C:
		}
		n++
		a.mu.Lock()
		var pids []uint32
		for pid, left := range a.queue {
			// Scans at the first tick, then at the 4th and 12th after (a
			// process of the host at the start: once, at the first tick).
			if left == 3 || (left == 2 && n%4 == 0) || (left == 1 && (n%12 == 0 || n == 1)) {
				pids = append(pids, pid)
				if left == 1 {
					delete(a.queue, pid)
				} else {
					a.queue[pid] = left - 1
				}
			}
		}
		a.mu.Unlock()
		t0 := time.Now()
		for _, pid := range pids {
			a.scan(pid)
		}
		if n == 1 && !a.perPid {
			a.mu.Lock()
			a.hostScan = time.Since(t0)
			a.mu.Unlock()
		}
	}
}

func (a *tlsAttacher) stop() {
	close(a.stopc)
	<-a.done
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, l := range a.links {
		l.Close()
	}
	a.links = nil
	for pid, ls := range a.pidLinks {
		a.closer.Close(ls)
		delete(a.pidLinks, pid)
	}
	if len(a.errs) > 0 {
		d := map[string]string{}
		for f, e := range a.errs {
			d["tls.not_probed."+f] = e
		}
		recorder.MergeProbeDetails(a.s, "http", d)
	}
	var files []string
	for _, p := range a.plans {
		if p.kind != "" {
			files = append(files, p.path+": "+strings.Join(p.what, ", "))
		}
	}
	sort.Strings(files)
	d := map[string]string{"tls.files": strings.Join(files, "; ")}
	if a.hostScan > 0 {
		d["tls.host_scan"] = a.hostScan.Round(time.Millisecond).String() + " (the processes running at the start, attached in the background)"
	}
	recorder.MergeProbeDetails(a.s, "http", d)
}

// wait returns once the per-process links are closed.
func (a *tlsAttacher) wait() { a.closer.Wait() }

// covers reports whether pid's TLS library is probed.
func (a *tlsAttacher) covers(pid uint32) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.tlsPids[pid]
}

// goNames reports whether pid runs a Go program whose HTTP/2 code is
// probed for names.
func (a *tlsAttacher) goNames(pid uint32) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.named[pid]
}

func (a *tlsAttacher) detach(pid uint32) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if ls := a.pidLinks[pid]; len(ls) > 0 {
		a.closer.Close(ls)
		delete(a.pidLinks, pid)
	}
	for k := range a.attached {
		if strings.HasPrefix(k, strconv.FormatUint(uint64(pid), 10)+"/") {
			delete(a.attached, k)
		}
	}
	delete(a.queue, pid)
}

// scan attaches to the files process pid maps that offer something to
// probe: its executable (Go, or with OpenSSL linked in) and its libssl.
func (a *tlsAttacher) scan(pid uint32) {
	root := filepath.Join(a.s.ProcRoot(), recorder.Itoa(pid), "root")
	f, err := os.Open(filepath.Join(a.s.ProcRoot(), recorder.Itoa(pid), "maps"))
	if err != nil {
		return
	}
	maps, _ := symbolize.ParseMaps(f)
	f.Close()
	seen := map[string]bool{}
	var named, tlsOn bool
	for i, m := range maps {
		if !m.Executable() || m.Path == "" || seen[m.Path] || strings.HasPrefix(m.Path, "[") {
			continue
		}
		seen[m.Path] = true
		base := filepath.Base(m.Path)
		// The executable is the first file mapped; libraries by name.
		if i > 0 && !strings.HasPrefix(base, "libssl.so") && !isFirstFile(maps, m.Path) {
			continue
		}
		p := a.attachFile(pid, filepath.Join(root, m.Path))
		if p != nil && p.kind == "go" && len(p.names.Addresses) > 0 {
			named = true
		}
		if p != nil && len(p.enter.Addresses) > 0 {
			tlsOn = true
		}
	}
	a.mu.Lock()
	a.named[pid] = a.named[pid] || named
	a.tlsPids[pid] = a.tlsPids[pid] || tlsOn
	a.mu.Unlock()
}

// isFirstFile reports whether path is the first file-backed mapping: the
// executable.
func isFirstFile(maps []symbolize.Mapping, path string) bool {
	for _, m := range maps {
		if m.Path != "" && !strings.HasPrefix(m.Path, "[") {
			return m.Path == path
		}
	}
	return false
}

// fileKey names a file by device and inode: the same library reached by
// two paths (/lib -> /usr/lib, a container's root) is probed once.
func fileKey(path string) string {
	st, err := os.Stat(path)
	if err != nil {
		return ""
	}
	sys, ok := st.Sys().(*syscall.Stat_t)
	if !ok {
		return ""
	}
	return fmt.Sprintf("%d:%d", sys.Dev, sys.Ino)
}

// attachFile attaches the probes path offers, for pid (0: every process
// that maps it, in a whole-host capture).
func (a *tlsAttacher) attachFile(pid uint32, path string) *filePlan {
	key := fileKey(path)
	if key == "" || key == a.selfIno {
		return nil
	}
	if !a.perPid {
		pid = 0
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	plan := a.plans[key]
	if plan == nil {
		var err error
		plan, err = a.plan(path)
		if err != nil {
			a.errs[filepath.Base(path)] = err.Error()
			plan = &filePlan{path: path}
		}
		a.plans[key] = plan
	}
	at := strconv.FormatUint(uint64(pid), 10) + "/" + key
	if plan.kind == "" || a.attached[at] {
		return plan
	}
	a.attached[at] = true
	ex, err := link.OpenExecutable(path)
	if err != nil {
		a.errs[filepath.Base(path)] = err.Error()
		return plan
	}
	var ls []link.Link
	attach := func(opts link.UprobeMultiOptions, ret bool, progName string) error {
		if len(opts.Addresses) == 0 {
			return nil
		}
		opts.PID = pid
		prog := a.h.objs.TlsEnter
		switch progName {
		case "ret":
			prog = a.h.objs.TlsRet
		case "names":
			prog = a.h.objs.GoH2Names
		}
		var l link.Link
		var err error
		if ret {
			l, err = ex.UretprobeMulti(nil, prog, &opts)
		} else {
			l, err = ex.UprobeMulti(nil, prog, &opts)
		}
		if err != nil {
			return fmt.Errorf("%s: %w", progName, err)
		}
		ls = append(ls, l)
		return nil
	}
	// Returns first: an entry without its return would leave a call in
	// progress behind.
	err = attach(plan.ret, plan.kind == "openssl", "ret")
	if err == nil {
		err = attach(plan.enter, false, "enter")
	}
	if err == nil {
		err = attach(plan.names, false, "names")
	}
	if err != nil {
		a.errs[filepath.Base(path)] = err.Error()
		for _, l := range ls {
			l.Close()
		}
		return plan
	}
	if pid == 0 {
		a.links = append(a.links, ls...)
	} else {
		a.pidLinks[pid] = append(a.pidLinks[pid], ls...)
	}
	return plan
}

// plan reads a file once: OpenSSL's exported functions, or a Go binary's
// crypto/tls and HTTP/2 functions.
func (a *tlsAttacher) plan(path string) (*filePlan, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	ef, err := elf.NewFile(f)
	if err != nil {
		return nil, err
	}
	p := &filePlan{path: path}
	if ef.Section(".gopclntab") != nil {
		b, err := goprobe.Open(f)
		if err != nil {
			return nil, err
		}
		a.planGo(p, b)
		return p, nil
	}
	if !a.h.tlsOn {
		return p, nil
	}
	syms, err := ef.DynamicSymbols()
	if err != nil {
		return p, nil // no dynamic symbols: nothing exported
	}
	addr := map[string]uint64{}
	for _, s := range syms {
		if elf.ST_TYPE(s.Info) == elf.STT_FUNC && s.Value != 0 && s.Section != elf.SHN_UNDEF {
			addr[s.Name] = s.Value
		}
	}
	if _, ok := addr["SSL_read"]; !ok {
		return p, nil
	}
	for _, fn := range opensslFuncs {
		v, ok := addr[fn.name]
		if !ok {
			continue
		}
		off, ok := goprobe.FileOffset(ef, v)
		if !ok {
			continue
		}
		p.enter.Addresses = append(p.enter.Addresses, off)
		p.enter.Cookies = append(p.enter.Cookies, uint64(fn.fn))
		if fn.ret {
			p.ret.Addresses = append(p.ret.Addresses, off)
			p.ret.Cookies = append(p.ret.Cookies, uint64(fn.fn))
		}
		p.what = append(p.what, fn.name)
	}
	p.kind = "openssl"
	return p, nil
}

// The Go functions probed. crypto/tls: Read's entry saves the buffer,
// uprobes on its RET instructions frame what it returned (uretprobes would
// break Go's moving stacks); Write is framed at its entry; Close ends the
// connection's state. Read and Write find the connection's socket (the
// handshake would find it earlier, but Go calls it from every Read and
// Write: a trap each for nothing). HTTP/2 names (entry only): the MetaHeadersFrame a
// server or client reads (net/http's bundled copy, x/net/http2, grpc-go),
// and grpc-go's loopyWriter.writeHeader (the fields it is about to encode).
var (
	goTLSFuncs = []struct {
		name string
		fn   bpfTlsFn
	}{
		{"crypto/tls.(*Conn).Read", bpfTlsFnTLS_FN_GO_READ},
		{"crypto/tls.(*Conn).Write", bpfTlsFnTLS_FN_GO_WRITE},
		{"crypto/tls.(*Conn).Close", bpfTlsFnTLS_FN_GO_CLOSE},
	}
	goH2Funcs = []struct {
		name   string
		cookie bpfGoH2Fn
	}{
		{"net/http.(*http2serverConn).processHeaders", bpfGoH2FnGO_H2META_RBX | bpfGoH2FnGO_H2INCOMING | bpfGoH2FnGO_H2SERVER},
		{"net/http.(*http2clientConnReadLoop).processHeaders", bpfGoH2FnGO_H2META_RBX | bpfGoH2FnGO_H2INCOMING},
		{"golang.org/x/net/http2.(*serverConn).processHeaders", bpfGoH2FnGO_H2META_RBX | bpfGoH2FnGO_H2INCOMING | bpfGoH2FnGO_H2SERVER},
		{"golang.org/x/net/http2.(*clientConnReadLoop).processHeaders", bpfGoH2FnGO_H2META_RBX | bpfGoH2FnGO_H2INCOMING},
		{grpcServerOperate, 0}, // register by grpc-go's version: see planGo
		{"google.golang.org/grpc/internal/transport.(*http2Client).operateHeaders", bpfGoH2FnGO_H2META_RBX | bpfGoH2FnGO_H2INCOMING},
		{"google.golang.org/grpc/internal/transport.(*loopyWriter).writeHeader", bpfGoH2FnGO_H2WRITE_HEADER},
	}
)

const grpcServerOperate = "google.golang.org/grpc/internal/transport.(*http2Server).operateHeaders"

func (a *tlsAttacher) planGo(p *filePlan, b *goprobe.Binary) {
	if a.h.tlsOn {
		for _, fn := range goTLSFuncs {
			f, ok := b.Func(fn.name)
			if !ok {
				continue
			}
			off, _, err := b.Entry(f)
			if err != nil {
				continue
			}
			if fn.fn == bpfTlsFnTLS_FN_GO_READ {
				rets, err := b.Returns(f)
				if err != nil {
					a.errs[filepath.Base(p.path)] = fmt.Sprintf("%s: %v", fn.name, err)
					continue
				}
				// A read already waiting when the probes are attached is
				// read from Read's spill slots at its RET, if Read stores
				// its arguments there first thing.
				cookie := uint64(bpfTlsFnTLS_FN_GO_READ_RET)
				if ok, _ := b.SpillsArgs(f, 2); ok {
					cookie |= uint64(bpfTlsFnTLS_FN_SPILLS)
				}
				for _, r := range rets {
					p.ret.Addresses = append(p.ret.Addresses, f.Offset+r)
					p.ret.Cookies = append(p.ret.Cookies, cookie)
				}
			}
			p.enter.Addresses = append(p.enter.Addresses, f.Offset+off)
			p.enter.Cookies = append(p.enter.Cookies, uint64(fn.fn))
			p.what = append(p.what, fn.name)
		}
	}
	if a.h.goH2 {
		for _, fn := range goH2Funcs {
			f, ok := b.Func(fn.name)
			if !ok {
				continue
			}
			cookie := fn.cookie
			if fn.name == grpcServerOperate {
				// grpc-go v1.60.0 added a context.Context before the frame
				// (two registers): the frame moved from RBX to RDI.
				cookie = bpfGoH2FnGO_H2META_RDI | bpfGoH2FnGO_H2INCOMING | bpfGoH2FnGO_H2SERVER
				if versionBefore(b.ModuleVersion("google.golang.org/grpc"), 1, 60) {
					cookie = bpfGoH2FnGO_H2META_RBX | bpfGoH2FnGO_H2INCOMING | bpfGoH2FnGO_H2SERVER
				}
			}
			off, _, err := b.Entry(f)
			if err != nil {
				continue
			}
			p.names.Addresses = append(p.names.Addresses, f.Offset+off)
			p.names.Cookies = append(p.names.Cookies, uint64(cookie))
			p.what = append(p.what, fn.name)
		}
	}
	if len(p.enter.Addresses)+len(p.names.Addresses) > 0 {
		p.kind = "go"
	}
}

// versionBefore reports whether module version v (vMAJOR.MINOR.PATCH...)
// is older than major.minor.
func versionBefore(v string, major, minor int) bool {
	parts := strings.SplitN(strings.TrimPrefix(v, "v"), ".", 3)
	if len(parts) < 2 {
		return false
	}
	ma, err1 := strconv.Atoi(parts[0])
	mi, err2 := strconv.Atoi(parts[1])
	if err1 != nil || err2 != nil {
		return false
	}
	return ma < major || ma == major && mi < minor
}
