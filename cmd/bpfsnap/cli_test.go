package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/bpfsnap/bpfsnap/internal/testenv"
)

var (
	binOnce sync.Once
	binPath string
	binErr  error
)

func bpfsnapBin(t *testing.T) string {
	t.Helper()
	binOnce.Do(func() {
		dir, err := os.MkdirTemp("", "bpfsnap-cli-")
		if err != nil {
			binErr = err
			return
		}
		binPath = filepath.Join(dir, "bpfsnap")
		if out, err := exec.Command("go", "build", "-o", binPath, ".").CombinedOutput(); err != nil {
			binErr = &buildError{err, out}
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binPath
}

// runBin runs the built binary and returns its standard output; a
// failure fails the test with the command and its standard error.
func runBin(t *testing.T, args ...string) string {
	t.Helper()
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(bpfsnapBin(t), args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("bpfsnap %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return stdout.String()
}

type buildError struct {
	err error
	out []byte
}

func (e *buildError) Error() string { return e.err.Error() + ": " + string(e.out) }

// Errors are one clear line on stderr and a non-zero exit.
func TestErrorsAreOneLine(t *testing.T) {
	bin := bpfsnapBin(t)
	cases := [][]string{
		{"inspect", "/nonexistent/x.bpfsnap"},
		{"inspect"},
		{"analyze", "--from", "nonsense", "/nonexistent"},
		{"recover", "/nonexistent.partial"},
		{"nosuchverb"},
	}
	if runtime.GOOS == "linux" {
		cases = append(cases, []string{"capture", "-p", "nosuchprobe", "-d", "1s", "-o", filepath.Join(t.TempDir(), "x")})
	}
	for _, args := range cases {
		cmd := exec.Command(bin, args...)
		var stderr strings.Builder
		cmd.Stderr = &stderr
		err := cmd.Run()
		if err == nil {
			t.Errorf("%v: exit 0", args)
			continue
		}
		msg := strings.TrimRight(stderr.String(), "\n")
		if strings.Count(msg, "\n") != 0 || !strings.HasPrefix(msg, "bpfsnap: ") {
			t.Errorf("%v: stderr is not one 'bpfsnap: ...' line: %q", args, msg)
		}
	}
}

// Every verb documents itself with examples.
func TestHelpHasExamples(t *testing.T) {
	bin := bpfsnapBin(t)
	for _, verb := range []string{"capture", "inspect", "analyze", "recover", "doctor"} {
		out, err := exec.Command(bin, verb, "--help").Output()
		if err != nil {
			t.Fatalf("%s --help: %v", verb, err)
		}
		if !strings.Contains(string(out), "Examples:") {
			t.Errorf("%s --help has no examples:\n%s", verb, out)
		}
	}
}

// The live status line appears on a terminal and never in a pipe.
func TestStatusLineOnlyOnTTY(t *testing.T) {
	testenv.RequireBPF(t)
	script := testenv.RequireTool(t, "script")
	bin := bpfsnapBin(t)
	dir := t.TempDir()
	tty := filepath.Join(dir, "tty.log")
	if out, err := exec.Command(script, "-qfc", bin+" capture -d 2500ms -o "+filepath.Join(dir, "a.bpfsnap"), tty).CombinedOutput(); err != nil {
		t.Fatalf("capture on a pty: %v: %s", err, out)
	}
	log, _ := os.ReadFile(tty)
	if !strings.Contains(string(log), "capturing 1s elapsed") || !strings.Contains(string(log), "events") {
		t.Errorf("no status line on a terminal:\n%q", log)
	}
	piped, err := exec.Command(bin, "capture", "-d", "1500ms", "-o", filepath.Join(dir, "b.bpfsnap")).CombinedOutput()
	if err != nil {
		t.Fatalf("%v: %s", err, piped)
	}
	if strings.Contains(string(piped), "capturing") || strings.Contains(string(piped), "\x1b[") {
		t.Errorf("status line written to a pipe: %q", piped)
	}
}
