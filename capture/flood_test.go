//go:build linux

package capture

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bpfsnap/bpfsnap/formats"
	"github.com/bpfsnap/bpfsnap/internal/testenv"
)

// stormSrc forks children that exec a program, keeping par of them in
// flight, for a number of seconds; it writes what it did to a file so the
// test knows how many process events the kernel offered to the recorder.
const stormSrc = `#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <sys/wait.h>
#include <time.h>

static double now(void) {
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
	if (argc != 5) return 2;
	double end = now() + atof(argv[1]);
	const char *prog = argv[2];
	int par = atoi(argv[3]);
	long forked = 0, ok = 0, failed = 0;
	int inflight = 0;
	while (now() < end || inflight > 0) {
		if (now() < end && inflight < par) {
			pid_t pid = fork();
			if (pid == 0) {
				execl(prog, prog, (char *)0);
				_exit(127);
			}
			if (pid > 0) {
				forked++;
				inflight++;
				continue;
			}
		}
		int st;
		if (wait(&st) > 0) {
			inflight--;
			if (WIFEXITED(st) && WEXITSTATUS(st) == 0) ok++; else failed++;
		}
	}
	FILE *f = fopen(argv[4], "w");
	if (!f) return 3;
	fprintf(f, "%ld %ld %ld\n", forked, ok, failed);
	fclose(f);
	return 0;
}
`

// floodFigures is what one flood run measured, for the log and
// docs/reliability.md.
type floodFigures struct {
	Forked, ExecOK   int64
	OfferedProcess   int64 // process events the kernel offered to the ring
	RecordedProcess  int64 // kernel process rows in the archive
	Drops            map[string]uint64
	CPUSamples       int64
	PeakRSSKiB       uint64
	Samples          []rssSample
	Window           time.Duration
	HTTPRequestsSent int64
}

