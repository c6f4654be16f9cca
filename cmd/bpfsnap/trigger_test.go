//go:build linux

package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/bpfsnap/bpfsnap/capture/recorder"
	"github.com/bpfsnap/bpfsnap/formats"
	"github.com/bpfsnap/bpfsnap/internal/testenv"
)

// `bpfsnap trigger` finds the flight recorder by its registration, makes
// it dump, and prints the archive; Ctrl-C then leaves the last window at
// -o and the registration goes.
func TestTriggerVerb(t *testing.T) {
	testenv.RequireBPF(t)
	bin := bpfsnapBin(t)
	out := filepath.Join(t.TempDir(), "node.bpfsnap")
	rec := exec.Command(bin, "capture", "--ring", "4s", "-p", "cpu", "-o", out)
	rec.Stderr = os.Stderr
	if err := rec.Start(); err != nil {
		t.Fatal(err)
	}
	defer rec.Process.Kill()
	deadline := time.Now().Add(60 * time.Second)
	registered := func() bool {
		for _, r := range recorder.RunningRecorders() {
			if r.PID == rec.Process.Pid {
				return true
			}
		}
		return false
	}
	for !registered() {
		if time.Now().After(deadline) {
			t.Fatal("the recorder never registered")
		}
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(2 * time.Second)
	got, err := exec.Command(bin, "trigger", "--output", out, "--wait", "30s").CombinedOutput()
	if err != nil {
		t.Fatalf("trigger: %v: %s", err, got)
	}
	dump := strings.TrimSpace(string(got))
	if filepath.Dir(dump) != filepath.Dir(out) || !strings.HasPrefix(filepath.Base(dump), "node-") {
		t.Errorf("the dump %q is not beside -o %s with its time", dump, out)
	}
	a, err := formats.Open(dump)
	if err != nil {
		t.Fatal(err)
	}
	if d := a.Manifest().Dump; d == nil || d.Trigger != "signal" {
		t.Errorf("dump manifest: %+v", d)
	}
	a.Close()
	if msg, err := exec.Command(bin, "trigger", "--output", out+".other").CombinedOutput(); err == nil || !strings.Contains(string(msg), "no flight recorder writing") {
		t.Errorf("a trigger for another output: %v %s", err, msg)
	}
	rec.Process.Signal(syscall.SIGINT)
	if err := rec.Wait(); err != nil {
		t.Fatalf("the recorder ended with %v", err)
	}
	if _, err := formats.Open(out); err != nil {
		t.Errorf("no last window at -o: %v", err)
	}
	if registered() {
		t.Error("the registration outlived the recorder")
	}
}
