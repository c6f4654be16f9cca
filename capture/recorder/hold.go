//go:build linux

package recorder

import (
	"fmt"
	"os"
	"os/exec"
	"syscall"
)

// holdEnv marks a re-executed bpfsnap as a held child: it waits on fd 3
// until the recorder has attached its probes, then execs the user's command.
// Holding in our own binary (rather than ptrace or a shell) keeps the pid
// stable from before the first instruction of the command, so the target
// filter and the exec event cover it from the start.
const holdEnv = "BPFSNAP_HELD_CHILD"

type heldCommand struct {
	pid     uint32
	cmd     *exec.Cmd
	release func() error
	exited  chan struct{}
}

func startHeld(argv []string) (*heldCommand, error) {
	if _, err := exec.LookPath(argv[0]); err != nil {
		return nil, fmt.Errorf("command %q: %w", argv[0], err)
	}
	self, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("finding bpfsnap's own binary: %w", err)
	}
	r, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(self, argv...)
	cmd.Env = append(os.Environ(), holdEnv+"=1")
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.ExtraFiles = []*os.File{r}
	if err := cmd.Start(); err != nil {
		r.Close()
		w.Close()
		return nil, fmt.Errorf("starting %q: %w", argv[0], err)
	}
	r.Close()
	h := &heldCommand{pid: uint32(cmd.Process.Pid), cmd: cmd, exited: make(chan struct{})}
	h.release = func() error {
		defer w.Close()
		if _, err := w.Write([]byte{1}); err != nil {
			return fmt.Errorf("releasing %q: %w", argv[0], err)
		}
		return nil
	}
	go func() {
		_ = cmd.Wait()
		close(h.exited)
	}()
	return h, nil
}

// cleanup kills a command that outlives the window: the capture is over
// and nobody else owns it.
func (h *heldCommand) cleanup() {
	select {
	case <-h.exited:
	default:
		_ = h.cmd.Process.Signal(syscall.SIGTERM)
	}
}

// IsHeldChild reports whether this process is a held child (see holdEnv).
// main calls it before anything else.
func IsHeldChild() bool { return os.Getenv(holdEnv) == "1" }

// RunHeldChild waits for the release byte on fd 3 and execs the command in
// os.Args[1:]. It never returns on success. If the recorder dies first, the
// pipe closes without a byte and the child exits instead of running
// untraced.
func RunHeldChild() {
	gate := os.NewFile(3, "bpfsnap-hold")
	var b [1]byte
	n, _ := gate.Read(b[:])
	gate.Close()
	if n != 1 {
		fmt.Fprintln(os.Stderr, "bpfsnap: recorder exited before the command was released")
		os.Exit(125)
	}
	path, err := exec.LookPath(os.Args[1])
	if err != nil {
		fmt.Fprintf(os.Stderr, "bpfsnap: %v\n", err)
		os.Exit(127)
	}
	env := make([]string, 0, len(os.Environ()))
	for _, e := range os.Environ() {
		if e != holdEnv+"=1" {
			env = append(env, e)
		}
	}
	err = syscall.Exec(path, os.Args[1:], env)
	fmt.Fprintf(os.Stderr, "bpfsnap: exec %s: %v\n", path, err)
	os.Exit(126)
}
