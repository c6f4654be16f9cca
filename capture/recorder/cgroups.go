//go:build linux

package recorder

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/bpfsnap/bpfsnap/internal/k8smeta"
)

// CgroupResolver maps cgroup v2 ids (what bpf_get_current_cgroup_id returns:
// the inode number of the cgroup's directory, which is also its kernfs file
// handle) to paths below the v2 root. A miss is resolved in O(1) with
// open_by_handle_at, so a container created during the window resolves at
// once; results are cached, so a cgroup removed after its first sighting
// still resolves. Where file handles are not allowed (no
// CAP_DAC_READ_SEARCH, a cgroup namespace hiding the path) it falls back to
// walking the hierarchy, at most every few seconds, so a burst of
// short-lived containers cannot make it walk in a loop.
type CgroupResolver struct {
	root string

	mu       sync.Mutex
	byID     map[uint64]string
	lastWalk time.Time
	mountFD  int // the v2 root for open_by_handle_at: -2 not opened yet, -1 unusable

	// nsRoot is the absolute path of the cgroup namespace root bpfsnap
	// runs in, when that is not the host's ("" otherwise): in a pod with
	// a private cgroup namespace (containerd's default on cgroup v2),
	// /proc/PID/cgroup shows paths relative to it ("/../../kubepods…").
	nsRoot string
	// NSProblem says why a private cgroup namespace's root could not be
	// found; /proc-based cgroup paths are then relative and unreliable.
	NSProblem string
}

// NewCgroupResolver finds the cgroup v2 mount below hostRoot: /sys/fs/cgroup
// on unified hosts, /sys/fs/cgroup/unified on hybrid ones.
func NewCgroupResolver(hostRoot string) *CgroupResolver {
	r := &CgroupResolver{byID: map[uint64]string{}, mountFD: -2}
	for _, p := range []string{"sys/fs/cgroup/unified", "sys/fs/cgroup"} {
		full := filepath.Join(hostRoot, p)
		if abs, err := filepath.Abs(full); err == nil {
			full = abs // compared with /proc/self/fd links, which are absolute
		}
		if _, err := os.Stat(filepath.Join(full, "cgroup.controllers")); err == nil {
			r.root = full
			break
		}
	}
	if r.root != "" {
		r.findNSRoot(hostRoot)
	}
	return r
}

// cgroup2SuperMagic is CGROUP2_SUPER_MAGIC from statfs(2).
const cgroup2SuperMagic = 0x63677270

// findNSRoot detects that bpfsnap's cgroup namespace is not the host's
// and finds its root: the cgroup2 mount a container runtime gives every
// container at /sys/fs/cgroup is rooted at the namespace root, so its file
// handle is the root's cgroup id, which the host's mount (under hostRoot)
// resolves to an absolute path. The host's namespace is kthreadd's (pid 2:
// kernel threads never leave the initial cgroup namespace, and their ns
// links are readable where pid 1's may not be), else pid 1's.
func (r *CgroupResolver) findNSRoot(hostRoot string) {
	self := nsInode("/proc/self/ns/cgroup")
	var host uint64
	for _, pid := range []string{"2", "1"} {
		if host = nsInode(filepath.Join(hostRoot, "proc", pid, "ns/cgroup")); host != 0 {
			break
		}
	}
	if self == 0 || host == 0 || self == host {
		return
	}
	for _, own := range []string{"/sys/fs/cgroup/unified", "/sys/fs/cgroup"} {
		var fs unix.Statfs_t
		if unix.Statfs(own, &fs) != nil || fs.Type != cgroup2SuperMagic {
			continue
		}
		h, _, err := unix.NameToHandleAt(unix.AT_FDCWD, own, 0)
		if err != nil || h.Type() != fileidKernfs || len(h.Bytes()) != 8 {
			r.NSProblem = fmt.Sprintf("no file handle for %s: %v", own, err)
			return
		}
		if p := r.Path(binary.NativeEndian.Uint64(h.Bytes())); p != "" {
			r.nsRoot = p
			return
		}
		r.NSProblem = fmt.Sprintf("cgroup of %s not found below %s", own, r.root)
		return
	}
	r.NSProblem = "no cgroup2 mount at /sys/fs/cgroup"
}

// Abs turns a cgroup v2 path read from /proc/PID/cgroup into a path below
// the v2 root, undoing bpfsnap's own cgroup namespace.
func (r *CgroupResolver) Abs(p string) string {
	if r == nil || r.nsRoot == "" || p == "" {
		return p
	}
	return path.Join(r.nsRoot, p)
}

