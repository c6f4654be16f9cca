//go:build linux

package capture

import (
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bpfsnap/bpfsnap/formats"
	"github.com/bpfsnap/bpfsnap/internal/testenv"
)

// steadySrc is a steady mixed workload for long windows: every 20 ms it
// forks and execs a short program, burns ~5 ms of CPU in a few distinct
// functions, and mallocs/frees blocks from a bounded live set (so the
// memory probe has a steady stream of events with nothing leaking).
const steadySrc = `#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/wait.h>
#include <time.h>

static double now(void) {
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

__attribute__((noinline)) static unsigned long burn_a(unsigned long x) { for (int i = 0; i < 200000; i++) x = x * 6364136223846793005UL + 1; return x; }
__attribute__((noinline)) static unsigned long burn_b(unsigned long x) { for (int i = 0; i < 100000; i++) x ^= x << 13, x ^= x >> 7; return x; }

#define LIVE 256
static void *live[LIVE];

int main(int argc, char **argv) {
	double end = now() + atof(argv[1]);
	unsigned long x = 1, n = 0;
	while (now() < end) {
		pid_t pid = fork();
		if (pid == 0) {
			execl("/bin/true", "true", (char *)0);
			_exit(127);
		}
		x = burn_a(x);
		x = burn_b(x);
		for (int i = 0; i < 40; i++, n++) {
			int slot = (n * 7919) % LIVE;
			free(live[slot]);
			live[slot] = malloc(64 + (n % 4096));
			memset(live[slot], (int)x, 16);
		}
		if (pid > 0) waitpid(pid, 0, 0);
		usleep(15000);
	}
	return (int)(x & 0);
}
`

// runLongWindow records a steady workload (a forking, burning, allocating C
// program and a Go HTTP server under a paced client) for window, sampling
// the recorder's RSS every `every`, and returns the samples.
func runLongWindow(t *testing.T, window, every time.Duration) ([]rssSample, uint64, *formats.Manifest) {
	t.Helper()
	testenv.RequireBPF(t)
	bin := buildSelf(t)
	steady := buildC(t, "steady", steadySrc)
	server := buildGo(t, goServerSrc)
	port := freePort(t)
	srvPID := startServer(t, exec.Command(server, strconv.Itoa(port)), port)
	load := exec.Command(steady, fmt.Sprintf("%.0f", (window+time.Minute).Seconds()))
	if err := load.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { load.Process.Kill(); load.Wait() })

	out := filepath.Join(t.TempDir(), "long.bpfsnap")
	cmd := exec.Command(bin, "capture", "-p", "cpu,http,mem", "--pid", strconv.Itoa(srvPID), "--pid", strconv.Itoa(load.Process.Pid),
		"-d", window.String(), "-o", out)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	watch := watchRSS(cmd.Process.Pid, every)
	// Uprobe links (perf_event fds) held by the recorder, sampled too: they
	// cost kernel memory and a synchronize_rcu each when released.
	var fdTrace []int
	fdStop := make(chan struct{})
	fdDone := make(chan struct{})
	go func() {
		defer close(fdDone)
		tick := time.NewTicker(every)
		defer tick.Stop()
		for {
			select {
			case <-fdStop:
				return
			case <-tick.C:
				fdTrace = append(fdTrace, perfEventFDs(cmd.Process.Pid))
			}
		}
	}()

	// A paced client: ~200 requests/s over distinct ids (one route).
	var sent atomic.Int64
	stop := make(chan struct{})
	go func() {
		client := &http.Client{}
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			resp, err := client.Get(fmt.Sprintf("http://127.0.0.1:%d/slow/%d", port, i))
			if err == nil {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				sent.Add(1)
			}
		}
	}()
	err := waitExit(cmd, window+2*time.Minute)
	close(stop)
	close(fdStop)
	<-fdDone
	samples, peak := watch.finish(cmd.ProcessState)
	if err != nil {
		t.Fatalf("capture: %v\n%s", err, stderr.String())
	}
	a, err := formats.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	m := a.Manifest()
	var trace []string
	for _, s := range samples {
		trace = append(trace, fmt.Sprintf("%.0fs:%.1f", s.At.Seconds(), mib(s.RSS)))
	}
	t.Logf("window %s, %d HTTP requests sent, tables %v, drops %v, peak RSS %.1f MiB; RSS MiB over time: %s; perf_event fds over time: %v",
		m.Window.Duration().Round(time.Second), sent.Load(), m.Tables, m.Drops, mib(peak), strings.Join(trace, " "), fdTrace)
	if n := len(fdTrace); n >= 4 {
		early, late := fdTrace[n/4], fdTrace[n-2]
		if late > early+early/2+10 {
			t.Errorf("the recorder's uprobe links grow over the window: %d at a quarter, %d at the end (per-process probes of exited targets are not released)", early, late)
		}
	}
	if !m.Complete || m.Tables[formats.TableCPUSamples] == 0 || m.Tables[formats.TableHTTPRequests] == 0 || m.Tables[formats.TableProcesses] == 0 {
		t.Errorf("the long window did not record every probe set: %v", m.Tables)
	}
	return samples, peak, m
}

// checkFlat asserts the recorder's RSS in the last part of the window is
// within 1.2x of its peak in an early reference part (after warm-up).
func checkFlat(t *testing.T, samples []rssSample, ref, last [2]time.Duration) {
	t.Helper()
	early, n1 := maxRSSBetween(samples, ref[0], ref[1])
	late, n2 := maxRSSBetween(samples, last[0], last[1])
	if n1 == 0 || n2 == 0 {
		t.Fatalf("no RSS samples in %v (%d) or %v (%d)", ref, n1, last, n2)
	}
	t.Logf("RSS max %.1f MiB in %v, %.1f MiB in %v (ratio %.2f)", mib(early), ref, mib(late), last, float64(late)/float64(early))
	if float64(late) > 1.2*float64(early) {
		t.Errorf("recorder memory grows over a long window: max %.1f MiB in %v, %.1f MiB in %v", mib(early), ref, mib(late), last)
	}
}

// Quick form (make test): 45 s, the last 10 s against 15-25 s.
func TestLongWindowMemoryFlatQuick(t *testing.T) {
	samples, _, _ := runLongWindow(t, 45*time.Second, time.Second)
	checkFlat(t, samples, [2]time.Duration{15 * time.Second, 25 * time.Second}, [2]time.Duration{35 * time.Second, 45 * time.Second})
}

// Long form (make stress): 10 minutes, the last minute against minute 2.
func TestStressLongWindowMemoryFlat(t *testing.T) {
	requireStress(t)
	samples, _, _ := runLongWindow(t, 10*time.Minute, 5*time.Second)
	checkFlat(t, samples, [2]time.Duration{time.Minute, 2 * time.Minute}, [2]time.Duration{9 * time.Minute, 10 * time.Minute})
}
