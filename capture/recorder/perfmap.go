//go:build linux

package recorder

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/bpfsnap/bpfsnap/formats"
	"github.com/bpfsnap/bpfsnap/internal/symbolize"
)

// Perf maps: runtimes that generate code (V8, HotSpot, CPython 3.12+'s
// -X perf trampolines, .NET) can name it in /tmp/perf-PID.map or a jitdump
// file, PID being the process's pid in its own pid namespace, the file in
// its own /tmp. Frames in anonymous executable memory are noted per
// process as stacks are recorded. The maps of those processes are opened
// through their root when first noted and again when they exit, and the
// descriptors held: a container's /tmp (often a tmpfs) goes away with its
// last process, before the recorder hears of the exit, but an open file
// stays readable. At the end of the window the maps of live processes are
// read afresh (a JVM asked for its map rewrote it), the others through
// what was held, and the symbols naming a recorded frame go to the
// jit_symbols table, so analysis names the frames offline.

const (
	// maxJITProcs bounds the processes whose JIT frames are followed;
	// maxJITAddrs the distinct JIT frame addresses kept per process.
	maxJITProcs = 4096
	maxJITAddrs = 1 << 18
	// maxJITRoots bounds the root directories held open (one per
	// container root, usually a handful); maxJITHeldFiles the map files
	// held open until the end.
	maxJITRoots     = 256
	maxJITHeldFiles = 512
	// maxJITIDs bounds the namespace ids kept of live processes (the
	// kernel's target map holds as many).
	maxJITIDs = 65536
	// maxJITMapBytes bounds what is read of one map file.
	maxJITMapBytes = 1 << 30
	// jvmAttachTimeout bounds the wait for a JVM to answer
	// --perf-map-request; jvmRequestBudget the whole request phase.
	jvmAttachTimeout = 5 * time.Second
	jvmRequestBudget = 20 * time.Second
)

// jitDumpName matches the file a runtime writing jitdump maps into itself
// (perf finds it the same way): jit-PID.dump.
var jitDumpName = regexp.MustCompile(`^jit-[0-9]+\.dump$`)

// jitMaps follows the JIT code of the processes a StackRecorder sees.
type jitMaps struct {
	s       *Session
	request bool // --perf-map-request

	mu      sync.Mutex
	procs   map[uint32]*jitProc
	roots   map[[2]uint64]*os.File // (dev, inode) of a root directory -> O_PATH fd
	ids     map[uint32]procIDs     // from process rows: namespace pid, mount namespace
	held    int                    // map files held open
	retired []*jitProc             // lives that ended (exec, pid reuse), read at the end
	hostMnt uint64
	dropped uint64              // processes or addresses over the bounds
	final   []formats.JITSymbol // the rows, once finish has read the maps
	ended   bool
	table   *formats.TableWriter[formats.JITSymbol]
}

type procIDs struct {
	nspid uint32
	mntns uint64
}

// jitProc is one process life with frames in JIT code.
type jitProc struct {
	pid      uint32
	nspid    uint32
	uids     []uint32 // real and effective uid: who may own its maps
	root     *os.File // its root directory (shared), nil if unreachable
	runtime  string
	addrs    map[uint64]struct{}
	jitdumps []string  // jitdump files it mapped, as it sees them
	seenMaps time.Time // the procState version its jitdumps were read from
	// files holds its maps by path (as it sees them), opened while it
	// lived.
	files  map[string]*os.File
	exited bool
}

func newJITMaps(s *Session) *jitMaps {
	j := &jitMaps{s: s, request: s.opts.PerfMapRequest, procs: map[uint32]*jitProc{},
		roots: map[[2]uint64]*os.File{}, ids: map[uint32]procIDs{}}
	j.hostMnt = nsInode(filepath.Join(s.procRoot, "1", "ns", "mnt"))
	j.table = formats.NewTable[formats.JITSymbol](s.writer, formats.TableJITSymbols)
	if j.request {
		s.writer.UpdateManifest(func(m *formats.Manifest) { m.Options["perf_map_request"] = "true" })
	}
	s.OnProcess(j.processEvent)
	s.AtEnd(j.finish)
	return j
}

