//go:build linux

package capture

import (
	"fmt"
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

// incarnSrc is one short life of a reused pid: it burns ~60 ms of CPU in
// BURN (named per build), then sleeps so the recorder can snapshot its
// mappings. Built -no-pie, two builds with different BURN names put the
// same code at the same address: only the binary tells them apart.
const incarnSrc = `#include <time.h>
#include <unistd.h>

static double now(void) {
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

__attribute__((noinline)) unsigned long BURN(unsigned long x) {
	for (int i = 0; i < 100000; i++) x = x * 6364136223846793005UL + 1;
	return x;
}

int main(void) {
	double end = now() + 0.06;
	unsigned long x = 1;
	while (now() < end) x = BURN(x);
	usleep(250000);
	return x == 42; /* uses x, so the calls are not optimized away */
}
`

// reuserSrc forces pid reuse inside one capture window on a shared
// machine (pid_max is not ours to lower): phase 1 runs nA children that
// exec program A and remembers their pids; phase 2 forks children that exit
// at once until the pid counter wraps, and each child that lands on a pid
// of phase 1 execs program B instead. It writes "forks reused failures"
// then the reused pids.
const reuserSrc = `#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <sys/wait.h>

static unsigned char inP[1 << 22];

int main(int argc, char **argv) {
	if (argc != 6) return 2;
	const char *A = argv[1], *B = argv[2];
	int nA = atoi(argv[3]), want = atoi(argv[4]);
	long failures = 0, forks = 0;
	pid_t *apids = calloc(nA, sizeof(pid_t)), *bpids = calloc(want, sizeof(pid_t));
	for (int i = 0; i < nA; i++) {
		pid_t pid = fork();
		if (pid == 0) {
			execl(A, A, (char *)0);
			_exit(127);
		}
		if (pid < 0) { failures++; continue; }
		apids[i] = pid;
		if (pid < (1 << 22)) inP[pid] = 1;
	}
	for (int i = 0; i < nA; i++) {
		int st;
		if (apids[i] > 0 && (waitpid(apids[i], &st, 0) < 0 || !WIFEXITED(st) || WEXITSTATUS(st) != 0)) failures++;
	}
	int reused = 0;
	while (reused < want && forks < 200000) {
		pid_t pid = fork();
		if (pid == 0) {
			pid_t me = getpid();
			if (me < (1 << 22) && inP[me]) {
				execl(B, B, (char *)0);
				_exit(127);
			}
			_exit(0);
		}
		if (pid < 0) { failures++; usleep(1000); continue; }
		forks++;
		if (pid < (1 << 22) && inP[pid]) {
			inP[pid] = 0;
			bpids[reused++] = pid;
		} else {
			int st;
			if (waitpid(pid, &st, 0) < 0 || !WIFEXITED(st) || WEXITSTATUS(st) != 0) failures++;
		}
	}
	for (int i = 0; i < reused; i++) {
		int st;
		if (waitpid(bpids[i], &st, 0) < 0 || !WIFEXITED(st) || WEXITSTATUS(st) != 0) failures++;
	}
	FILE *f = fopen(argv[5], "w");
	if (!f) return 3;
	fprintf(f, "%ld %d %ld\n", forks, reused, failures);
	for (int i = 0; i < reused; i++) fprintf(f, "%d\n", bpids[i]);
	fclose(f);
	return 0;
}
`

// A pid is reused inside the window by a different program: the processes
// table keeps the two lives apart (start times differ), CPU samples fall in
// the right life, and the analysis names and symbolizes each life's samples
// as its own program, even when both programs have the same code at the
// same addresses (non-PIE builds).
func TestPIDReuseAttribution(t *testing.T) {
	testenv.RequireBPF(t)
	bin := buildSelf(t)
	alpha := buildC(t, "incarnA", incarnSrc, "-no-pie", "-DBURN=burn_alpha")
	beta := buildC(t, "incarnB", incarnSrc, "-no-pie", "-DBURN=burn_beta")
	reuser := buildC(t, "reuser", reuserSrc)
	dir := t.TempDir()
	out := filepath.Join(dir, "reuse.bpfsnap")
	result := filepath.Join(dir, "reused")
	const nA, want = 100, 20
	start := time.Now()
	msg, err := exec.Command(bin, "capture", "-p", "cpu", "--freq", "997", "-d", "5m", "-o", out,
		"--", reuser, alpha, beta, fmt.Sprint(nA), fmt.Sprint(want), result).CombinedOutput()
	if err != nil {
		t.Fatalf("capture: %v: %s", err, msg)
	}
	raw, err := os.ReadFile(result)
	if err != nil {
		t.Fatal(err)
	}
	var forks, reused, failures int
	fields := strings.Fields(string(raw))
	fmt.Sscan(strings.Join(fields[:3], " "), &forks, &reused, &failures)
	var pids []uint32
	for _, f := range fields[3:] {
		var p uint32
		fmt.Sscan(f, &p)
		pids = append(pids, p)
	}
	t.Logf("reuser: %d forks in %s, %d pids reused, %d failures", forks, time.Since(start).Round(time.Millisecond), reused, failures)
	if failures != 0 {
		t.Errorf("%d children failed or crashed under capture", failures)
	}
	if reused < want/2 {
		t.Fatalf("only %d pids were reused after %d forks", reused, forks)
	}

	a, err := formats.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	m := a.Manifest()
	// Lost process events (counted) can leave a life without its fork or
	// exec row; such pids are reported and left out, the rest must be
	// exact.
	lostProc := m.Drops["process.ringbuf_full"]
	if lostProc > 0 {
		t.Logf("%d process events lost to a full ring (counted): pids with incomplete lives are not checked", lostProc)
	}
	procs, err := analyze.Processes(a)
	if err != nil {
		t.Fatal(err)
	}
	lives := map[uint32][]analyze.Process{}
	for _, p := range procs {
		lives[p.PID] = append(lives[p.PID], p)
	}
	samples, err := formats.ReadAll[formats.CPUSample](a, formats.TableCPUSamples)
	if err != nil {
		t.Fatal(err)
	}
	byPID := map[uint32][]formats.CPUSample{}
	for _, s := range samples {
		byPID[s.PID] = append(byPID[s.PID], s)
	}
	prof, err := analyze.LoadCPU(a, analyze.Options{})
	if err != nil {
		t.Fatal(err)
	}
	folded := map[string][]analyze.FoldedStack{} // by root frame "name-pid"
	for _, f := range prof.Folded(analyze.FoldOptions{WithPID: true}) {
		folded[f.Frames[0]] = append(folded[f.Frames[0]], f)
	}

	checked := 0
	for _, pid := range pids {
		ls := lives[pid]
		if lostProc > 0 && (len(ls) != 2 || !ls[0].ForkSeen || !ls[1].ForkSeen || ls[0].Execs != 1 || ls[1].Execs != 1 || !ls[0].Exited || !ls[1].Exited) {
			continue
		}
		checked++
		if len(ls) != 2 {
			t.Errorf("pid %d: %d lives in the processes table, want 2 (incarnA then incarnB): %+v", pid, len(ls), ls)
			continue
		}
		A, B := ls[0], ls[1]
		if filepath.Base(A.Exe) != "incarnA" || filepath.Base(B.Exe) != "incarnB" || A.Comm != "incarnA" || B.Comm != "incarnB" {
			t.Errorf("pid %d: lives run %s (%s) then %s (%s), want incarnA then incarnB", pid, A.Exe, A.Comm, B.Exe, B.Comm)
		}
		if A.StartNs == B.StartNs || !A.Exited || !B.Exited || A.ExitCode != 0 || B.ExitCode != 0 || A.ExitNs > B.FirstSeen || !A.ForkSeen || !B.ForkSeen {
			t.Errorf("pid %d: lives not kept apart: A=%+v B=%+v", pid, A, B)
		}
		// Every sample of the pid lies in one of its lives and carries
		// that life's thread name.
		var inA, inB uint64
		for _, s := range byPID[pid] {
			switch {
			case s.TimeNs >= A.FirstSeen && s.TimeNs <= A.ExitNs:
				inA++
				if s.Comm != "incarnA" && s.Comm != "reuser" {
					t.Errorf("pid %d: sample at %d in life A has comm %q", pid, s.TimeNs, s.Comm)
				}
			case s.TimeNs >= B.FirstSeen && s.TimeNs <= B.ExitNs:
				inB++
				if s.Comm != "incarnB" && s.Comm != "reuser" {
					t.Errorf("pid %d: sample at %d in life B has comm %q", pid, s.TimeNs, s.Comm)
				}
			default:
				t.Errorf("pid %d: sample at %d outside both lives [%d,%d] [%d,%d]", pid, s.TimeNs, A.FirstSeen, A.ExitNs, B.FirstSeen, B.ExitNs)
			}
		}
		// The analysis attributes each life's samples to that life's
		// program, with that program's functions.
		checkLife := func(name, own, other string, want uint64) {
			var got uint64
			for _, f := range folded[fmt.Sprintf("%s-%d", name, pid)] {
				got += f.Count
				text := strings.Join(f.Frames, ";")
				if strings.Contains(text, other) {
					t.Errorf("pid %d: %s's stack has the other life's function: %s", pid, name, text)
				}
			}
			if got != want {
				t.Errorf("pid %d: the profile gives %s %d samples, %d were taken in that life", pid, name, got, want)
			}
		}
		checkLife("incarnA", "burn_alpha", "burn_beta", inA)
		checkLife("incarnB", "burn_beta", "burn_alpha", inB)
		if inA == 0 || inB == 0 {
			t.Logf("pid %d: %d samples in life A, %d in life B", pid, inA, inB)
		}
	}
	if checked < want/2 {
		t.Errorf("only %d of %d reused pids could be checked", checked, len(pids))
	}
	// The hot functions are told apart in the whole profile too.
	var alphaN, betaN uint64
	for root, fs := range folded {
		for _, f := range fs {
			leafish := strings.Join(f.Frames, ";")
			if strings.HasPrefix(root, "incarnA-") && strings.Contains(leafish, "burn_alpha") {
				alphaN += f.Count
			}
			if strings.HasPrefix(root, "incarnB-") && strings.Contains(leafish, "burn_beta") {
				betaN += f.Count
			}
		}
	}
	if alphaN == 0 || betaN == 0 {
		t.Errorf("burn_alpha under incarnA: %d samples, burn_beta under incarnB: %d", alphaN, betaN)
	}
}

// forkerSrc forks n children that each exec `sleep 1` (alive long enough
// for the recorder to attach its per-process probes), waits for them,
// creates a marker file, then sleeps so the recorder can be inspected while
// it still runs.
const forkerSrc = `#include <stdlib.h>
#include <unistd.h>
#include <fcntl.h>
#include <sys/wait.h>

int main(int argc, char **argv) {
	int n = atoi(argv[1]);
	for (int i = 0; i < n; i++) {
		pid_t pid = fork();
		if (pid == 0) {
			execl("/bin/sleep", "sleep", "1", (char *)0);
			_exit(127);
		}
	}
	while (wait(0) > 0)
		;
	close(creat(argv[3], 0644));
	sleep(atoi(argv[2]));
	return 0;
}
`

// perfEventFDs counts the perf_event file descriptors a process holds
// (each uprobe link is one).
func perfEventFDs(pid int) int {
	fds, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	n := 0
	for _, fd := range fds {
		if target, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, fd.Name())); err == nil && target == "anon_inode:[perf_event]" {
			n++
		}
	}
	return n
}

