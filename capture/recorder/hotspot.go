//go:build linux

package recorder

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// requestJVMPerfMap asks a running HotSpot JVM to write its perf map
// (/tmp/perf-NSPID.map in its own /tmp), as `jcmd PID Compiler.perfmap`
// does, speaking the attach protocol itself so the recorder needs no JDK
// of the target's version (or any) on the node:
//
//  1. The JVM listens on /tmp/.java_pidNSPID once its attach listener
//     runs. If it does not yet, a file .attach_pidNSPID in its working
//     directory (or /tmp) plus SIGQUIT starts the listener. A JVM without
//     a SIGQUIT handler (-Xrs) would die of the signal: it is not sent
//     then.
//  2. A request is "1\0jcmd\0<command>\0\0\0" (protocol 1, the jcmd
//     operation and its three arguments); the answer is a status line
//     ("0" for success) and the command's output.
//
// pid is the JVM's host pid, nspid its pid in its own pid namespace (the
// files carry that one); both paths are reached through /proc/PID/root
// and /proc/PID/cwd, so a JVM in a container is asked the same way.
func requestJVMPerfMap(procRoot string, pid, nspid uint32, timeout time.Duration) error {
	dir := filepath.Join(procRoot, Itoa(pid))
	sock := filepath.Join(dir, "root", "tmp", ".java_pid"+Itoa(nspid))
	deadline := time.Now().Add(timeout)
	if !isSocket(sock) {
		if !catchesSIGQUIT(filepath.Join(dir, "status")) {
			return errors.New("the JVM does not handle SIGQUIT (-Xrs?), so its attach listener cannot be started safely")
		}
		trigger := ""
		for _, d := range []string{filepath.Join(dir, "cwd"), filepath.Join(dir, "root", "tmp")} {
			p := filepath.Join(d, ".attach_pid"+Itoa(nspid))
			f, err := os.OpenFile(p, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
			if err == nil {
				f.Close()
				trigger = p
				break
			}
		}
		if trigger == "" {
			return errors.New("cannot create the attach trigger file in the JVM's working directory or /tmp")
		}
		defer os.Remove(trigger)
		if err := syscall.Kill(int(pid), syscall.SIGQUIT); err != nil {
			return fmt.Errorf("signalling the JVM: %w", err)
		}
		for !isSocket(sock) {
			if time.Now().After(deadline) {
				return fmt.Errorf("the JVM's attach listener did not start within %s", timeout)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	out, err := hotspotCommand(sock, "Compiler.perfmap", time.Until(deadline))
	if err != nil {
		return err
	}
	if strings.Contains(out, "Exception") || strings.Contains(out, "Unknown diagnostic command") {
		// A JVM before 17 answers status 0 and the error as output.
		return fmt.Errorf("Compiler.perfmap: %s", strings.TrimSpace(out))
	}
	return nil
}

// hotspotCommand sends one jcmd command over the attach socket and returns
// its output; a non-zero status is an error carrying the output.
func hotspotCommand(sock, command string, timeout time.Duration) (string, error) {
	if timeout <= 0 {
		timeout = time.Second
	}
	// The socket path through /proc may exceed sun_path's 108 bytes
	// for deep pids; a descriptor path of the directory keeps it short.
	dir, err := os.Open(filepath.Dir(sock))
	if err != nil {
		return "", err
	}
	defer dir.Close()
	short := fmt.Sprintf("/proc/self/fd/%d/%s", dir.Fd(), filepath.Base(sock))
	conn, err := net.DialTimeout("unix", short, timeout)
	if err != nil {
		return "", fmt.Errorf("connecting to the JVM's attach socket: %w", err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(timeout))
	if _, err := io.WriteString(conn, "1\x00jcmd\x00"+command+"\x00\x00\x00"); err != nil {
		return "", err
	}
	br := bufio.NewReader(io.LimitReader(conn, 1<<20))
	status, err := br.ReadString('\n')
	if err != nil && status == "" {
		return "", fmt.Errorf("reading the JVM's answer: %w", err)
	}
	rest, _ := io.ReadAll(br)
	code, convErr := strconv.Atoi(strings.TrimSpace(status))
	if convErr != nil || code != 0 {
		return "", fmt.Errorf("the JVM refused %s (status %q): %s", command, strings.TrimSpace(status), strings.TrimSpace(string(rest)))
	}
	return string(rest), nil
}

func isSocket(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.Mode()&os.ModeSocket != 0
}

// catchesSIGQUIT reports whether /proc/PID/status shows a handler for
// SIGQUIT (bit 2 of SigCgt).
func catchesSIGQUIT(status string) bool {
	data, err := os.ReadFile(status)
	if err != nil {
		return false
	}
	for _, l := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(l, "SigCgt:"); ok {
			mask, err := strconv.ParseUint(strings.TrimSpace(rest), 16, 64)
			return err == nil && mask&(1<<(uint(syscall.SIGQUIT)-1)) != 0
		}
	}
	return false
}