// ProcCgroupLines reads /proc/PID/cgroup with the v2 path made absolute
// (Abs); v1 lines are left as read.
func (r *CgroupResolver) ProcCgroupLines(procRoot string, pid uint32) ([]k8smeta.CgroupLine, bool) {
	data, err := os.ReadFile(filepath.Join(procRoot, Itoa(pid), "cgroup"))
	if err != nil {
		return nil, false
	}
	lines := k8smeta.ParseProcCgroup(string(data))
	for i, l := range lines {
		if l.Hierarchy == "0" && l.Controllers == "" {
			lines[i].Path = r.Abs(l.Path)
		}
	}
	return lines, true
}

// Root is the cgroup v2 mount, or "" if the host has none.
func (r *CgroupResolver) Root() string { return r.root }

// Path returns the cgroup path of id ("/" for the root), or "".
func (r *CgroupResolver) Path(id uint64) string {
	if r.root == "" || id == 0 {
		return ""
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if p, ok := r.byID[id]; ok {
		return p
	}
	if p, ok := r.byHandleLocked(id); ok {
		r.byID[id] = p
		return p
	}
	if time.Since(r.lastWalk) < 2*time.Second {
		return ""
	}
	r.walkLocked()
	return r.byID[id]
}

// ID returns the cgroup id of a path below the v2 root.
func (r *CgroupResolver) ID(path string) (uint64, bool) {
	if r.root == "" {
		return 0, false
	}
	st, err := os.Stat(filepath.Join(r.root, path))
	if err != nil {
		return 0, false
	}
	sys, ok := st.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, false
	}
	return sys.Ino, true
}

// Walk records every cgroup that exists now, so cgroups removed later in
// the window (a short-lived container's) still resolve.
func (r *CgroupResolver) Walk() {
	if r.root == "" {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.walkLocked()
}

// Close releases the v2 root descriptor.
func (r *CgroupResolver) Close() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.mountFD >= 0 {
		unix.Close(r.mountFD)
		r.mountFD = -1
	}
}

// fileidKernfs is FILEID_KERNFS: a kernfs file handle is the node's 64-bit id.
const fileidKernfs = 0xfe

// byHandleLocked opens cgroup id by its file handle and reads its path back
// from /proc/self/fd. It fails for removed cgroups (ESTALE), without
// CAP_DAC_READ_SEARCH (EPERM), and when the path is not below the root we
// opened (a cgroup namespace).
func (r *CgroupResolver) byHandleLocked(id uint64) (string, bool) {
	if r.mountFD == -2 {
		r.mountFD = -1
		if fd, err := unix.Open(r.root, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0); err == nil {
			r.mountFD = fd
		}
	}
	if r.mountFD < 0 {
		return "", false
	}
	var h [8]byte
	binary.NativeEndian.PutUint64(h[:], id)
	fd, err := unix.OpenByHandleAt(r.mountFD, unix.NewFileHandle(fileidKernfs, h[:]), unix.O_RDONLY|unix.O_DIRECTORY|unix.O_PATH|unix.O_CLOEXEC)
	if err != nil {
		if errors.Is(err, unix.EPERM) || errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.ENOSYS) {
			unix.Close(r.mountFD) // will not work for any id: stop trying
			r.mountFD = -1
		}
		return "", false
	}
	defer unix.Close(fd)
	target, err := os.Readlink("/proc/self/fd/" + strconv.Itoa(fd))
	if err != nil {
		return "", false
	}
	if target == r.root {
		return "/", true
	}
	rel, ok := strings.CutPrefix(target, r.root+"/")
	if !ok {
		return "", false
	}
	return "/" + rel, true
}

func (r *CgroupResolver) walkLocked() {
	r.lastWalk = time.Now()
	_ = filepath.WalkDir(r.root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.IsDir() {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return nil
		}
		if sys, ok := info.Sys().(*syscall.Stat_t); ok {
			rel := strings.TrimPrefix(p, r.root)
			if rel == "" {
				rel = "/"
			}
			r.byID[sys.Ino] = rel
		}
		return nil
	})
}

// ProcCgroupV2 returns the cgroup v2 path of a process from
// /proc/PID/cgroup (the "0::" line), or "", as the reader's cgroup
// namespace shows it (see CgroupResolver.Abs).
func ProcCgroupV2(procRoot string, pid uint32) string {
	f, err := os.Open(filepath.Join(procRoot, Itoa(pid), "cgroup"))
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "0::"); ok {
			return rest
		}
	}
	return ""
}

// NSRoot is the host path of bpfsnap's cgroup namespace root ("" outside
// a cgroup namespace, or when it was not found).
func (r *CgroupResolver) NSRoot() string { return r.nsRoot }
