//go:build linux

package capture

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bpfsnap/bpfsnap/analyze"
	"github.com/bpfsnap/bpfsnap/formats"
	"github.com/bpfsnap/bpfsnap/internal/testenv"
)

func openProcesses(t *testing.T, path string) (*formats.Manifest, []analyze.Process) {
	t.Helper()
	a, err := formats.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	procs, err := analyze.Processes(a)
	if err != nil {
		t.Fatal(err)
	}
	return a.Manifest(), procs
}

// A whole-host capture sees a process that starts, execs and exits inside
// the window, with its parent, exe and exit status.
func TestCaptureWholeHostSeesShortLivedProcess(t *testing.T) {
	testenv.RequireBPF(t)
	out := filepath.Join(t.TempDir(), "host.bpfsnap")
	done := make(chan struct{})
	var pid int
	// Started once every probe is attached: loading takes 0.5 s here and
	// several seconds in an emulated VM (make test-kernels).
	ready := func() {
		go func() {
			defer close(done)
			time.Sleep(200 * time.Millisecond)
			cmd := exec.Command("/bin/sh", "-c", "exit 7")
			_ = cmd.Run()
			pid = cmd.Process.Pid
		}()
	}
	res, err := Run(context.Background(), Options{Output: out, Duration: 2 * time.Second, Version: "test", Ready: ready})
	if err != nil {
		t.Fatal(err)
	}
	<-done
	if res.Manifest.Window.EndReason != "duration" || !res.Manifest.Complete {
		t.Fatalf("manifest: %+v", res.Manifest.Window)
	}
	m, procs := openProcesses(t, out)
	if m.Probe("process") == nil || !m.Probe("process").Attached {
		t.Fatalf("process probe not attached: %+v", m.Probes)
	}
	var found *analyze.Process
	for i := range procs {
		if procs[i].PID == uint32(pid) {
			found = &procs[i]
		}
	}
	if found == nil {
		t.Fatalf("pid %d not in %d processes", pid, len(procs))
	}
	if !found.ForkSeen || found.Execs != 1 || !found.Exited || found.ExitCode != 7<<8 {
		t.Fatalf("short-lived process: %+v", *found)
	}
	if found.PPID != uint32(os.Getpid()) || !strings.HasSuffix(found.Exe, "/sh") || found.Comm != "sh" {
		t.Fatalf("short-lived process identity: %+v", *found)
	}
	// The command line comes from the kernel event: the process is gone
	// before user space could read /proc.
	if found.Cmdline != "/bin/sh -c exit 7" {
		t.Errorf("cmdline %q", found.Cmdline)
	}
	if found.Cgroup == "" || found.CgroupID == 0 {
		t.Errorf("no cgroup for %+v", *found)
	}
	// Processes running before the window come from the /proc scan.
	self := false
	for _, p := range procs {
		if p.PID == uint32(os.Getpid()) && p.ScannedRun {
			self = true
		}
	}
	if !self {
		t.Errorf("the test process itself (pid %d) was not found by the /proc scan", os.Getpid())
	}
}

// `capture -- COMMAND` follows the command's process tree only and ends the
// window when the command exits.
func TestCaptureCommandTree(t *testing.T) {
	testenv.RequireBPF(t)
	bin := buildSelf(t)
	out := filepath.Join(t.TempDir(), "cmd.bpfsnap")
	// The window opens before the probe sets load (0.5 s here, ~20 s in
	// an emulated VM under make test-kernels) and must close when the
	// command exits, well before the duration.
	cmd := exec.Command(bin, "capture", "-d", "90s", "-o", out, "--",
		"/bin/sh", "-c", "/bin/sleep 0.2; /bin/true; exit 3")
	msg, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%v: %s", err, msg)
	}
	m, procs := openProcesses(t, out)
	if m.Window.EndReason != "command-exited" || m.Window.Duration() > 60*time.Second {
		t.Fatalf("window: %+v", m.Window)
	}
	byExe := map[string]analyze.Process{}
	for _, p := range procs {
		byExe[filepath.Base(p.Exe)] = p
	}
	sh, sleep, tru := byExe["sh"], byExe["sleep"], byExe["true"]
	if sh.PID == 0 || sleep.PID == 0 || tru.PID == 0 {
		t.Fatalf("missing processes of the tree: %+v", procs)
	}
	if sleep.PPID != sh.PID || tru.PPID != sh.PID || sh.ExitCode != 3<<8 {
		t.Fatalf("tree: sh=%+v sleep=%+v true=%+v", sh, sleep, tru)
	}
	for _, p := range procs {
		if p.PID != sh.PID && p.PPID != sh.PID {
			t.Errorf("process outside the command's tree recorded: %+v", p)
		}
	}
}
