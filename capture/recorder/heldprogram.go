//go:build linux

package recorder

import (
	"os"
	"path/filepath"
	"strings"
)

// HeldProgram returns the file a held child will exec, reached through
// its /proc entry (root, or cwd for a relative path), or "" when pid is
// not a held child. Probe sets that must be attached to the program's
// files before it runs (its allocator library, mem) read it before the
// child is released.
func HeldProgram(procRoot string, pid uint32) string {
	dir := filepath.Join(procRoot, Itoa(pid))
	env, err := os.ReadFile(filepath.Join(dir, "environ"))
	if err != nil {
		return ""
	}
	held, path := false, ""
	for _, kv := range strings.Split(string(env), "\x00") {
		switch {
		case kv == holdEnv+"=1":
			held = true
		case strings.HasPrefix(kv, "PATH="):
			path = kv[len("PATH="):]
		}
	}
	cmdline, _ := os.ReadFile(filepath.Join(dir, "cmdline"))
	args := strings.Split(string(cmdline), "\x00")
	if !held || len(args) < 2 || args[1] == "" {
		return ""
	}
	prog := args[1]
	switch {
	case strings.HasPrefix(prog, "/"):
		return filepath.Join(dir, "root", prog)
	case strings.Contains(prog, "/"):
		return filepath.Join(dir, "cwd", prog)
	}
	for _, d := range filepath.SplitList(path) {
		if d == "" || !strings.HasPrefix(d, "/") {
			continue
		}
		p := filepath.Join(dir, "root", d, prog)
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0 {
			return p
		}
	}
	return ""
}
