package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// gatedRun runs a workload that waits for the file gate before its timed
// part (pairs.c, pingpong.c): it starts the workload, attaches tracer
// (argv with PID replaced by the workload's pid; nil for none) and waits
// until the tracer prints ready ("" waits 2 s: a capture prints nothing
// without a terminal), creates the gate, waits for the workload, stops
// the tracer with SIGINT and returns the workload's standard output.
// measure, when set, is called with the tracer's pid (0 for none) right
// before the gate opens and right after the workload exits.
func gatedRun(workload *exec.Cmd, gate string, tracer []string, ready string, measure func(tracerPID int)) (string, error) {
	os.Remove(gate)
	var wout strings.Builder
	workload.Stdout = &wout
	if err := workload.Start(); err != nil {
		return "", err
	}
	defer workload.Process.Kill()
	var t *exec.Cmd
	if tracer != nil {
		argv := make([]string, len(tracer))
		for i, a := range tracer {
			argv[i] = strings.ReplaceAll(a, "PID", strconv.Itoa(workload.Process.Pid))
		}
		t = exec.Command(argv[0], argv[1:]...)
		t.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		out, err := t.StdoutPipe()
		if err != nil {
			return "", err
		}
		t.Stderr = t.Stdout
		if err := t.Start(); err != nil {
			return "", err
		}
		defer t.Process.Kill()
		sc := bufio.NewScanner(out)
		deadline := time.AfterFunc(60*time.Second, func() { t.Process.Kill() })
		for ready != "" && sc.Scan() && !strings.Contains(sc.Text(), ready) {
		}
		deadline.Stop()
		go io.Copy(io.Discard, out)
		if ready == "" {
			time.Sleep(2 * time.Second)
		}
		time.Sleep(500 * time.Millisecond)
	}
	tracerPID := 0
	if t != nil {
		tracerPID = t.Process.Pid
	}
	if measure != nil {
		measure(tracerPID)
	}
	os.WriteFile(gate, nil, 0o644)
	err := workload.Wait()
	if measure != nil {
		measure(tracerPID)
	}
	if t != nil {
		t.Process.Signal(syscall.SIGINT)
		t.Wait()
	}
	if err != nil {
		return "", fmt.Errorf("%s: %v: %s", workload.Path, err, wout.String())
	}
	return wout.String(), nil
}