// processEvent keeps the namespace ids of every process (a process that
// exits before its first JIT frame is handled still has its map found),
// and opens the maps of a JIT process when its life ends.
func (j *jitMaps) processEvent(ev formats.ProcessEvent) {
	j.mu.Lock()
	defer j.mu.Unlock()
	jp := j.procs[ev.PID]
	switch ev.Kind {
	case formats.ProcessExit:
		if jp != nil {
			j.holdMaps(jp) // DumpPerfMapAtExit wrote it just now
			jp.exited = true
		}
		delete(j.ids, ev.PID)
		return
	case formats.ProcessExec, formats.ProcessFork:
		if jp != nil {
			// A new program (or a reused pid): the old life's maps are
			// final; they are held and read at the end (not here, on the
			// process reader: a map can be large).
			j.holdMaps(jp)
			jp.exited = true
			j.retired = append(j.retired, jp)
			delete(j.procs, ev.PID)
		}
	}
	if _, known := j.ids[ev.PID]; known || len(j.ids) < maxJITIDs {
		j.ids[ev.PID] = procIDs{nspid: ev.NSPid, mntns: ev.MntNS}
	}
}

// frame notes a frame in anonymous executable memory of pid (snapshot p)
// and returns the module its frame row gets: "[jit]" or "[jit:RUNTIME]".
// The caller holds the StackRecorder's lock.
func (j *jitMaps) frame(pid uint32, p *procState, ip uint64) string {
	j.mu.Lock()
	defer j.mu.Unlock()
	jp := j.procs[pid]
	if jp == nil {
		if len(j.procs)+len(j.retired) >= maxJITProcs {
			j.dropped++
			return formats.JITModule(runtimeOf(p.maps))
		}
		jp = j.newProc(pid)
		j.procs[pid] = jp
		defer j.holdMaps(jp)
	}
	if !jp.seenMaps.Equal(p.refreshed) {
		jp.seenMaps = p.refreshed
		if rt := runtimeOf(p.maps); rt != "" {
			jp.runtime = rt
		}
		for _, m := range p.maps {
			if jitDumpName.MatchString(path.Base(m.Path)) && !contains(jp.jitdumps, m.Path) && len(jp.jitdumps) < 4 {
				jp.jitdumps = append(jp.jitdumps, m.Path)
			}
		}
	}
	if _, ok := jp.addrs[ip]; !ok {
		if len(jp.addrs) < maxJITAddrs {
			jp.addrs[ip] = struct{}{}
		} else {
			j.dropped++
		}
	}
	return formats.JITModule(jp.runtime)
}

// newProc starts following pid: its namespace pid, uids and root.
func (j *jitMaps) newProc(pid uint32) *jitProc {
	jp := &jitProc{pid: pid, addrs: map[uint64]struct{}{}, files: map[string]*os.File{}}
	dir := filepath.Join(j.s.procRoot, Itoa(pid))
	if data, err := os.ReadFile(filepath.Join(dir, "status")); err == nil {
		jp.nspid, jp.uids = parseStatusIDs(string(data))
	}
	if jp.nspid == 0 {
		jp.nspid = j.ids[pid].nspid
	}
	jp.root = j.openRoot(filepath.Join(dir, "root"))
	return jp
}

// parseStatusIDs reads the innermost NSpid and the real and effective
// uids from /proc/PID/status.
func parseStatusIDs(status string) (nspid uint32, uids []uint32) {
	for _, l := range strings.Split(status, "\n") {
		key, rest, ok := strings.Cut(l, ":")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		switch key {
		case "NSpid":
			if len(f) > 0 {
				v, _ := strconv.ParseUint(f[len(f)-1], 10, 32)
				nspid = uint32(v)
			}
		case "Uid":
			for i := 0; i < 2 && i < len(f); i++ {
				if v, err := strconv.ParseUint(f[i], 10, 32); err == nil {
					uids = append(uids, uint32(v))
				}
			}
		}
	}
	return nspid, uids
}

// openRoot opens a process's root directory (O_PATH), shared between the
// processes of one container. The caller holds j.mu.
func (j *jitMaps) openRoot(p string) *os.File {
	fd, err := unix.Open(p, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return nil
	}
	key := [2]uint64{uint64(st.Dev), st.Ino}
	if f := j.roots[key]; f != nil {
		unix.Close(fd)
		return f
	}
	if len(j.roots) >= maxJITRoots {
		unix.Close(fd)
		return nil
	}
	f := os.NewFile(uintptr(fd), p)
	j.roots[key] = f
	return f
}

