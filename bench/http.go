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
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func init() {
	benchmarks = append(benchmarks, benchmark{"http capture overhead", benchHTTP})
}

// bpftraceHTTP is the script people write today: pair each read of a
// request with the next write of a response on the same (pid, fd) and
// histogram the gap. nginx reads with recvfrom and answers with writev;
// Go's net/http reads with read and answers with write.
var bpftraceHTTP = map[string]string{
	"nginx": `tracepoint:syscalls:sys_enter_recvfrom /comm == "nginx"/ { @start[pid, args->fd] = nsecs; }
tracepoint:syscalls:sys_enter_writev /@start[pid, args->fd]/ { @lat = hist(nsecs - @start[pid, args->fd]); delete(@start[pid, args->fd]); }`,
	"go": `tracepoint:syscalls:sys_enter_read /comm == "gohttp"/ { @start[pid, args->fd] = nsecs; }
tracepoint:syscalls:sys_enter_write /@start[pid, args->fd]/ { @lat = hist(nsecs - @start[pid, args->fd]); delete(@start[pid, args->fd]); }`,
}

// bpftracePrint is the peer that keeps what bpfsnap keeps, a record per
// request: the same pairing, printing one line per request (to /dev/null
// here) instead of a histogram.
var bpftracePrint = map[string]string{
	"nginx": `tracepoint:syscalls:sys_enter_recvfrom /comm == "nginx"/ { @start[pid, args->fd] = nsecs; }
tracepoint:syscalls:sys_enter_writev /@start[pid, args->fd]/ { printf("%d %d %d\n", pid, args->fd, nsecs - @start[pid, args->fd]); delete(@start[pid, args->fd]); }`,
	"go": `tracepoint:syscalls:sys_enter_read /comm == "gohttp"/ { @start[pid, args->fd] = nsecs; }
tracepoint:syscalls:sys_enter_write /@start[pid, args->fd]/ { printf("%d %d %d\n", pid, args->fd, nsecs - @start[pid, args->fd]); delete(@start[pid, args->fd]); }`,
}

const goHTTPServer = `package main

import (
	"net/http"
	"os"
)

func main() {
	http.HandleFunc("/index.html", func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("hello from go\n")) })
	http.ListenAndServe("127.0.0.1:"+os.Args[1], nil)
}
`

var (
	wrkRate  = regexp.MustCompile(`Requests/sec:\s+([0-9.]+)`)
	wrkTotal = regexp.MustCompile(`([0-9]+) requests in`)
)

// benchHTTP: nginx (one worker) and a Go net/http server, each saturated
// by wrk on loopback; requests/s under a whole-host `capture -p http` and
// under the bpftrace script, each over the bare rate measured right
// before it; and what the capture costs per request: the recorder's CPU
// time and the BPF programs' run time (kernel.bpf_stats_enabled).
func benchHTTP(env *Env) ([]Row, error) {
	var rows []Row
	for _, server := range []string{"nginx", "go"} {
		r, err := benchHTTPServer(env, server)
		if err != nil {
			return rows, fmt.Errorf("%s: %w", server, err)
		}
		rows = append(rows, r...)
	}
	return rows, nil
}

func freeLoopbackPort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// cgroupV2 is the cgroup v2 mount (hybrid hosts mount it at unified/).
func cgroupV2() string {
	if _, err := os.Stat("/sys/fs/cgroup/unified/cgroup.procs"); err == nil {
		return "/sys/fs/cgroup/unified"
	}
	return "/sys/fs/cgroup"
}

// httpServer is a server started by startHTTPServer.
type httpServer struct {
	url    string
	pid    int    // nginx: the master; `--pid` follows its worker
	cgroup string // its own cgroup, below the v2 root (as `capture --cgroup` takes it)
	stop   func()
}

