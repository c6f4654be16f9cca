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
	"slices"
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

// startInOwnCgroup starts cmd in a new cgroup below the v2 root, and
// returns the cgroup's path (as `capture --cgroup` takes it) and a stop
// that kills cmd's process group and removes the cgroup.
func startInOwnCgroup(cmd *exec.Cmd, prefix string) (string, func(), error) {
	cg, err := os.MkdirTemp(cgroupV2(), prefix)
	if err != nil {
		return "", nil, err
	}
	cgDir, err := os.Open(cg)
	if err != nil {
		os.Remove(cg)
		return "", nil, err
	}
	defer cgDir.Close()
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Setpgid = true
	cmd.SysProcAttr.UseCgroupFD, cmd.SysProcAttr.CgroupFD = true, int(cgDir.Fd())
	if err := cmd.Start(); err != nil {
		os.Remove(cg)
		return "", nil, fmt.Errorf("%s: %w", cmd.Path, err)
	}
	stop := func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		cmd.Wait()
		for i := 0; i < 50 && os.Remove(cg) != nil; i++ {
			time.Sleep(20 * time.Millisecond) // until the workers are gone
		}
	}
	return strings.TrimPrefix(cg, cgroupV2()), stop, nil
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
	// does, and creates its sockets there: `capture --pid` of it attaches
	// the HTTP programs there, and wrk's side of each exchange runs none.
	cg, stop, err := startInOwnCgroup(cmd, "bpfsnap-bench-"+server+"-")
	if err != nil {
		return nil, err
	}
	for i := 0; i < 50; i++ {
		if c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port)); err == nil {
			c.Close()
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	return &httpServer{url: fmt.Sprintf("http://127.0.0.1:%d/index.html", port), pid: cmd.Process.Pid,
		cgroup: cg, stop: stop}, nil
}

type wrkResult struct{ rate, requests float64 }

func runWrk(url string) (wrkResult, error) { return runWrkFor(url, "4s") }

