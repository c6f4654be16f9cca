//go:build linux

package capture

import (
	"fmt"
	"math/rand"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"

	"github.com/bpfsnap/bpfsnap/analyze"
	"github.com/bpfsnap/bpfsnap/formats"
	"github.com/bpfsnap/bpfsnap/internal/testenv"
)

// killWorkload allocates, frees and burns CPU until killed: something for
// every probe set to record when it is the capture's -- COMMAND.
const killWorkload = `#include <stdlib.h>
#include <unistd.h>
int main(void) {
	volatile unsigned long x = 0;
	for (;;) {
		for (int i = 0; i < 2000; i++) { char *p = malloc(64 + i % 512); p[0] = i; x += p[0]; free(p); }
		for (int i = 0; i < 200000; i++) x += i;
		usleep(1000);
	}
}
`

// The moments a capture is killed at (docs/reliability.md).
const (
	phaseBeforeAttach = "before attach" // 0–40 ms after start: starting up, loading nothing yet
	phaseMidAttach    = "mid-attach"    // after its first program is loaded, before it is ready
	phaseMidSeal      = "mid-seal"      // while a chunk is being written (a .tmp- file exists)
	phaseFinalize     = "finalize"      // after SIGINT: stopping, symbolizing, bundling
)

// bpfObjectsAlive returns which of the recorded programs and links the
// kernel still has.
func bpfObjectsAlive(progs, links map[uint32]bool) (alive []string) {
	for id := range progs {
		if p, err := ebpf.NewProgramFromID(ebpf.ProgramID(id)); err == nil {
			p.Close()
			alive = append(alive, fmt.Sprintf("prog %d", id))
		}
	}
	for id := range links {
		if l, err := link.NewFromID(link.ID(id)); err == nil {
			l.Close()
			alive = append(alive, fmt.Sprintf("link %d", id))
		}
	}
	sort.Strings(alive)
	return alive
}

// killOutcome is what one kill left.
type killOutcome struct {
	combo, phase string
	progs, links int           // recorder's programs and links seen before the kill
	result       string        // "recovered", "complete", "nothing written"
	rows         int64         // rows of the readable archive
	tmpSeen      bool          // mid-seal: killed while a chunk file was being written
	tmpZip       bool          // finalize: killed while the zip was being written
	released     time.Duration // kill to the last program and link gone
}

// make stress: captures with every probe set are killed with SIGKILL at
// random moments, many times. Each leftover NAME.partial/ recovers to an
// archive that opens and analyzes; no program or link the recorder created
// outlives it (its own ids, read from fdinfo before the kill: other tests
// may have programs attached).
func TestStressKill9RandomMoments(t *testing.T) {
	requireStress(t)
	testenv.RequireBPF(t)
	bin := buildSelf(t)
	workload := buildC(t, "killwork", killWorkload)
	seed := time.Now().UnixNano()
	rng := rand.New(rand.NewSource(seed))
	t.Logf("seed %d", seed)

	// HTTP traffic for the whole-host captures' http probe set.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok")) })}
	go srv.Serve(ln)
	defer srv.Close()
	var stopLoad atomic.Bool
	var loadWG sync.WaitGroup
	loadWG.Add(1)
	go func() {
		defer loadWG.Done()
		c := &http.Client{Timeout: time.Second}
		for !stopLoad.Load() {
			if resp, err := c.Get("http://" + ln.Addr().String() + "/kill9"); err == nil {
				resp.Body.Close()
			}
			time.Sleep(2 * time.Millisecond)
		}
	}()
	defer func() { stopLoad.Store(true); loadWG.Wait() }()

	combos := []struct {
		name string
		args []string
	}{
		{"default sets (process, cpu, http), whole host", nil},
		{"process+cpu", []string{"-p", "cpu"}},
		{"process+http", []string{"-p", "http"}},
		{"process+mem -- COMMAND", []string{"-p", "mem", "--", workload}},
		{"process+cpu+http+mem -- COMMAND", []string{"-p", "cpu,http,mem", "--", workload}},
	}
	phases := []string{phaseBeforeAttach, phaseMidAttach, phaseMidSeal, phaseFinalize}
	reps := 5 // 100 kills, ~3.5 minutes
	var outcomes []killOutcome
	dir := t.TempDir()
	n := 0
	for rep := 0; rep < reps; rep++ {
		for _, c := range combos {
			for _, phase := range phases {
				n++
				out := filepath.Join(dir, fmt.Sprintf("k%03d.bpfsnap", n))
				o := killOnce(t, bin, out, c.args, phase, rng)
				o.combo = c.name
				outcomes = append(outcomes, o)
				if t.Failed() {
					t.Fatalf("iteration %d (%s, %s) failed; seed %d", n, c.name, phase, seed)
				}
			}
		}
	}
	summarizeKills(t, outcomes)
}