// startHTTPServer starts the server in a cgroup of its own.
func startHTTPServer(env *Env, server string) (*httpServer, error) {
	port, err := freeLoopbackPort()
	if err != nil {
		return nil, err
	}
	dir := filepath.Join(env.Dir, server)
	os.MkdirAll(dir, 0o755)
	var cmd *exec.Cmd
	switch server {
	case "nginx":
		os.WriteFile(filepath.Join(dir, "index.html"), []byte("hello from nginx\n"), 0o644)
		conf := fmt.Sprintf(`daemon off; master_process on; worker_processes 1; pid %[1]s/nginx.pid; error_log %[1]s/error.log;
events { worker_connections 1024; }
http { access_log off; client_body_temp_path %[1]s; proxy_temp_path %[1]s; fastcgi_temp_path %[1]s; uwsgi_temp_path %[1]s; scgi_temp_path %[1]s;
  server { listen 127.0.0.1:%[2]d; root %[1]s; } }
`, dir, port)
		os.WriteFile(filepath.Join(dir, "nginx.conf"), []byte(conf), 0o644)
		cmd = exec.Command("nginx", "-c", filepath.Join(dir, "nginx.conf"), "-p", dir)
	case "go":
		os.WriteFile(filepath.Join(dir, "main.go"), []byte(goHTTPServer), 0o644)
		os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module gohttp\n\ngo 1.22\n"), 0o644)
		build := exec.Command("go", "build", "-o", "gohttp", ".")
		build.Dir = dir
		if out, err := build.CombinedOutput(); err != nil {
			return nil, fmt.Errorf("go build: %v: %s", err, out)
		}
		cmd = exec.Command(filepath.Join(dir, "gohttp"), strconv.Itoa(port))
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // nginx's worker dies with the master
	// The server runs in a cgroup of its own, as a pod or a systemd service
	// does, and creates its sockets there: `capture --cgroup` of it then
	// attaches the HTTP programs there only (the load generator's side
	// costs nothing). --pid captures attach to the root either way.
	cg, err := os.MkdirTemp(cgroupV2(), "bpfsnap-bench-"+server+"-")
	if err != nil {
		return nil, err
	}
	cgDir, err := os.Open(cg)
	if err != nil {
		os.Remove(cg)
		return nil, err
	}
	defer cgDir.Close()
	cmd.SysProcAttr.UseCgroupFD, cmd.SysProcAttr.CgroupFD = true, int(cgDir.Fd())
	if err := cmd.Start(); err != nil {
		os.Remove(cg)
		return nil, fmt.Errorf("%s: %w", server, err)
	}
	stop := func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		cmd.Wait()
		for i := 0; i < 50 && os.Remove(cg) != nil; i++ {
			time.Sleep(20 * time.Millisecond) // until the workers are gone
		}
	}
	for i := 0; i < 50; i++ {
		if c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port)); err == nil {
			c.Close()
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	return &httpServer{url: fmt.Sprintf("http://127.0.0.1:%d/index.html", port), pid: cmd.Process.Pid,
		cgroup: strings.TrimPrefix(cg, cgroupV2()), stop: stop}, nil
}

type wrkResult struct{ rate, requests float64 }

func runWrk(url string) (wrkResult, error) {
	out, err := exec.Command("wrk", "-t1", "-c32", "-d4s", url).CombinedOutput()
	if err != nil {
		return wrkResult{}, fmt.Errorf("wrk: %v: %s", err, out)
	}
	m, n := wrkRate.FindSubmatch(out), wrkTotal.FindSubmatch(out)
	if m == nil || n == nil {
		return wrkResult{}, fmt.Errorf("wrk printed no rate: %s", out)
	}
	rate, _ := strconv.ParseFloat(string(m[1]), 64)
	total, _ := strconv.ParseFloat(string(n[1]), 64)
	return wrkResult{rate, total}, nil
}

// cpuTicks is the user+system CPU time of pid in clock ticks (1/100 s).
func cpuTicks(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	if len(f) < 13 {
		return 0
	}
	u, _ := strconv.ParseFloat(f[11], 64)
	k, _ := strconv.ParseFloat(f[12], 64)
	return u + k
}

// bpfRunNs sums run_time_ns of the BPF programs process pid holds open
// (from /proc/PID/fdinfo; needs kernel.bpf_stats_enabled=1). Programs of
// other tools running at the same time are not counted.
func bpfRunNs(pid int) float64 {
	dir := fmt.Sprintf("/proc/%d/fdinfo", pid)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return 0
	}
	// Link fds name their program too, without run time: keep the largest.
	byID := map[string]float64{}
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			continue
		}
		var id string
		var ns float64
		for _, line := range strings.Split(string(b), "\n") {
			k, v, _ := strings.Cut(line, ":")
			switch k {
			case "prog_id":
				id = strings.TrimSpace(v)
			case "run_time_ns":
				ns, _ = strconv.ParseFloat(strings.TrimSpace(v), 64)
			}
		}
		if id != "" && ns > byID[id] {
			byID[id] = ns
		}
	}
	var sum float64
	for _, ns := range byID {
		sum += ns
	}
	return sum
}

