package analyze

import (
	"testing"

	f "github.com/bpfsnap/bpfsnap/formats"
)

func TestFoldProcesses(t *testing.T) {
	rows := []f.ProcessEvent{
		// Seen by both the fork event and the /proc scan: one life.
		{TimeNs: 100, Kind: f.ProcessFork, PID: 10, PPID: 1, Comm: "bash", StartNs: 5_000_000_000},
		{TimeNs: 200, Kind: f.ProcessScan, PID: 10, PPID: 1, Comm: "bash", Exe: "/bin/bash", StartNs: 5_010_000_000},
		{TimeNs: 300, Kind: f.ProcessExec, PID: 10, Comm: "ls", Exe: "/bin/ls", Cmdline: "ls -l"},
		{TimeNs: 400, Kind: f.ProcessExit, PID: 10, ExitCode: 256},
		// The pid is reused: a second life.
		{TimeNs: 500, Kind: f.ProcessFork, PID: 10, PPID: 2, Comm: "cron", StartNs: 9_000_000_000},
		// Rows out of time order are sorted first.
		{TimeNs: 50, Kind: f.ProcessScan, PID: 20, PPID: 1, Comm: "nginx", CgroupPath: "/system.slice/nginx.service", CgroupID: 77},
		// An exit with no earlier sighting still makes a record.
		{TimeNs: 600, Kind: f.ProcessExit, PID: 30, Comm: "ghost"},
	}
	got := FoldProcesses(rows)
	if len(got) != 4 {
		t.Fatalf("%d lives, want 4: %+v", len(got), got)
	}
	nginx, first, second, ghost := got[0], got[1], got[2], got[3]
	if nginx.PID != 20 || nginx.Cgroup != "/system.slice/nginx.service" || nginx.CgroupID != 77 || !nginx.ScannedRun || nginx.Exited {
		t.Errorf("nginx: %+v", nginx)
	}
	if first.PID != 10 || first.Comm != "ls" || first.Exe != "/bin/ls" || first.Cmdline != "ls -l" ||
		!first.Exited || first.ExitCode != 256 || first.Execs != 1 || !first.ForkSeen || !first.ScannedRun || first.PPID != 1 {
		t.Errorf("first life of pid 10: %+v", first)
	}
	if second.PID != 10 || second.Comm != "cron" || second.PPID != 2 || second.Exited {
		t.Errorf("second life of pid 10: %+v", second)
	}
	if ghost.PID != 30 || !ghost.Exited || ghost.Comm != "ghost" {
		t.Errorf("ghost: %+v", ghost)
	}
}