// runtimeOf names the runtime whose code a process's executable mappings
// show ("" when none is recognized).
func runtimeOf(maps []symbolize.Mapping) string {
	found := ""
	rank := map[string]int{formats.RuntimeJava: 4, formats.RuntimeDotnet: 3, formats.RuntimeNode: 2, formats.RuntimePython: 1}
	for _, m := range maps {
		rt := runtimeOfFile(path.Base(m.Path))
		if rank[rt] > rank[found] {
			found = rt
		}
	}
	return found
}

func runtimeOfFile(base string) string {
	switch {
	case strings.HasPrefix(base, "libjvm.so"):
		return formats.RuntimeJava
	case strings.HasPrefix(base, "libcoreclr.so"), strings.HasPrefix(base, "libclrjit.so"):
		return formats.RuntimeDotnet
	case base == "node", base == "nodejs", strings.HasPrefix(base, "libnode.so"):
		return formats.RuntimeNode
	case strings.HasPrefix(base, "libpython3"), base == "python", strings.HasPrefix(base, "python3"):
		return formats.RuntimePython
	}
	return ""
}

// isJITFile reports whether a file-backed mapping holds generated code:
// .NET maps its JIT code twice through a memfd (write and execute views).
func isJITFile(p string) bool { return strings.HasPrefix(p, "/memfd:") }

// mapPaths are the files that may name a process's JIT code, as it sees
// them.
func (jp *jitProc) mapPaths() []string {
	var out []string
	if jp.nspid != 0 {
		out = append(out, fmt.Sprintf("/tmp/perf-%d.map", jp.nspid))
	}
	return append(out, jp.jitdumps...)
}

// holdMaps opens the maps a process has now and keeps them open, so
// they can be read at the end even if its container's files are gone by
// then; a map reopened replaces the one held (a runtime may have rewritten
// it). The caller holds j.mu.
func (j *jitMaps) holdMaps(jp *jitProc) {
	if jp.exited {
		return
	}
	for _, p := range jp.mapPaths() {
		old := jp.files[p]
		if old == nil && j.held >= maxJITHeldFiles {
			return
		}
		f, err := j.open(jp, p)
		if err != nil {
			continue
		}
		if old != nil {
			old.Close()
			j.held--
		}
		jp.files[p] = f
		j.held++
	}
}

// errNotOwned refuses a map another user could have planted in a shared
// /tmp to name a process's code.
var errNotOwned = errors.New("not owned by the process's user or root")