// runWrkFor runs wrk -t1 -c32 for d (wrk's duration syntax).
func runWrkFor(url, d string) (wrkResult, error) {
	out, err := exec.Command("wrk", "-t1", "-c32", "-d"+d, url).CombinedOutput()
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

// charged is what a capture process has been charged so far: its CPU
// (ticks) and its BPF programs' run time (ns; kernel.bpf_stats_enabled on).
type charged struct{ ticks, bpfNs float64 }

func chargedTo(pid int) charged { return charged{cpuTicks(pid), bpfRunNs(pid)} }

// perRequest is the recorder's CPU and the BPF run time per request (µs)
// charged between c and later, over requests.
func (c charged) perRequest(later charged, requests float64) (recorderUs, bpfUs float64) {
	return (later.ticks - c.ticks) * 1e4 / requests, (later.bpfNs - c.bpfNs) / requests / 1000
}

// benchConfig is one configuration of an interleaved throughput
// comparison: run measures its rate, in its first rounds rounds.
type benchConfig struct {
	name   string
	rounds int
	run    func() (float64, error)
}

// interleaved runs every configuration between two runs of bare, for
// rounds rounds in an order that alternates from round to round (so that
// no configuration always follows the same one), and returns each one's
// rates over the mean of the bare runs before and after it, and every
// bare rate. This VM's speed drifts from one run to the next by more
// than the effects compared; the bare runs around each run follow it.
func interleaved(bare func() (wrkResult, error), rounds int, configs []benchConfig) (map[string][]float64, []float64, error) {
	kept := map[string][]float64{}
	prev, err := bare()
	if err != nil {
		return nil, nil, err
	}
	bareRates := []float64{prev.rate}
	for round := 0; round < rounds; round++ {
		order := append([]benchConfig(nil), configs...)
		if round%2 == 1 {
			slices.Reverse(order)
		}
		for _, c := range order {
			if round >= c.rounds {
				continue
			}
			r, err := c.run()
			if err != nil {
				return nil, nil, fmt.Errorf("%s: %w", c.name, err)
			}
			next, err := bare()
			if err != nil {
				return nil, nil, err
			}
			bareRates = append(bareRates, next.rate)
			kept[c.name] = append(kept[c.name], r/((prev.rate+next.rate)/2))
			prev = next
		}
	}
	return kept, bareRates, nil
}

// httpRounds is how many rounds (interleaved) the hello-world rows run
// for the comparison that decides the goal (bpfsnap against the histogram
// script); the other configurations run in the first httpSideRounds.
// This VM's speed drifts by ±15% from one run to the next (its
// neighbours), more than the effects compared; the rows give the median
// of the rounds.
const (
	httpRounds     = 9
	httpSideRounds = 3
)

// httpRunFor is one wrk run of the hello-world rows.
const httpRunFor = "3s"

func benchHTTPServer(env *Env, server string) ([]Row, error) {
	srv, err := startHTTPServer(env, server)
	if err != nil {
		return nil, err
	}
	defer srv.stop()
	url, pid := srv.url, srv.pid
	time.Sleep(500 * time.Millisecond)
	wrk := func() (wrkResult, error) { return runWrkFor(url, httpRunFor) }
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
		r, err := wrk()
		if measure != nil {
			measure(false)
		}
		cmd.Process.Signal(syscall.SIGINT)
		cmd.Wait()
		return r, err
	}
	// capture runs one capture under wrk and returns the rate, and the
	// cost per request when kernel.bpf_stats_enabled is on.
	capture := func(args ...string) (rate float64, recorderUs, bpfUs float64, err error) {
		out := filepath.Join(env.Dir, "http.bpfsnap")
		os.Remove(out)
		cmd := exec.Command(env.Bpfsnap, append([]string{"capture", "-p", "http", "-d", "10m", "-o", out}, args...)...)
		var before, after charged
		w, err := under(cmd, 1500*time.Millisecond, "", func(start bool) {
			if start {
				before = chargedTo(cmd.Process.Pid)
			} else {
				after = chargedTo(cmd.Process.Pid)
			}
		})
		if err != nil || w.requests == 0 {
			return 0, 0, 0, err
		}
		recorderUs, bpfUs = before.perRequest(after, w.requests)
		return w.rate, recorderUs, bpfUs, nil
	}
	bpftrace := func(script string) (float64, error) {
		// bpftrace compiles for seconds; measure once it says it attached.
		r, err := under(exec.Command("bpftrace", "-e", script), 500*time.Millisecond, "Attaching", nil)
		return r.rate, err
	}
	pidArg := strconv.Itoa(pid)
	configs := []benchConfig{
		{"ours", httpRounds, func() (float64, error) { r, _, _, err := capture("--pid", pidArg); return r, err }},
		{"histogram", httpRounds, func() (float64, error) { return bpftrace(bpftraceHTTP[server]) }},
		{"printing", httpSideRounds, func() (float64, error) { return bpftrace(bpftracePrint[server]) }},
	}
	if server == "nginx" {
		configs = append(configs,
			benchConfig{"whole", httpSideRounds, func() (float64, error) { r, _, _, err := capture(); return r, err }},
			benchConfig{"floor", httpSideRounds, func() (float64, error) { r, _, _, err := capture("--pid", pidArg, "--http-floor"); return r, err }})
	}
	// Throughput with kernel.bpf_stats_enabled off: its clock reads around
	// every program run would tax the tool running more programs per
	// request.
	exec.Command("sysctl", "-qw", "kernel.bpf_stats_enabled=0").Run()
	kept, bare, err := interleaved(wrk, httpRounds, configs)
	if err != nil {
		return nil, err
	}
	// The cost per request, with bpf_stats on, in runs of their own.
	exec.Command("sysctl", "-qw", "kernel.bpf_stats_enabled=1").Run()
	defer exec.Command("sysctl", "-qw", "kernel.bpf_stats_enabled=0").Run()
	var recorderUs, bpfUs, wholeRecorderUs, wholeBpfUs []float64
	for i := 0; i < 2; i++ {
		_, rec, bpf, err := capture("--pid", pidArg)
		if err != nil {
			return nil, err
		}
		recorderUs, bpfUs = append(recorderUs, rec), append(bpfUs, bpf)
		if server == "nginx" {
			_, rec, bpf, err := capture()
			if err != nil {
				return nil, err
			}
			wholeRecorderUs, wholeBpfUs = append(wholeRecorderUs, rec), append(wholeBpfUs, bpf)
		}
	}
	o, t := stats(kept["ours"]), stats(kept["histogram"])
	// The goal's verdict compares the two round by round: both ran in
	// each round, minutes apart at most, so the host's drift from one
	// round to the next cancels out of their ratio.
	var paired []float64
	ahead := 0
	for i := range kept["ours"] {
		paired = append(paired, kept["ours"][i]/kept["histogram"][i])
		if kept["ours"][i] >= kept["histogram"][i] {
			ahead++
		}
	}
	p := stats(paired)
	label := map[string]string{"nginx": "nginx 1 worker", "go": "Go net/http"}[server]
	peer := map[string]string{"nginx": "recvfrom→writev", "go": "read→write"}[server]
	how := fmt.Sprintf("%s in a cgroup of its own (as a pod or a service is), wrk -t1 -c32 -d%s on loopback, bare %s req/s; each configuration's rate over the mean of the bare runs before and after it, median of %d rounds (%d for the line-printing script)",
		label, httpRunFor, stats(bare).Format("%.0f"), httpRounds, httpSideRounds)
	rows := []Row{{
		Name:   fmt.Sprintf("HTTP capture: %s throughput kept under wrk, capture --pid of the server", label),
		Result: o.Format("%.3f"),
		Peer:   "bpftrace " + peer + " histogram: " + t.Format("%.3f") + "; the same printing a line per request: " + stats(kept["printing"]).Format("%.3f"),
		Goal:   "≥ the histogram script (paired)", Met: yesNo(p.Median >= 1),
		Note: how + fmt.Sprintf("; paired: bpfsnap's kept over the histogram script's in the same round %s, bpfsnap ahead in %d of %d rounds", p.Format("%.3f"), ahead, len(paired)) +
			"; capture -p http --pid SERVER: cgroup_skb on the server's cgroup (where its sockets live), every request framed in the kernel, a row per request; the peers interleaved in the same rounds, in alternating order",
	}, {
		Name:   fmt.Sprintf("HTTP capture: %s, --pid, cost per request (µs): recorder CPU / BPF programs", label),
		Result: stats(recorderUs).Format("%.2f") + " / " + stats(bpfUs).Format("%.2f"),
		Note:   "recorder's user+system CPU, and run_time_ns of its BPF programs (kernel.bpf_stats_enabled, on for these two runs only), during the wrk run / requests served",
	}}
	if f := kept["floor"]; len(f) > 0 {
		// The workload keeps the CPUs nearly busy, so what a capture
		// costs per request comes out of throughput: kept k leaves it
		// 1/k - 1 of the CPU time a request takes bare.
		perReq := float64(runtime.NumCPU()) * 1e6 / stats(bare).Median
		cost := func(kept float64) float64 { return (1/kept - 1) * perReq }
		fs := stats(f)
		rows = append(rows, Row{
			Name:   fmt.Sprintf("HTTP capture: %s throughput kept under wrk, the hooks alone (empty programs where -p http attaches), --pid", label),
			Result: fs.Format("%.3f"),
			Note: how + fmt.Sprintf(" (this one: %d rounds); capture -p http --http-floor. A request takes at most %.1f µs of CPU bare (%d CPUs); from throughput, the hooks alone cost %.2f µs per request, -p http %.2f, the histogram script %.2f",
				httpSideRounds, perReq, runtime.NumCPU(), cost(fs.Median), cost(o.Median), cost(t.Median)),
		})
	}
	if w := kept["whole"]; len(w) > 0 {
		rows = append(rows, Row{
			Name:   fmt.Sprintf("HTTP capture: %s throughput kept under wrk, whole-host capture", label),
			Result: stats(w).Format("%.3f"),
			Note:   how + fmt.Sprintf(" (this one: %d rounds)", httpSideRounds) + "; capture -p http of every process: the programs on the cgroup root, wrk's client side recorded too (2 records per request)",
		}, Row{
			Name:   fmt.Sprintf("HTTP capture: %s, whole host, cost per request (µs): recorder CPU / BPF programs", label),
			Result: stats(wholeRecorderUs).Format("%.2f") + " / " + stats(wholeBpfUs).Format("%.2f"),
			Note:   "as above",
		})
	}
	return rows, nil
}
