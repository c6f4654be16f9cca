//go:build linux

package mem

import (
	"bytes"
	"debug/elf"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"

	"github.com/bpfsnap/bpfsnap/capture/recorder"
	"github.com/bpfsnap/bpfsnap/internal/symbolize"
)

// Allocator discovery: the malloc family a process calls may come from
// glibc, from an allocator library that replaces it (jemalloc, tcmalloc,
// mimalloc, or any library that defines malloc: the dynamic linker gives
// every call to the first definition, LD_PRELOAD and the executable's own
// libraries before libc), or from the executable itself (statically
// linked). Every such file the process maps (or is about to: a program
// just exec'd has only itself and the loader mapped, so its DT_NEEDED and
// LD_PRELOAD are read) gets the entry and return probes; probing one that
// is not called costs nothing.

// allocatorFile is one file whose allocator functions are probed in a
// process.
type allocatorFile struct {
	path string // host path (through /proc/PID/root)
	name string // "libc", "jemalloc", "tcmalloc", "mimalloc", or the file's base name
}

// allocatorName names the allocator a file holds, from its base name.
func allocatorName(base string) string {
	switch {
	case base == "libc.so.6" || strings.HasPrefix(base, "libc-") || strings.HasPrefix(base, "libc.so"):
		return "libc"
	case strings.HasPrefix(base, "libjemalloc"):
		return "jemalloc"
	case strings.HasPrefix(base, "libtcmalloc"):
		return "tcmalloc"
	case strings.HasPrefix(base, "libmimalloc"):
		return "mimalloc"
	}
	return base
}

// definesMalloc caches, per file (device and inode), whether it defines
// malloc or a prefixed allocator entry point.
var definesMalloc sync.Map // [2]uint64 -> bool

// hasAllocator reports whether the ELF at path defines malloc (or je_malloc,
// tc_malloc, mi_malloc) in its dynamic symbols, or, for an executable
// linked statically, in its symbol table.
func hasAllocator(path string) bool {
	st, err := os.Stat(path)
	if err != nil {
		return false
	}
	sys, ok := st.Sys().(*syscall.Stat_t)
	if !ok {
		return false
	}
	key := [2]uint64{uint64(sys.Dev), sys.Ino}
	if v, ok := definesMalloc.Load(key); ok {
		return v.(bool)
	}
	found := false
	if f, err := elf.Open(path); err == nil {
		for _, load := range []func() ([]elf.Symbol, error){f.DynamicSymbols, f.Symbols} {
			syms, _ := load()
			for _, s := range syms {
				if elf.ST_TYPE(s.Info) != elf.STT_FUNC || s.Section == elf.SHN_UNDEF || s.Value == 0 {
					continue
				}
				name, _, _ := strings.Cut(s.Name, "@")
				switch name {
				case "malloc", "je_malloc", "tc_malloc", "mi_malloc":
					found = true
				}
			}
			if found {
				break
			}
		}
		f.Close()
	}
	definesMalloc.Store(key, found)
	return found
}

// allocatorsOf lists the files whose allocator functions are probed in
// pid: the libc it maps (or the host's, for the held child of `--
// COMMAND`, which is bpfsnap until it execs), and every other file it maps
// or is about to load that defines malloc.
func (m *memProbe) allocatorsOf(pid uint32) []allocatorFile {
	dir := filepath.Join(m.s.ProcRoot(), recorder.Itoa(pid))
	root := filepath.Join(dir, "root")
	var out []allocatorFile
	seen := map[string]bool{}
	add := func(hostPath string) {
		if seen[hostPath] {
			return
		}
		seen[hostPath] = true
		name := allocatorName(filepath.Base(hostPath))
		if name == "libc" || hasAllocator(hostPath) {
			out = append(out, allocatorFile{path: hostPath, name: name})
		}
	}
	exe := ""
	if f, err := os.Open(filepath.Join(dir, "maps")); err == nil {
		maps, _ := symbolize.ParseMaps(f)
		f.Close()
		for _, mp := range maps {
			if !mp.Executable() || !mp.FileBacked() {
				continue
			}
			if exe == "" {
				exe = mp.Path // the first file mapping is the program
			}
			if isLoader(filepath.Base(mp.Path)) {
				continue
			}
			add(filepath.Join(root, mp.Path))
		}
	}
	if exe != "" {
		// Just exec'd: the loader has not mapped its libraries yet.
		for _, lib := range neededLibraries(root, filepath.Join(root, exe), dir) {
			add(lib)
		}
	}
	if prog := recorder.HeldProgram(m.s.ProcRoot(), pid); prog != "" {
		// The held child of `-- COMMAND` is bpfsnap until it execs the
		// program, which starts allocating at once: its files are
		// probed now (uprobes hold on to a file, mapped or not).
		add(prog)
		for _, lib := range neededLibraries(root, prog, dir) {
			add(lib)
		}
	}
	hasLibc := false
	for _, a := range out {
		hasLibc = hasLibc || a.name == "libc"
	}
	if !hasLibc {
		if libc := findLibc(root, m.s.HostRoot()); libc != "" {
			out = append([]allocatorFile{{path: libc, name: "libc"}}, out...)
		}
	}
	return out
}