// open opens one of a process's map files inside its root: symbolic links
// are resolved as the process would (an absolute link stays in its root),
// and only a regular file owned by the process's user or root is read.
func (j *jitMaps) open(jp *jitProc, p string) (*os.File, error) {
	var f *os.File
	var err error
	root := jp.root
	if root == nil && !jp.exited {
		root = j.openRoot(filepath.Join(j.s.procRoot, Itoa(jp.pid), "root"))
		jp.root = root
	}
	switch {
	case root != nil:
		var fd int
		fd, err = unix.Openat2(int(root.Fd()), strings.TrimPrefix(p, "/"), &unix.OpenHow{
			Flags:   unix.O_RDONLY | unix.O_NONBLOCK | unix.O_CLOEXEC | unix.O_NOCTTY,
			Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS,
		})
		if err == nil {
			f = os.NewFile(uintptr(fd), p)
		}
	case j.ids[jp.pid].mntns != 0 && j.ids[jp.pid].mntns == j.hostMnt:
		// Gone before its root could be opened, but it shared the
		// host's mount namespace.
		f, err = os.OpenFile(joinRoot(j.s.opts.HostRoot, p), os.O_RDONLY|syscall.O_NONBLOCK|syscall.O_NOFOLLOW, 0)
	default:
		return nil, os.ErrNotExist
	}
	if err != nil {
		return nil, err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	sys, _ := st.Sys().(*syscall.Stat_t)
	if !st.Mode().IsRegular() || sys == nil {
		f.Close()
		return nil, fmt.Errorf("%s is not a regular file", p)
	}
	if sys.Uid != 0 && len(jp.uids) > 0 && !containsU32(jp.uids, sys.Uid) {
		f.Close()
		return nil, fmt.Errorf("%s (uid %d): %w", p, sys.Uid, errNotOwned)
	}
	return f, nil
}

func containsU32(list []uint32, v uint32) bool {
	for _, x := range list {
		if x == v {
			return true
		}
	}
	return false
}

// rows reads a process's maps and returns the symbols naming its recorded
// frames: a live process's as they are now, an exited one's through what
// was held. The caller holds j.mu.
func (j *jitMaps) rows(jp *jitProc) []formats.JITSymbol {
	if len(jp.addrs) == 0 {
		return nil
	}
	addrs := make([]uint64, 0, len(jp.addrs))
	for a := range jp.addrs {
		addrs = append(addrs, a)
	}
	var out []formats.JITSymbol
	for _, p := range jp.mapPaths() {
		f := jp.files[p]
		if !jp.exited {
			fresh, err := j.open(jp, p)
			switch {
			case err == nil:
				defer fresh.Close()
				f = fresh
			case errors.Is(err, errNotOwned):
				j.s.Warnf("JIT symbols of pid %d: %v", jp.pid, err)
			}
		}
		if f == nil {
			continue
		}
		namer := symbolize.NewJITNamer(addrs)
		var err error
		r := io.NewSectionReader(f, 0, maxJITMapBytes)
		if strings.HasSuffix(p, ".map") {
			_, err = symbolize.ParsePerfMap(r, maxJITMapBytes, namer.Add)
		} else {
			err = symbolize.ParseJITDump(r, maxJITMapBytes, namer.Add)
		}
		if err != nil {
			j.s.Warnf("JIT symbols of pid %d: %s: %v", jp.pid, p, err)
		}
		for _, s := range namer.Symbols() {
			out = append(out, formats.JITSymbol{PID: jp.pid, Start: s.Start, Size: s.Size, Name: s.Name, Source: p})
		}
	}
	return out
}

// release closes what a process life held. The caller holds j.mu.
func (j *jitMaps) release(jp *jitProc) {
	for p, f := range jp.files {
		f.Close()
		j.held--
		delete(jp.files, p)
	}
}

// Rows returns the jit_symbols rows of every process followed so far,
// reading the maps of live processes now (a flight recorder's dump).
func (j *jitMaps) Rows() []formats.JITSymbol {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.ended {
		return j.final
	}
	var out []formats.JITSymbol
	for _, jp := range j.retired {
		out = append(out, j.rows(jp)...)
	}
	pids := make([]uint32, 0, len(j.procs))
	for pid := range j.procs {
		pids = append(pids, pid)
	}
	sort.Slice(pids, func(a, b int) bool { return pids[a] < pids[b] })
	for _, pid := range pids {
		out = append(out, j.rows(j.procs[pid])...)
	}
	return out
}

// finish asks live JVMs for their maps (--perf-map-request), writes the
// jit_symbols table and closes what was held.
func (j *jitMaps) finish() error {
	if j.request {
		j.requestMaps()
	}
	rows := j.Rows()
	j.mu.Lock()
	j.final, j.ended = rows, true
	for _, jp := range j.procs {
		j.release(jp)
	}
	for _, jp := range j.retired {
		j.release(jp)
	}
	for _, f := range j.roots {
		f.Close()
	}
	j.roots = map[[2]uint64]*os.File{}
	dropped := j.dropped
	j.mu.Unlock()
	if dropped > 0 {
		j.s.Warnf("JIT frames: %d processes or frame addresses beyond the recorder's bounds were not followed (their JIT frames stay unnamed)", dropped)
	}
	if len(rows) == 0 || j.s.ring != nil {
		return nil // a flight recorder writes them into each dump
	}
	return j.table.Write(rows...)
}

// requestMaps asks every live JVM with JIT frames to write its perf map
// now (the attach API's `jcmd PID Compiler.perfmap`).
func (j *jitMaps) requestMaps() {
	j.mu.Lock()
	var jvms []*jitProc
	for _, jp := range j.procs {
		if jp.runtime == formats.RuntimeJava && !jp.exited && jp.nspid != 0 {
			jvms = append(jvms, jp)
		}
	}
	j.mu.Unlock()
	deadline := time.Now().Add(jvmRequestBudget)
	for _, jp := range jvms {
		left := time.Until(deadline)
		if left <= 0 {
			j.s.Warnf("--perf-map-request: no time left to ask pid %d", jp.pid)
			continue
		}
		if err := requestJVMPerfMap(j.s.procRoot, jp.pid, jp.nspid, min(left, jvmAttachTimeout)); err != nil {
			j.s.Warnf("--perf-map-request: pid %d: %v", jp.pid, err)
		}
	}
}