func benchHTTPServer(env *Env, server string) ([]Row, error) {
	srv, err := startHTTPServer(env, server)
	if err != nil {
		return nil, err
	}
	defer srv.stop()
	url, pid := srv.url, srv.pid
	time.Sleep(500 * time.Millisecond)
	// under runs wrk while cmd runs, once cmd has printed readyLine (or
	// after ready when it prints nothing to wait for); measure, if given,
	// runs around wrk.
	under := func(cmd *exec.Cmd, ready time.Duration, readyLine string, measure func(before bool)) (wrkResult, error) {
		var lines io.Reader
		if readyLine != "" {
			out, err := cmd.StdoutPipe()
			if err != nil {
				return wrkResult{}, err
			}
			lines = out
		}
		if err := cmd.Start(); err != nil {
			return wrkResult{}, err
		}
		if lines != nil {
			sc := bufio.NewScanner(lines)
			for sc.Scan() && !strings.Contains(sc.Text(), readyLine) {
			}
			go io.Copy(io.Discard, lines)
		}
		time.Sleep(ready)
		if measure != nil {
			measure(true)
		}
		r, err := runWrk(url)
		if measure != nil {
			measure(false)
		}
		cmd.Process.Signal(syscall.SIGINT)
		cmd.Wait()
		return r, err
	}
	exec.Command("sysctl", "-qw", "kernel.bpf_stats_enabled=1").Run()
	defer exec.Command("sysctl", "-qw", "kernel.bpf_stats_enabled=0").Run()
	// capture runs one capture under wrk and returns the rate kept and
	// the cost per request.
	capture := func(args ...string) (rate float64, recorderUs, bpfUs float64, err error) {
		out := filepath.Join(env.Dir, "http.bpfsnap")
		os.Remove(out)
		cmd := exec.Command(env.Bpfsnap, append([]string{"capture", "-p", "http", "-d", "10m", "-o", out}, args...)...)
		var t0, n0 float64
		w, err := under(cmd, 1500*time.Millisecond, "", func(before bool) {
			t, n := cpuTicks(cmd.Process.Pid), bpfRunNs(cmd.Process.Pid)
			if before {
				t0, n0 = t, n
				return
			}
			t0, n0 = t-t0, n-n0
		})
		if err != nil || w.requests == 0 {
			return 0, 0, 0, err
		}
		return w.rate, t0 * 1e4 / w.requests, n0 / w.requests / 1000, nil
	}
	var ours, whole, floor, scoped, theirs, printing, bare, recorderUs, bpfUs, wholeRecorderUs, wholeBpfUs, scopedRecorderUs, scopedBpfUs []float64
	// Three rounds, not env.Reps: a round is seven 4-second wrk runs, and
	// the spread between rounds is small next to the effect measured.
	for i := 0; i < min(env.Reps, 3); i++ {
		b1, err := runWrk(url)
		if err != nil {
			return nil, err
		}
		r, rec, bpf, err := capture("--pid", strconv.Itoa(pid))
		if err != nil {
			return nil, err
		}
		ours, recorderUs, bpfUs = append(ours, r/b1.rate), append(recorderUs, rec), append(bpfUs, bpf)
		bare = append(bare, b1.rate)
		if server == "nginx" {
			b, err := runWrk(url)
			if err != nil {
				return nil, err
			}
			r, rec, bpf, err := capture()
			if err != nil {
				return nil, err
			}
			whole, wholeRecorderUs, wholeBpfUs = append(whole, r/b.rate), append(wholeRecorderUs, rec), append(wholeBpfUs, bpf)
			bare = append(bare, b.rate)
			// The floor: empty programs at the same hooks.
			if b, err = runWrk(url); err != nil {
				return nil, err
			}
			if r, _, _, err = capture("--pid", strconv.Itoa(pid), "--http-floor"); err != nil {
				return nil, err
			}
			floor, bare = append(floor, r/b.rate), append(bare, b.rate)
			// --cgroup of the server: the programs attach to its cgroup.
			if b, err = runWrk(url); err != nil {
				return nil, err
			}
			r, rec, bpf, err = capture("--cgroup", srv.cgroup)
			if err != nil {
				return nil, err
			}
			scoped, scopedRecorderUs, scopedBpfUs = append(scoped, r/b.rate), append(scopedRecorderUs, rec), append(scopedBpfUs, bpf)
			bare = append(bare, b.rate)
		}
		b2, err := runWrk(url)
		if err != nil {
			return nil, err
		}
		// bpftrace compiles for seconds; measure once it says it attached.
		bt, err := under(exec.Command("bpftrace", "-e", bpftraceHTTP[server]), 500*time.Millisecond, "Attaching", nil)
		if err != nil {
			return nil, err
		}
		bare = append(bare, b2.rate)
		theirs = append(theirs, bt.rate/b2.rate)
		b3, err := runWrk(url)
		if err != nil {
			return nil, err
		}
		bp, err := under(exec.Command("bpftrace", "-e", bpftracePrint[server]), 500*time.Millisecond, "Attaching", nil)
		if err != nil {
			return nil, err
		}
		bare = append(bare, b3.rate)
		printing = append(printing, bp.rate/b3.rate)
	}
	o, t := stats(ours), stats(theirs)
	label := map[string]string{"nginx": "nginx 1 worker", "go": "Go net/http"}[server]
	peer := map[string]string{"nginx": "recvfrom→writev", "go": "read→write"}[server]
	how := fmt.Sprintf("%s, wrk -t1 -c32 -d4s on loopback, bare %s req/s", label, stats(bare).Format("%.0f"))
	rows := []Row{{
		Name:   fmt.Sprintf("HTTP capture: %s throughput kept under wrk, capture --pid of the server", label),
		Result: o.Format("%.3f"),
		Peer:   "bpftrace " + peer + " histogram: " + t.Format("%.3f") + "; the same printing a line per request: " + stats(printing).Format("%.3f"),
		Goal:   "≥ the histogram script", Met: yesNo(o.Median >= t.Median),
		Note: how + "; capture -p http --pid SERVER (cgroup_skb on the root, every request framed in the kernel, a row per request), the peers interleaved in the same rounds",
	}, {
		Name:   fmt.Sprintf("HTTP capture: %s, --pid, cost per request (µs): recorder CPU / BPF programs", label),
		Result: stats(recorderUs).Format("%.2f") + " / " + stats(bpfUs).Format("%.2f"),
		Note:   "recorder's user+system CPU, and run_time_ns of its BPF programs (kernel.bpf_stats_enabled), during the wrk run / requests served",
	}}
	if len(scoped) > 0 {
		rows = append(rows, Row{
			Name:   fmt.Sprintf("HTTP capture: %s throughput kept under wrk, capture --cgroup of the server (programs on its cgroup only)", label),
			Result: stats(scoped).Format("%.3f"), Goal: "≥ 0.95", Met: yesNo(stats(scoped).Median >= 0.95),
			Note: how + fmt.Sprintf("; the server runs in a cgroup of its own, as a pod does; capture -p http --cgroup CG attaches the programs there, so wrk's side of each exchange runs none; cost per request: recorder CPU %s µs, BPF programs %s µs",
				stats(scopedRecorderUs).Format("%.2f"), stats(scopedBpfUs).Format("%.2f")),
		})
	}
	if len(floor) > 0 {
		// The workload keeps every CPU busy, so what a capture costs per
		// request comes straight out of throughput: 0.95 kept leaves it
		// 1/0.95 - 1 of the CPU time a request takes bare.
		perReq := float64(runtime.NumCPU()) * 1e6 / stats(bare).Median
		cost := func(kept float64) float64 { return (1/kept - 1) * perReq }
		f := stats(floor)
		rows = append(rows, Row{
			Name:   fmt.Sprintf("HTTP capture: %s throughput kept under wrk, the hooks alone (empty programs where -p http attaches), --pid", label),
			Result: f.Format("%.3f"),
			Note: how + fmt.Sprintf("; capture -p http --http-floor. The %d CPUs are saturated: a request takes %.1f µs of CPU bare, so ≥ 0.95 kept allows %.2f µs of capture per request; the hooks alone take %.2f, leaving %.2f for the programs' work and the recorder; -p http takes %.2f",
				runtime.NumCPU(), perReq, cost(0.95), cost(f.Median), cost(0.95)-cost(f.Median), cost(o.Median)),
		})
	}
	if len(whole) > 0 {
		rows = append(rows, Row{
			Name:   fmt.Sprintf("HTTP capture: %s throughput kept under wrk, whole-host capture", label),
			Result: stats(whole).Format("%.3f"),
			Note:   how + "; capture -p http of every process: wrk's client side is recorded too (2 records per request)",
		}, Row{
			Name:   fmt.Sprintf("HTTP capture: %s, whole host, cost per request (µs): recorder CPU / BPF programs", label),
			Result: stats(wholeRecorderUs).Format("%.2f") + " / " + stats(wholeBpfUs).Format("%.2f"),
			Note:   "as above",
		})
	}
	return rows, nil
}