// A target that forks and execs many short-lived children under -p mem:
// the per-process uprobes of children that exited are released, so the
// recorder's file descriptors (and the kernel's uprobe list, and the time
// to detach at the end) stay proportional to the live targets, not to every
// process the window ever saw.
func TestMemUprobesOfExitedChildrenReleased(t *testing.T) {
	testenv.RequireBPF(t)
	bin := buildSelf(t)
	forker := buildC(t, "forker", forkerSrc)
	dir := t.TempDir()
	out := filepath.Join(dir, "mem-forks.bpfsnap")
	done := filepath.Join(dir, "children-done")
	const children = 30
	cmd := exec.Command(bin, "capture", "-p", "mem", "-d", "2m", "-o", out, "--", forker, fmt.Sprint(children), "4", done)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// The forker is asleep once its children are done; its own probes
	// (one libc: a handful of uprobes) are all that should be attached.
	waitFor(t, "the forker's children", 60*time.Second, func() bool {
		_, err := os.Stat(done)
		return err == nil
	})
	time.Sleep(1500 * time.Millisecond) // let the process reader catch up with the last exits
	held := perfEventFDs(cmd.Process.Pid)
	err := waitExit(cmd, 5*time.Minute)
	if err != nil {
		t.Fatalf("capture: %v\n%s", err, stderr.String())
	}
	t.Logf("%d children forked and exited; the recorder held %d perf_event fds (uprobe links) afterwards", children, held)
	if held > 50 {
		t.Errorf("the recorder still holds %d uprobe links after %d children exited: per-pid probes of exited processes are never released (capture/mem.go attach/Stop)", held, children)
	}
}
