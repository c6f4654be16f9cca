//go:build linux

package capture

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bpfsnap/bpfsnap/internal/testenv"
)

// A workload names itself with terminal escapes, markup and invalid UTF-8
// (through its executable's name, so comm, exe and cmdline all carry it):
// the archive keeps the bytes, inspect's text output neutralizes them and
// its JSON stays valid.
func TestHostileProcessNames(t *testing.T) {
	testenv.RequireBPF(t)
	bin := buildSelf(t)
	dir := t.TempDir()
	hostile := "\x1b]0;pwned\a\x1b[2J<script>\xff"
	exe := filepath.Join(dir, hostile)
	if err := os.Symlink("/bin/sleep", exe); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "hostile.bpfsnap")
	if msg, err := exec.Command(bin, "capture", "-d", "5s", "-o", out, "--", exe, "0.3").CombinedOutput(); err != nil {
		t.Fatalf("%v: %s", err, msg)
	}
	text, err := exec.Command(bin, "inspect", out).Output()
	if err != nil {
		t.Fatal(err)
	}
	if strings.ContainsAny(string(text), "\x1b\a") || strings.Contains(string(text), "\xff") {
		t.Errorf("inspect passed control bytes or invalid UTF-8 to the terminal:\n%q", text)
	}
	if !strings.Contains(string(text), `\x1b]0;pwned\x07`) {
		t.Errorf("the escaped name is not shown:\n%s", text)
	}
	js, err := exec.Command(bin, "inspect", "--json", out).Output()
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Processes []struct {
			Comm, Exe string
		} `json:"processes"`
	}
	if err := json.Unmarshal(js, &doc); err != nil {
		t.Fatalf("inspect --json is not valid JSON: %v", err)
	}
	found := false
	for _, p := range doc.Processes {
		if strings.Contains(p.Exe, "pwned") {
			found = true
		}
	}
	if !found {
		t.Errorf("the hostile process is missing from %+v", doc.Processes)
	}
}
