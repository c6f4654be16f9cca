//go:build linux

package capture

import (
	"bufio"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// CgroupResolver maps cgroup v2 ids (what bpf_get_current_cgroup_id returns:
// the inode number of the cgroup's directory) to paths below the v2 root. It
// walks the hierarchy once and again on a miss, at most every few seconds,
// so a burst of short-lived containers cannot make it walk in a loop.
type CgroupResolver struct {
	root string

	mu       sync.Mutex
	byID     map[uint64]string
	lastWalk time.Time
}

// NewCgroupResolver finds the cgroup v2 mount below hostRoot: /sys/fs/cgroup
// on unified hosts, /sys/fs/cgroup/unified on hybrid ones.
func NewCgroupResolver(hostRoot string) *CgroupResolver {
	r := &CgroupResolver{byID: map[uint64]string{}}
	for _, p := range []string{"sys/fs/cgroup/unified", "sys/fs/cgroup"} {
		full := filepath.Join(hostRoot, p)
		if _, err := os.Stat(filepath.Join(full, "cgroup.controllers")); err == nil {
			r.root = full
			break
		}
	}
	return r
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
// /proc/PID/cgroup (the "0::" line), or "".
func ProcCgroupV2(procRoot string, pid uint32) string {
	f, err := os.Open(filepath.Join(procRoot, itoa(pid), "cgroup"))
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