// isLoader reports whether a file is the dynamic loader (its minimal
// malloc serves only itself before libc is relocated).
func isLoader(base string) bool {
	return strings.HasPrefix(base, "ld-linux") || strings.HasPrefix(base, "ld-musl")
}

// findLibc looks for a C library in the process's root, then the host's
// (the held child is bpfsnap itself until it execs; /proc/PID/root can be
// briefly unreadable while it is being set up).
func findLibc(root, hostRoot string) string {
	for _, r := range []string{root, hostRoot} {
		for _, p := range libDirs {
			if _, err := os.Stat(filepath.Join(r, p, "libc.so.6")); err == nil {
				return filepath.Join(r, p, "libc.so.6")
			}
		}
	}
	return ""
}

// libDirs are where the dynamic loader finds libraries by default (the
// Debian multiarch directories first).
var libDirs = []string{"/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/lib64", "/usr/lib64", "/lib", "/usr/lib", "/usr/local/lib"}

// maxNeeded bounds the libraries read from one program's DT_NEEDED and
// LD_PRELOAD.
const maxNeeded = 64

// neededLibraries resolves, inside root, the libraries a program loads
// first: LD_PRELOAD from its environment, then its DT_NEEDED entries (in
// its RUNPATH/RPATH, LD_LIBRARY_PATH, then the default directories).
func neededLibraries(root, exe, procDir string) []string {
	env, _ := os.ReadFile(filepath.Join(procDir, "environ"))
	var preload, libPath []string
	for _, kv := range bytes.Split(env, []byte{0}) {
		k, v, _ := strings.Cut(string(kv), "=")
		switch k {
		case "LD_PRELOAD":
			preload = strings.FieldsFunc(v, func(r rune) bool { return r == ':' || r == ' ' })
		case "LD_LIBRARY_PATH":
			libPath = strings.Split(v, ":")
		}
	}
	f, err := elf.Open(exe)
	if err != nil {
		return nil
	}
	defer f.Close()
	needed, _ := f.DynString(elf.DT_NEEDED)
	var dirs []string
	for _, tag := range []elf.DynTag{elf.DT_RUNPATH, elf.DT_RPATH} {
		if v, _ := f.DynString(tag); len(v) > 0 {
			for _, d := range strings.Split(v[0], ":") {
				if !strings.Contains(d, "$") { // $ORIGIN and friends: not resolved here
					dirs = append(dirs, d)
				}
			}
		}
	}
	dirs = append(append(dirs, libPath...), libDirs...)
	var out []string
	for _, name := range append(preload, needed...) {
		if len(out) == maxNeeded {
			break
		}
		if strings.Contains(name, "/") {
			if _, err := os.Stat(filepath.Join(root, name)); err == nil {
				out = append(out, filepath.Join(root, name))
			}
			continue
		}
		for _, d := range dirs {
			if d == "" {
				continue
			}
			p := filepath.Join(root, d, name)
			if _, err := os.Stat(p); err == nil {
				out = append(out, p)
				break
			}
		}
	}
	return out
}
