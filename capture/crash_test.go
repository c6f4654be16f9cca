//go:build linux

package capture

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand"
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

func waitFor(t *testing.T, what string, limit time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// linkIDs lists the bpf_link ids a process holds, from its fdinfo.
func linkIDs(pid int) []link.ID {
	links := map[uint32]bool{}
	bpfObjectIDs(pid, map[uint32]bool{}, links)
	ids := make([]link.ID, 0, len(links))
	for id := range links {
		ids = append(ids, link.ID(id))
	}
	return ids
}

// bpfObjectIDs adds the ids of the BPF programs and links process pid
// holds (from /proc/PID/fdinfo) to progs and links.
func bpfObjectIDs(pid int, progs, links map[uint32]bool) {
	fds, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fdinfo", pid))
	for _, fd := range fds {
		f, err := os.Open(fmt.Sprintf("/proc/%d/fdinfo/%s", pid, fd.Name()))
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			var id uint32
			if _, err := fmt.Sscanf(sc.Text(), "prog_id:\t%d", &id); err == nil {
				progs[id] = true
			} else if _, err := fmt.Sscanf(sc.Text(), "link_id:\t%d", &id); err == nil {
				links[id] = true
			}
		}
		f.Close()
	}
}

// kill -9 of a capture leaves a readable .partial directory that recover
// seals, and the kernel detaches every program the recorder attached.
func TestKill9LeavesRecoverablePartial(t *testing.T) {
	testenv.RequireBPF(t)
	bin := buildSelf(t)
	out := filepath.Join(t.TempDir(), "killed.bpfsnap")
	cmd := exec.Command(bin, "capture", "-d", "60s", "-o", out)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	chunk := filepath.Join(out+formats.PartialSuffix, "processes-000001.parquet")
	waitFor(t, "the first sealed chunk", 15*time.Second, func() bool {
		_, err := os.Stat(chunk)
		return err == nil
	})
	links := linkIDs(cmd.Process.Pid)
	if len(links) < 3 {
		t.Fatalf("recorder holds %d links, want the 3 process tracepoints at least", len(links))
	}
	cmd.Process.Kill()
	cmd.Wait()
	for _, id := range links {
		if l, err := link.NewFromID(id); err == nil {
			l.Close()
			t.Errorf("link %d still exists after kill -9", id)
		} else if !errors.Is(err, os.ErrNotExist) {
			t.Errorf("link %d: %v", id, err)
		}
	}

	// inspect reads the partial directory as it is.
	js, err := exec.Command(bin, "inspect", "--json", out+formats.PartialSuffix).Output()
	if err != nil {
		t.Fatalf("inspect partial: %v", err)
	}
	var doc struct {
		Manifest  formats.Manifest    `json:"manifest"`
		Tables    []formats.TableInfo `json:"tables"`
		Processes []struct {
			PID uint32 `json:"pid"`
		} `json:"processes"`
	}
	if err := json.Unmarshal(js, &doc); err != nil {
		t.Fatal(err)
	}
	if doc.Manifest.Complete || len(doc.Processes) == 0 || len(doc.Tables) == 0 {
		t.Fatalf("partial inspect: complete=%v, %d processes, tables %+v", doc.Manifest.Complete, len(doc.Processes), doc.Tables)
	}

	msg, err := exec.Command(bin, "recover", out+formats.PartialSuffix).CombinedOutput()
	if err != nil {
		t.Fatalf("recover: %v: %s", err, msg)
	}
	a, err := formats.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	m := a.Manifest()
	if !m.Complete || !m.Recovered || m.Window.EndReason != "crash" || m.Tables[formats.TableProcesses] < int64(len(doc.Processes)) {
		t.Fatalf("recovered manifest: %+v", m)
	}
}

// A full disk stops the capture with a clear error and a non-zero exit;
// chunks sealed before stay readable.
func TestFullDiskStopsCleanly(t *testing.T) {
	testenv.RequireBPF(t)
	bin := buildSelf(t)
	mnt := t.TempDir()
	if err := unix.Mount("tmpfs", mnt, "tmpfs", 0, "size=96k"); err != nil {
		testenv.Skip(t, "cannot mount a tmpfs: "+err.Error())
	}
	defer unix.Unmount(mnt, unix.MNT_DETACH)
	out := filepath.Join(mnt, "full.bpfsnap")
	cmd := exec.Command(bin, "capture", "-d", "30s", "-o", out)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// Let the first chunk (the /proc scan) seal, then fill the disk with
	// processes whose command lines do not compress.
	waitFor(t, "the first sealed chunk", 15*time.Second, func() bool {
		_, err := os.Stat(filepath.Join(out+formats.PartialSuffix, "processes-000001.parquet"))
		return err == nil
	})
	stop := make(chan struct{})
	go func() {
		noise := make([]byte, 3000)
		for {
			select {
			case <-stop:
				return
			default:
			}
			for i := range noise {
				noise[i] = byte('a' + rand.Intn(26))
			}
			exec.Command("/bin/true", string(noise)).Run()
		}
	}()
	err := waitExit(cmd, 25*time.Second)
	close(stop)
	var exitErr *exec.ExitError
	if !errors.As(err, &exitErr) {
		t.Fatalf("capture on a full disk: %v (stderr %q)", err, stderr.String())
	}
	lines := strings.Split(strings.TrimSpace(stderr.String()), "\n")
	last := lines[len(lines)-1]
	if !strings.Contains(last, "no space left on device") || !strings.Contains(last, out+formats.PartialSuffix) {
		t.Fatalf("error does not name the cause and the kept directory: %q", last)
	}
	a, err := formats.Open(out + formats.PartialSuffix)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	rows, err := formats.ReadAll[formats.ProcessEvent](a, formats.TableProcesses)
	if err != nil || len(rows) == 0 {
		t.Fatalf("sealed rows after a full disk: %d, %v", len(rows), err)
	}
}

func waitExit(cmd *exec.Cmd, limit time.Duration) error {
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		return err
	case <-time.After(limit):
		cmd.Process.Signal(syscall.SIGKILL)
		<-done
		return errors.New("capture did not stop on a full disk")
	}
}