// runFlood drives a fork/exec storm (the process ring), 5 kHz sampling of
// it (the cpu ring) and an HTTP request loop on loopback (the http ring)
// through one-page ring buffers, far more than they can take, and checks
// that every lost event is counted, that the recorder's memory stays under
// the bound, and that analyze and report show the loss.
func runFlood(t *testing.T, window time.Duration) floodFigures {
	t.Helper()
	testenv.RequireBPF(t)
	bin := buildSelf(t)
	storm := buildC(t, "storm", stormSrc)
	dir := t.TempDir()
	out := filepath.Join(dir, "flood.bpfsnap")
	counts := filepath.Join(dir, "counts")

	// HTTP on loopback: the cgroup_skb programs see every segment of the
	// host, so this floods the http ring even though the capture targets
	// the storm only (non-target rows are dropped in user space after the
	// ring; ring losses are what we want to see counted).
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok")) })}
	go srv.Serve(ln)
	defer srv.Close()
	ctx, stopLoad := context.WithCancel(context.Background())
	var sent int64
	var loadWG sync.WaitGroup
	var sentMu sync.Mutex
	for range 2 {
		loadWG.Add(1)
		go func() {
			defer loadWG.Done()
			client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1}}
			url := "http://" + ln.Addr().String() + "/flood"
			for ctx.Err() == nil {
				resp, err := client.Get(url)
				if err != nil {
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				sentMu.Lock()
				sent++
				sentMu.Unlock()
			}
		}()
	}

	secs := fmt.Sprintf("%.1f", window.Seconds())
	// This test process (the HTTP server and its clients) is a target
	// too: a targeted capture skips other processes' HTTP in the kernel,
	// and the flood must reach the ring. It forks nothing in the window.
	cmd := exec.Command(bin, "capture", "--ring-pages", "1", "-p", "cpu,http", "--freq", "4999", "--unwind", "fp",
		"--pid", fmt.Sprint(os.Getpid()),
		"-d", (window + 2*time.Minute).String(), "-o", out, "--", storm, secs, "/bin/true", "4", counts)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	watch := watchRSS(cmd.Process.Pid, 200*time.Millisecond)
	err = waitExit(cmd, window+3*time.Minute)
	samples, peak := watch.finish(cmd.ProcessState)
	stopLoad()
	loadWG.Wait()
	if err != nil {
		t.Fatalf("capture: %v\n%s", err, stderr.String())
	}

	var f floodFigures
	f.Samples, f.PeakRSSKiB, f.HTTPRequestsSent = samples, peak, sent
	raw, err := os.ReadFile(counts)
	if err != nil {
		t.Fatalf("the storm did not finish: %v", err)
	}
	var failed int64
	if _, err := fmt.Sscan(string(raw), &f.Forked, &f.ExecOK, &failed); err != nil {
		t.Fatal(err)
	}
	a, err := formats.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	m := a.Manifest()
	a.Close()
	f.Drops, f.CPUSamples, f.Window = m.Drops, m.Tables[formats.TableCPUSamples], m.Window.Duration()
	_, recorded := kernelProcessRows(t, out)
	f.RecordedProcess = int64(recorded)
	// The storm's own exec (from the held child) and exit, plus a fork and
	// an exit per child, plus an exec per child whose exec succeeded.
	f.OfferedProcess = 2 + 2*f.Forked + f.ExecOK

	t.Logf("window %s: storm forked %d children (%d exec'd, %d failed); process events offered %d, recorded %d, drops %v; %d cpu samples; %d HTTP requests sent; recorder peak RSS %.1f MiB",
		f.Window.Round(time.Millisecond), f.Forked, f.ExecOK, failed, f.OfferedProcess, f.RecordedProcess, f.Drops, f.CPUSamples, f.HTTPRequestsSent, mib(f.PeakRSSKiB))

	if !m.Complete || m.Window.EndReason != "command-exited" || m.Options["ring_pages"] != "1" {
		t.Errorf("manifest: complete=%v end=%s options=%v", m.Complete, m.Window.EndReason, m.Options)
	}
	// Nothing lost silently: every process event the kernel offered is
	// either a row or counted as a ring-buffer drop.
	if got := f.RecordedProcess + int64(f.Drops["process.ringbuf_full"]); got != f.OfferedProcess {
		rows, _ := kernelProcessRows(t, out)
		kinds := map[string]int{}
		for _, r := range rows {
			kinds[r.Kind]++
		}
		t.Errorf("process events: %d recorded + %d counted drops = %d, the storm caused %d (rows by kind %v; caused %d forks, %d execs, %d exits)",
			f.RecordedProcess, f.Drops["process.ringbuf_full"], got, f.OfferedProcess, kinds, f.Forked, f.ExecOK+1, f.Forked+1)
	}
	if f.Drops["process.targets_full"] != 0 {
		t.Errorf("target map overflowed: %d", f.Drops["process.targets_full"])
	}
	for _, reason := range []string{"process.ringbuf_full", "cpu.ringbuf_full", "http.ringbuf_full"} {
		if f.Drops[reason] == 0 {
			t.Errorf("%s: no drops counted from a one-page ring under a flood (drops %v)", reason, f.Drops)
		}
	}
	if f.CPUSamples == 0 || f.RecordedProcess == 0 {
		t.Errorf("nothing recorded at all: %d cpu samples, %d process rows", f.CPUSamples, f.RecordedProcess)
	}
	// The recorder's memory bound under a flood (see docs/reliability.md).
	const boundMiB = 256
	if mib(f.PeakRSSKiB) >= boundMiB {
		t.Errorf("recorder peak RSS %.1f MiB, bound %d MiB", mib(f.PeakRSSKiB), boundMiB)
	}

	// analyze prints every drop with its count; the report lists them.
	text, err := exec.Command(bin, "analyze", out).CombinedOutput()
	if err != nil {
		t.Fatalf("analyze: %v: %s", err, text)
	}
	html := filepath.Join(dir, "flood.html")
	if msg, err := exec.Command(bin, "report", "-o", html, out).CombinedOutput(); err != nil {
		t.Fatalf("report: %v: %s", err, msg)
	}
	page, err := os.ReadFile(html)
	if err != nil {
		t.Fatal(err)
	}
	for _, reason := range []string{"process.ringbuf_full", "cpu.ringbuf_full", "http.ringbuf_full"} {
		want := fmt.Sprintf("%s: %d events lost", reason, f.Drops[reason])
		if !strings.Contains(string(text), "warning: "+want) {
			t.Errorf("analyze does not show %q:\n%s", want, text)
		}
		if !strings.Contains(string(page), want) {
			t.Errorf("the report does not show %q", want)
		}
	}
	return f
}

// The quick flood (make test): ~8 s of storm through one-page rings.
func TestFloodDropsCountedMemoryBounded(t *testing.T) {
	runFlood(t, 8*time.Second)
}

// The long flood (make stress): a minute of storm.
func TestStressFlood(t *testing.T) {
	requireStress(t)
	runFlood(t, time.Minute)
}