// killOnce starts one capture, kills it at a random moment of the phase,
// and checks what it left.
func killOnce(t *testing.T, bin, out string, args []string, phase string, rng *rand.Rand) killOutcome {
	t.Helper()
	full := append([]string{"capture", "-d", "60s", "-o", out}, args...)
	cmd := exec.Command(bin, full...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // the -- COMMAND dies with its group
	// A file, not a pipe: the -- COMMAND inherits it and outlives the
	// killed recorder, and a pipe would hold cmd.Wait until it exits.
	stderr, err := os.Create(out + ".stderr")
	if err != nil {
		t.Fatal(err)
	}
	defer stderr.Close()
	cmd.Stderr = stderr
	progs, links := map[uint32]bool{}, map[uint32]bool{}
	o := killOutcome{phase: phase}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	defer syscall.Kill(-pid, syscall.SIGKILL)
	exited := make(chan struct{})
	var waitErr error
	go func() { waitErr = cmd.Wait(); close(exited) }()
	partial := out + formats.PartialSuffix
	poll := func() { bpfObjectIDs(pid, progs, links) }
	alive := func() bool {
		select {
		case <-exited:
			return false
		default:
			return true
		}
	}
	// sleepPolling waits d while recording the recorder's objects.
	sleepPolling := func(d time.Duration) {
		end := time.Now().Add(d)
		for time.Now().Before(end) && alive() {
			poll()
			time.Sleep(time.Millisecond)
		}
	}
	waitUntil := func(limit time.Duration, cond func() bool) bool {
		end := time.Now().Add(limit)
		for time.Now().Before(end) && alive() {
			poll()
			if cond() {
				return true
			}
			time.Sleep(time.Millisecond)
		}
		return false
	}
	sealed := func() bool {
		_, err := os.Stat(filepath.Join(partial, "processes-000001.parquet"))
		return err == nil
	}
	switch phase {
	case phaseBeforeAttach:
		time.Sleep(time.Duration(rng.Intn(40)) * time.Millisecond)
	case phaseMidAttach:
		waitUntil(10*time.Second, func() bool { return len(progs) > 0 })
		sleepPolling(time.Duration(rng.Intn(400)) * time.Millisecond)
	case phaseMidSeal:
		waitUntil(15*time.Second, sealed)
		sleepPolling(time.Duration(rng.Intn(1500)) * time.Millisecond)
		// Kill while a chunk is being written when one is seen within
		// two seal intervals (they take a few ms each second): the
		// directory alone is watched, fdinfo was read just before.
		poll()
		for end := time.Now().Add(2 * time.Second); time.Now().Before(end) && alive(); {
			if tmpChunk(partial) {
				o.tmpSeen = true
				break
			}
			time.Sleep(200 * time.Microsecond)
		}
	case phaseFinalize:
		waitUntil(15*time.Second, sealed)
		sleepPolling(time.Duration(500+rng.Intn(1000)) * time.Millisecond)
		poll()
		cmd.Process.Signal(os.Interrupt)
		sleepPolling(time.Duration(rng.Intn(900)) * time.Millisecond)
	}
	if phase != phaseMidSeal {
		poll()
	}
	killed := time.Now()
	cmd.Process.Signal(syscall.SIGKILL)
	<-exited
	o.progs, o.links = len(progs), len(links)

	// Every program and link the recorder held goes with it.
	var left []string
	for {
		if left = bpfObjectsAlive(progs, links); len(left) == 0 || time.Since(killed) > 30*time.Second {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	o.released = time.Since(killed)
	if len(left) > 0 {
		t.Errorf("%s: %v outlive the killed recorder by %s", phase, left, o.released.Round(time.Millisecond))
	}

	// A zip being bundled when the kill came stays as a temporary file
	// beside the output (readers and recover ignore .tmp- names).
	if _, err := os.Stat(filepath.Join(filepath.Dir(out), ".tmp-"+filepath.Base(out))); err == nil {
		o.tmpZip = true
	}

	// What it left is readable: the finished archive, or the partial
	// directory once recovered.
	exitedNormally := waitErr == nil
	path := out
	switch _, errOut := os.Stat(out); {
	case errOut == nil:
		o.result = "complete"
	case dirExists(partial):
		if _, err := os.Stat(filepath.Join(partial, formats.ManifestName)); err != nil {
			// Killed between creating the directory and its first
			// manifest: nothing was recorded yet, and recover says so.
			o.result = "empty partial"
			msg, err := exec.Command(bin, "recover", partial).CombinedOutput()
			if err == nil || !strings.Contains(string(msg), formats.ManifestName) {
				t.Errorf("%s: recover of a partial directory without a manifest: %v: %s", phase, err, msg)
			}
			return o
		}
		msg, err := exec.Command(bin, "recover", partial).CombinedOutput()
		if err != nil {
			t.Errorf("%s: recover %s: %v: %s", phase, partial, err, msg)
			return o
		}
		o.result = "recovered"
	default:
		o.result = "nothing written"
		if exitedNormally {
			msg, _ := os.ReadFile(stderr.Name())
			t.Errorf("%s: the capture exited normally (%s) and left no archive", phase, msg)
		}
		return o
	}
	a, err := formats.Open(path)
	if err != nil {
		t.Errorf("%s: %s: %v", phase, o.result, err)
		return o
	}
	m := a.Manifest()
	rows, err := formats.ReadAll[formats.ProcessEvent](a, formats.TableProcesses)
	a.Close()
	if err != nil || !m.Complete {
		t.Errorf("%s: %s archive: complete=%v, processes: %v", phase, o.result, m.Complete, err)
		return o
	}
	for _, n := range m.Tables {
		o.rows += n
	}
	if len(rows) == 0 && o.result == "recovered" && m.Tables[formats.TableProcesses] > 0 {
		t.Errorf("%s: manifest counts %d process rows, none read", phase, m.Tables[formats.TableProcesses])
	}
	if _, err := analyze.Load(path, analyze.Request{Slices: 6}); err != nil {
		t.Errorf("%s: analyze %s archive: %v", phase, o.result, err)
	}
	return o
}

func tmpChunk(dir string) bool {
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), ".tmp-") {
			return true
		}
	}
	return false
}

