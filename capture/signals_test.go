//go:build linux

package capture

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"github.com/bpfsnap/bpfsnap/formats"
	"github.com/bpfsnap/bpfsnap/internal/testenv"
)

// SIGINT and SIGTERM end the window early and still finalize the archive;
// afterwards none of the recorder's links exist.
func TestSignalsFinalize(t *testing.T) {
	testenv.RequireBPF(t)
	bin := buildSelf(t)
	for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGTERM} {
		out := filepath.Join(t.TempDir(), "sig.bpfsnap")
		cmd := exec.Command(bin, "capture", "-d", "60s", "-o", out)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		var links []link.ID
		waitFor(t, "links attached", 15*time.Second, func() bool {
			links = linkIDs(cmd.Process.Pid)
			return len(links) >= 3
		})
		time.Sleep(1200 * time.Millisecond)
		cmd.Process.Signal(sig)
		if err := waitExit(cmd, 20*time.Second); err != nil {
			t.Fatalf("%v: capture exited with %v", sig, err)
		}
		a, err := formats.Open(out)
		if err != nil {
			t.Fatalf("%v: %v", sig, err)
		}
		m := a.Manifest()
		a.Close()
		if !m.Complete || m.Window.EndReason != "signal" || m.Tables[formats.TableProcesses] == 0 {
			t.Errorf("%v: manifest %+v", sig, m)
		}
		if _, err := os.Stat(out + formats.PartialSuffix); !os.IsNotExist(err) {
			t.Errorf("%v: partial directory left behind", sig)
		}
		for _, id := range links {
			if l, err := link.NewFromID(id); err == nil {
				l.Close()
				t.Errorf("%v: link %d survived a clean exit", sig, id)
			}
		}
	}
}

// Outputs that would clobber something are refused; an unwritable
// directory is an error naming the path.
func TestOutputRefusals(t *testing.T) {
	testenv.RequireBPF(t)
	bin := buildSelf(t)
	dir := t.TempDir()
	existing := filepath.Join(dir, "existing.bpfsnap")
	os.WriteFile(existing, []byte("keep me"), 0o644)
	link := filepath.Join(dir, "link.bpfsnap")
	os.Symlink(existing, link)
	ro := filepath.Join(dir, "ro")
	os.Mkdir(ro, 0o755)
	if err := unix.Mount("tmpfs", ro, "tmpfs", unix.MS_RDONLY, "size=64k"); err != nil {
		testenv.Skip(t, "cannot mount a read-only tmpfs: "+err.Error())
	}
	defer unix.Unmount(ro, unix.MNT_DETACH)
	cases := []struct {
		out, want string
		extra     []string
	}{
		{existing, "already exists", nil},
		{link, "symlink", nil},
		{link, "symlink", []string{"--force"}},
		{filepath.Join(ro, "x.bpfsnap"), "read-only file system", nil},
	}
	for _, c := range cases {
		args := append([]string{"capture", "-d", "1s", "-o", c.out}, c.extra...)
		msg, err := exec.Command(bin, args...).CombinedOutput()
		var exitErr *exec.ExitError
		if !errors.As(err, &exitErr) || !strings.Contains(string(msg), c.want) || !strings.Contains(string(msg), c.out) {
			t.Errorf("capture -o %s %v: err=%v, output %q, want an error with %q and the path", c.out, c.extra, err, msg, c.want)
		}
	}
	if data, _ := os.ReadFile(existing); string(data) != "keep me" {
		t.Errorf("existing file was modified: %q", data)
	}
}
