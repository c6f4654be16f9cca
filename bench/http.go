package main

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func init() {
	benchmarks = append(benchmarks, benchmark{"http capture overhead", benchHTTP})
}

// bpftraceHTTP is the script people write today: pair each recvfrom with
// the next writev on the same (pid, fd) and histogram the gap.
const bpftraceHTTP = `tracepoint:syscalls:sys_enter_recvfrom /comm == "nginx"/ { @start[pid, args->fd] = nsecs; }
tracepoint:syscalls:sys_enter_writev /@start[pid, args->fd]/ { @lat = hist(nsecs - @start[pid, args->fd]); delete(@start[pid, args->fd]); }`

var wrkRate = regexp.MustCompile(`Requests/sec:\s+([0-9.]+)`)

// benchHTTP: nginx (one worker) saturated by wrk on loopback; requests/s
// under a whole-host `capture -p http` and under the bpftrace script, each
// over the bare rate measured right before it.
func benchHTTP(env *Env) ([]Row, error) {
	dir := filepath.Join(env.Dir, "nginx")
	os.MkdirAll(dir, 0o755)
	os.WriteFile(filepath.Join(dir, "index.html"), []byte("hello from nginx\n"), 0o644)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	conf := fmt.Sprintf(`daemon off; master_process on; worker_processes 1; pid %[1]s/nginx.pid; error_log %[1]s/error.log;
events { worker_connections 1024; }
http { access_log off; client_body_temp_path %[1]s; proxy_temp_path %[1]s; fastcgi_temp_path %[1]s; uwsgi_temp_path %[1]s; scgi_temp_path %[1]s;
  server { listen 127.0.0.1:%[2]d; root %[1]s; } }
`, dir, port)
	os.WriteFile(filepath.Join(dir, "nginx.conf"), []byte(conf), 0o644)
	nginx := exec.Command("nginx", "-c", filepath.Join(dir, "nginx.conf"), "-p", dir)
	nginx.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // the worker dies with the master
	if err := nginx.Start(); err != nil {
		return nil, fmt.Errorf("nginx: %w", err)
	}
	defer func() { syscall.Kill(-nginx.Process.Pid, syscall.SIGKILL); nginx.Wait() }()
	time.Sleep(500 * time.Millisecond)
	url := fmt.Sprintf("http://127.0.0.1:%d/index.html", port)
	wrk := func() (float64, error) {
		out, err := exec.Command("wrk", "-t1", "-c32", "-d4s", url).CombinedOutput()
		if err != nil {
			return 0, fmt.Errorf("wrk: %v: %s", err, out)
		}
		m := wrkRate.FindSubmatch(out)
		if m == nil {
			return 0, fmt.Errorf("wrk printed no rate: %s", out)
		}
		return strconv.ParseFloat(string(m[1]), 64)
	}
	// under runs wrk while cmd runs, once cmd has printed readyLine (or
	// after ready when it prints nothing to wait for).
	under := func(cmd *exec.Cmd, ready time.Duration, readyLine string) (float64, error) {
		var lines io.Reader
		if readyLine != "" {
			out, err := cmd.StdoutPipe()
			if err != nil {
				return 0, err
			}
			lines = out
		}
		if err := cmd.Start(); err != nil {
			return 0, err
		}
		if lines != nil {
			sc := bufio.NewScanner(lines)
			for sc.Scan() && !strings.Contains(sc.Text(), readyLine) {
			}
			go io.Copy(io.Discard, lines)
		}
		time.Sleep(ready)
		rate, err := wrk()
		cmd.Process.Signal(syscall.SIGINT)
		cmd.Wait()
		return rate, err
	}
	var ours, theirs, bare []float64
	for i := 0; i < env.Reps; i++ {
		b1, err := wrk()
		if err != nil {
			return nil, err
		}
		out := filepath.Join(env.Dir, "http.bpfsnap")
		os.Remove(out)
		w, err := under(exec.Command(env.Bpfsnap, "capture", "-p", "http", "-d", "10m", "-o", out), 1500*time.Millisecond, "")
		if err != nil {
			return nil, err
		}
		b2, err := wrk()
		if err != nil {
			return nil, err
		}
		// bpftrace compiles for seconds; measure once it says it attached.
		bt, err := under(exec.Command("bpftrace", "-e", bpftraceHTTP), 500*time.Millisecond, "Attaching")
		if err != nil {
			return nil, err
		}
		bare = append(bare, b1, b2)
		ours = append(ours, w/b1)
		theirs = append(theirs, bt/b2)
	}
	o, t := stats(ours), stats(theirs)
	return []Row{{
		Name:   "HTTP capture: nginx throughput kept under wrk",
		Result: o.Format("%.3f"), Peer: "bpftrace recvfrom→writev: " + t.Format("%.3f"),
		Goal: "≥ 0.95", Met: yesNo(o.Median >= 0.95),
		Note: fmt.Sprintf("nginx 1 worker, wrk -t1 -c32 -d4s on loopback, bare %s req/s; whole-host capture -p http (cgroup_skb)", stats(bare).Format("%.0f")),
	}}, nil
}
