package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func init() {
	benchmarks = append(benchmarks, benchmark{"http2 and tls capture cost", benchProtocols})
}

// protoLoad is the load generator: conns connections, one request at a
// time each, for a duration, over the protocol asked for; it prints the
// requests made.
const protoLoad = `package main

import (
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

func main() {
	url, proto := os.Args[1], os.Args[2]
	d, _ := time.ParseDuration(os.Args[3])
	conns, _ := strconv.Atoi(os.Args[4])
	var n atomic.Int64
	var wg sync.WaitGroup
	end := time.Now().Add(d)
	for i := 0; i < conns; i++ {
		p := new(http.Protocols)
		switch proto {
		case "h1", "h1tls":
			p.SetHTTP1(true)
		case "h2c":
			p.SetUnencryptedHTTP2(true)
		case "h2tls":
			p.SetHTTP2(true)
		}
		c := &http.Client{Transport: &http.Transport{Protocols: p, MaxConnsPerHost: 1, TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(end) {
				resp, err := c.Get(url)
				if err != nil {
					fmt.Fprintln(os.Stderr, err)
					os.Exit(1)
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				n.Add(1)
			}
		}()
	}
	wg.Wait()
	fmt.Println(n.Load())
}
`

// benchProtocols: what capture costs per request, in µs of CPU, for a Go
// net/http server spoken to in plaintext HTTP/1.1, h2c, HTTP/1.1 over TLS
// and HTTP/2 over TLS (runs interleaved, bare and under `capture -p http
// --pid SERVER`): the server's own CPU per request bare and under capture
// (the difference is the uprobes' traps, for TLS), the recorder's CPU and
// the BPF programs' run time.
func benchProtocols(env *Env) ([]Row, error) {
	dir := filepath.Join(env.Dir, "protocols")
	os.MkdirAll(dir, 0o755)
	build := func(name, src string) (string, error) {
		d := filepath.Join(dir, name+"-src")
		os.MkdirAll(d, 0o755)
		os.WriteFile(filepath.Join(d, "main.go"), []byte(src), 0o644)
		os.WriteFile(filepath.Join(d, "go.mod"), []byte("module "+name+"\n\ngo 1.24\n"), 0o644)
		out := filepath.Join(dir, name)
		cmd := exec.Command("go", "build", "-o", out, ".")
		cmd.Dir = d
		if b, err := cmd.CombinedOutput(); err != nil {
			return "", fmt.Errorf("go build %s: %v: %s", name, err, b)
		}
		return out, nil
	}
	srvBin := filepath.Join(dir, "h2tls")
	if b, err := exec.Command("go", "build", "-o", srvBin, "./testdata/h2tls").CombinedOutput(); err != nil {
		return nil, fmt.Errorf("go build testdata/h2tls: %v: %s", err, b)
	}
	loadBin, err := build("protoload", protoLoad)
	if err != nil {
		return nil, err
	}
	cert, key := filepath.Join(dir, "c.pem"), filepath.Join(dir, "k.pem")
	if b, err := exec.Command("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
		"-keyout", key, "-out", cert, "-days", "1", "-subj", "/CN=bench").CombinedOutput(); err != nil {
		return nil, fmt.Errorf("openssl: %v: %s", err, b)
	}
	p1, err := freeLoopbackPort()
	if err != nil {
		return nil, err
	}
	p2, err := freeLoopbackPort()
	if err != nil {
		return nil, err
	}
	srv := exec.Command(srvBin, "-listen", fmt.Sprintf("127.0.0.1:%d", p1), "-tls-listen", fmt.Sprintf("127.0.0.1:%d", p2), "-cert", cert, "-key", key)
	if err := srv.Start(); err != nil {
		return nil, err
	}
	defer func() { srv.Process.Kill(); srv.Wait() }()
	time.Sleep(time.Second)
	exec.Command("sysctl", "-qw", "kernel.bpf_stats_enabled=1").Run()
	defer exec.Command("sysctl", "-qw", "kernel.bpf_stats_enabled=0").Run()

	type variant struct{ proto, url string }
	variants := []variant{
		{"h1", fmt.Sprintf("http://127.0.0.1:%d/", p1)},
		{"h2c", fmt.Sprintf("http://127.0.0.1:%d/", p1)},
		{"h1tls", fmt.Sprintf("https://127.0.0.1:%d/", p2)},
		{"h2tls", fmt.Sprintf("https://127.0.0.1:%d/", p2)},
	}
	// load runs the generator and returns the requests it made and the
	// server's CPU ticks (1/100 s) during it.
	load := func(v variant) (reqs, serverTicks float64, err error) {
		t0 := cpuTicks(srv.Process.Pid)
		out, err := exec.Command(loadBin, v.url, v.proto, "4s", "8").Output()
		if err != nil {
			return 0, 0, fmt.Errorf("load %s: %v", v.proto, err)
		}
		n, _ := strconv.ParseFloat(strings.TrimSpace(string(out)), 64)
		return n, cpuTicks(srv.Process.Pid) - t0, nil
	}
	type figures struct{ bare, server, recorder, bpf []float64 }
	res := map[string]*figures{}
	for _, v := range variants {
		res[v.proto] = &figures{}
	}
	outArc := filepath.Join(dir, "p.bpfsnap")
	// Two repetitions at most: the four variants' interleaved runs take
	// ~45 s per repetition, and make bench must stay under 30 minutes.
	for rep := 0; rep < min(env.Reps, 2); rep++ {
		for _, v := range variants {
			f := res[v.proto]
			n, ticks, err := load(v)
			if err != nil {
				return nil, err
			}
			f.bare = append(f.bare, ticks*1e4/n)
			os.Remove(outArc)
			capt := exec.Command(env.Bpfsnap, "capture", "-p", "http", "-d", "10m", "-o", outArc, "--pid", strconv.Itoa(srv.Process.Pid))
			if err := capt.Start(); err != nil {
				return nil, err
			}
			time.Sleep(2 * time.Second)
			r0, b0 := cpuTicks(capt.Process.Pid), bpfRunNs(capt.Process.Pid)
			n, ticks, err = load(v)
			r1, b1 := cpuTicks(capt.Process.Pid), bpfRunNs(capt.Process.Pid)
			capt.Process.Signal(syscall.SIGINT)
			capt.Wait()
			if err != nil {
				return nil, err
			}
			f.server = append(f.server, ticks*1e4/n)
			f.recorder = append(f.recorder, (r1-r0)*1e4/n)
			f.bpf = append(f.bpf, (b1-b0)/n/1000)
		}
	}
	label := map[string]string{"h1": "HTTP/1.1", "h2c": "HTTP/2 (h2c)", "h1tls": "HTTP/1.1 over TLS", "h2tls": "HTTP/2 over TLS"}
	var rows []Row
	for _, v := range variants {
		f := res[v.proto]
		added := make([]float64, len(f.server))
		for i := range f.server {
			added[i] = f.server[i] - f.bare[i] + f.recorder[i] + f.bpf[i]
		}
		rows = append(rows, Row{
			Name: fmt.Sprintf("HTTP capture cost per request, Go net/http %s (µs of CPU): server bare / server under capture / recorder / BPF programs; added", label[v.proto]),
			Result: fmt.Sprintf("%s / %s / %s / %s; %s", stats(f.bare).Format("%.1f"), stats(f.server).Format("%.1f"),
				stats(f.recorder).Format("%.2f"), stats(f.bpf).Format("%.2f"), stats(added).Format("%.1f")),
			Note: "8 connections, one request at a time each, 4 s per run, runs interleaved bare / capture -p http --pid SERVER; server CPU from /proc/PID/stat (includes the uprobes' traps for TLS), BPF run_time_ns from bpf_stats; added = server's extra CPU + recorder + BPF programs",
		})
	}
	return rows, nil
}
