//go:build linux

package capture

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/bpfsnap/bpfsnap/formats"
	"github.com/bpfsnap/bpfsnap/internal/testenv"
)

// handoffSrc is a server whose listener another process created, in
// another cgroup, as systemd socket activation does: run as "parent PORT
// SERVE_CGROUP_DIR", it listens, then starts itself as "serve" in
// SERVE_CGROUP_DIR with the listener as fd 3, and waits. The serving
// process, on SIGUSR1, opens a second listener of its own on $PORT2.
const handoffSrc = `package main

import (
	"crypto/tls"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"syscall"
)

func main() {
	http.HandleFunc("/fast", func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok")) })
	if os.Args[1] == "serve" {
		l, err := net.FileListener(os.NewFile(3, "listener"))
		if err != nil {
			panic(err)
		}
		if c := os.Getenv("CERT"); c != "" {
			cert, err := tls.LoadX509KeyPair(c, os.Getenv("KEY"))
			if err != nil {
				panic(err)
			}
			l = tls.NewListener(l, &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"http/1.1"}})
		}
		usr1 := make(chan os.Signal, 1)
		signal.Notify(usr1, syscall.SIGUSR1)
		go func() {
			<-usr1
			l2, err := net.Listen("tcp", "127.0.0.1:"+os.Getenv("PORT2"))
			if err != nil {
				panic(err)
			}
			http.Serve(l2, nil)
		}()
		http.Serve(l, nil)
		return
	}
	l, err := net.Listen("tcp", "127.0.0.1:"+os.Args[1])
	if err != nil {
		panic(err)
	}
	f, _ := l.(*net.TCPListener).File()
	cg, err := os.Open(os.Args[2])
	if err != nil {
		panic(err)
	}
	child := exec.Command(os.Args[0], "serve")
	child.Env = os.Environ()
	child.ExtraFiles = []*os.File{f}
	child.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: int(cg.Fd())}
	if err := child.Start(); err != nil {
		panic(err)
	}
	os.Stdout.WriteString("child " + itoa(child.Process.Pid) + "\n")
	child.Wait()
}

func itoa(n int) string {
	b := []byte{}
	for ; n > 0; n /= 10 {
		b = append([]byte{byte('0' + n%10)}, b...)
	}
	return string(b)
}
`

// TestHTTPPidAttachesWhereItsSocketsLive: a --pid capture attaches its
// programs to the target's cgroups instead of the root, which must not
// miss a listener created in another cgroup (its connections live there),
// nor a listener the target opens after moving to a third cgroup during
// the window (found by the rescan). The client runs outside all three,
// so only the server's side is framed.
func TestHTTPPidAttachesWhereItsSocketsLive(t *testing.T) {
	testenv.RequireBPF(t)
	ho := startHandoff(t, nil)
	v2, creator, server, moved, childPID, port, port2 := ho.v2, ho.creator, ho.server, ho.moved, ho.childPID, ho.port, ho.port2

	rel := func(dir string) string { return strings.TrimPrefix(dir, v2) }
	var before, after map[string]*clientTimes
	path := captureHTTP(t, childPID, func() {
		before = clientLoad(t, port, 200, 2, "/fast")
		// The target moves, then listens again: that listener's
		// connections live in the new cgroup.
		if err := os.WriteFile(filepath.Join(moved, "cgroup.procs"), []byte(strconv.Itoa(childPID)), 0); err != nil {
			t.Fatal(err)
		}
		syscall.Kill(childPID, syscall.SIGUSR1)
		waitListening(t, port2)
		time.Sleep(3 * time.Second) // a rescan (every 2 s) finds it
		after = clientLoad(t, port2, 200, 2, "/fast")
	})
	a, err := formats.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	m := a.Manifest()
	a.Close()
	var hook string
	for _, p := range m.Probes {
		if p.Name == "http" {
			hook = p.Details["hook"]
		}
	}
	// Both cgroups at the start, and neither the root nor the client's.
	if !strings.Contains(hook, "targets' cgroups") || !strings.Contains(hook, rel(creator)) || !strings.Contains(hook, rel(server)) {
		t.Errorf("hook %q: want the targets' cgroups %s (the listener's) and %s (the process's)", hook, rel(creator), rel(server))
	}
	found := false
	for _, w := range m.Warnings {
		if strings.Contains(w, rel(moved)) && strings.Contains(w, "captured there from") {
			found = true
		}
	}
	if !found {
		t.Errorf("no warning names %s, where the target moved: %q", rel(moved), m.Warnings)
	}
	h := openHTTP(t, path)
	served := map[string]int64{}
	for _, e := range h.Endpoints {
		served[e.Route] += e.Count
	}
	want := int64(before["/fast"].count() + after["/fast"].count())
	if served["/fast"] != want {
		t.Errorf("/fast: %d requests captured, the client made %d (%d on the handed-down listener, %d on the one opened after the move); drops %v",
			served["/fast"], want, before["/fast"].count(), after["/fast"].count(), m.Drops)
	}
}

// handoff is testdata's listener handed down (handoffSrc): a parent in
// cgroup creator listens on port and starts the server, its child, in
// cgroup server with the listener; on SIGUSR1 the child listens on port2
// too (the test moves it to cgroup moved first).
type handoff struct {
	v2, creator, server, moved string
	childPID, port, port2      int
}

// startHandoff starts the parent and its child (env: extra environment,
// CERT and KEY for TLS on the handed-down listener).
func startHandoff(t *testing.T, env []string) handoff {
	t.Helper()
	v2 := testenv.CgroupV2Root()
	if _, err := os.Stat(filepath.Join(v2, "cgroup.procs")); err != nil {
		testenv.Skip(t, "no cgroup v2 hierarchy to make cgroups in")
	}
	mk := func(name string) string {
		dir, err := os.MkdirTemp(v2, "bpfsnap-attach-"+name+"-")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			for i := 0; i < 50 && os.Remove(dir) != nil; i++ {
				time.Sleep(20 * time.Millisecond)
			}
		})
		return dir
	}
	creator, server, moved := mk("creator"), mk("server"), mk("moved")
	bin := buildGo(t, handoffSrc)
	port, port2 := freePort(t), freePort(t)
	cgFD, err := os.Open(creator)
	if err != nil {
		t.Fatal(err)
	}
	defer cgFD.Close()
	parent := exec.Command(bin, strconv.Itoa(port), server)
	parent.Env = append(append(os.Environ(), "PORT2="+strconv.Itoa(port2)), env...)
	out, err := parent.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	parent.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, UseCgroupFD: true, CgroupFD: int(cgFD.Fd())}
	if err := parent.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		syscall.Kill(-parent.Process.Pid, syscall.SIGKILL)
		parent.Wait()
	})
	var childPID int
	if _, err := fmt.Fscanf(out, "child %d\n", &childPID); err != nil {
		t.Fatalf("the parent named no child: %v", err)
	}
	waitListening(t, port)
	return handoff{v2, creator, server, moved, childPID, port, port2}
}