func dirExists(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.IsDir()
}

// summarizeKills logs the figures docs/reliability.md quotes.
func summarizeKills(t *testing.T, outcomes []killOutcome) {
	type key struct{ phase, result string }
	counts := map[key]int{}
	var maxRelease time.Duration
	tmp, zips := 0, 0
	var maxProgs, maxLinks int
	var rows []int64
	for _, o := range outcomes {
		counts[key{o.phase, o.result}]++
		maxRelease = max(maxRelease, o.released)
		maxProgs, maxLinks = max(maxProgs, o.progs), max(maxLinks, o.links)
		if o.result == "recovered" {
			rows = append(rows, o.rows)
		}
		if o.tmpSeen {
			tmp++
		}
		if o.tmpZip {
			zips++
		}
		t.Logf("%-36s %-14s progs %3d links %3d -> %-15s rows %7d, objects gone %s after the kill",
			o.combo, o.phase, o.progs, o.links, o.result, o.rows, o.released.Round(time.Millisecond))
	}
	var lines []string
	for k, n := range counts {
		lines = append(lines, fmt.Sprintf("%s → %s: %d", k.phase, k.result, n))
	}
	sort.Strings(lines)
	t.Logf("%d kills: %s; %d mid-seal kills with a chunk file being written; %d finalize kills left a half-written .tmp- zip; up to %d programs and %d links per recorder, all gone within %s of the kill",
		len(outcomes), strings.Join(lines, "; "), tmp, zips, maxProgs, maxLinks, maxRelease.Round(time.Millisecond))
	if len(rows) == 0 {
		t.Errorf("no kill left a partial directory to recover")
	}
	if counts[key{phaseMidSeal, "recovered"}] == 0 || counts[key{phaseMidAttach, "recovered"}]+counts[key{phaseMidAttach, "nothing written"}] == 0 {
		t.Errorf("the phases were not reached: %v", lines)
	}
}
