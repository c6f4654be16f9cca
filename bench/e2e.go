package main

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

func init() {
	benchmarks = append(benchmarks, benchmark{"end to end", benchE2E})
}

// e2eWindow is the capture window of the end-to-end row.
const e2eWindow = 60 * time.Second

// benchE2E: the demo (scripts/demo.sh's workloads) captured for 60 s and
// turned into the HTML report, the way an engineer would use bpfsnap during
// an incident: a whole-node capture (default probe sets: processes, cpu,
// http) of the shop under load and cpuburn, beside a `-p mem --pid`
// capture of leaky, both ended by SIGINT after 60 s; then one report of
// both archives. One run (it takes over a minute).
func benchE2E(env *Env) ([]Row, error) {
	dir := filepath.Join(env.Dir, "e2e")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	shop, burn, leaky := filepath.Join(dir, "shop"), filepath.Join(dir, "cpuburn"), filepath.Join(dir, "leaky")
	for _, b := range [][]string{
		{"go", "build", "-o", shop, "./testdata/demo/shop"},
		{"gcc", "-O1", "-fno-omit-frame-pointer", "-o", burn, "testdata/demo/cpuburn.c"},
		{"gcc", "-O2", "-fno-omit-frame-pointer", "-o", leaky, "testdata/demo/leaky.c"},
	} {
		if out, err := exec.Command(b[0], b[1:]...).CombinedOutput(); err != nil {
			return nil, fmt.Errorf("%s: %v: %s", strings.Join(b, " "), err, out)
		}
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	addr := l.Addr().String()
	l.Close()
	server := exec.Command(shop, "-listen", addr)
	if err := server.Start(); err != nil {
		return nil, err
	}
	defer func() { server.Process.Kill(); server.Wait() }()
	for i := 0; ; i++ {
		if resp, err := http.Get("http://" + addr + "/api/products"); err == nil {
			resp.Body.Close()
			break
		}
		if i == 50 {
			return nil, fmt.Errorf("the shop demo did not answer on %s", addr)
		}
		time.Sleep(100 * time.Millisecond)
	}

	// leaky waits for a file, so the mem capture attaches before it
	// allocates; 10 rounds of churn with 5.5 s pauses span the window.
	gofile := filepath.Join(dir, "go")
	leak := exec.Command(leaky, "2000000", "5500")
	leak.Env = append(os.Environ(), "LEAKY_WAIT_FILE="+gofile)
	if err := leak.Start(); err != nil {
		return nil, err
	}
	defer func() { leak.Process.Kill(); leak.Wait() }()

	node, mem := filepath.Join(dir, "demo.bpfsnap"), filepath.Join(dir, "leak.bpfsnap")
	capNode := exec.Command(env.Bpfsnap, "capture", "-d", "10m", "-o", node)
	capMem := exec.Command(env.Bpfsnap, "capture", "-p", "mem", "--pid", fmt.Sprint(leak.Process.Pid), "-d", "10m", "-o", mem)
	var nodeOut, memOut strings.Builder
	capNode.Stdout, capNode.Stderr = &nodeOut, &nodeOut
	capMem.Stdout, capMem.Stderr = &memOut, &memOut
	for _, c := range []*exec.Cmd{capNode, capMem} {
		if err := c.Start(); err != nil {
			return nil, err
		}
		defer func() { c.Process.Kill(); c.Wait() }()
	}
	time.Sleep(2 * time.Second) // attach
	os.WriteFile(gofile, nil, 0o644)
	load := exec.Command(shop, "-load", "http://"+addr, "-d", e2eWindow.String(), "-c", "4")
	if err := load.Start(); err != nil {
		return nil, err
	}
	cpu := exec.Command(burn, "1000000")
	if err := cpu.Start(); err != nil {
		return nil, err
	}
	time.Sleep(e2eWindow)
	cpu.Process.Kill()
	cpu.Wait()
	load.Wait()

	// Finalize: from the signal that ends the window to the archive being
	// complete (the process exits once the file is bundled and synced).
	end := time.Now()
	capNode.Process.Signal(syscall.SIGINT)
	capMem.Process.Signal(syscall.SIGINT)
	var finalize [2]time.Duration
	for i, c := range []*exec.Cmd{capNode, capMem} {
		if err := c.Wait(); err != nil {
			return nil, fmt.Errorf("capture: %v: %s%s", err, nodeOut.String(), memOut.String())
		}
		finalize[i] = time.Since(end)
	}
	html := filepath.Join(dir, "report.html")
	start := time.Now()
	if out, err := exec.Command(env.Bpfsnap, "report", node, mem, "-o", html).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("report: %v: %s", err, out)
	}
	reportTime := time.Since(start)
	var ratioRows []Row
	for _, archive := range []string{node, mem} {
		r, err := reportOverAnalyze(env, archive)
		if err != nil {
			return nil, err
		}
		met := "no"
		if r.Median <= 1.5 {
			met = "yes"
		}
		ratioRows = append(ratioRows, Row{Name: "report over analyze --json, " + filepath.Base(archive),
			Result: r.Format("%.2f"), Goal: "≤ 1.5", Met: met,
			Note: fmt.Sprintf("CPU time (user+sys) of `bpfsnap report ARCHIVE` over that of `bpfsnap analyze --json ARCHIVE` on the same archive, %d interleaved runs; the report reuses the summary's one pass over the samples for its flame graphs and slices", max(env.Reps, 3))})
	}
	size := func(p string) float64 {
		st, err := os.Stat(p)
		if err != nil {
			return 0
		}
		return float64(st.Size()) / 1e6
	}
	said := func(out *strings.Builder, path string) string {
		return strings.ReplaceAll(strings.TrimSpace(out.String()), path, filepath.Base(path))
	}
	how := fmt.Sprintf("`go run ./bench -only \"end to end\"`: %s of the demo (scripts/demo.sh's shop under 4 load workers + cpuburn, whole-node capture with the default probe sets; leaky under `capture -p mem --pid`), both ended by SIGINT; one run", e2eWindow)
	return append([]Row{
		{Name: "end to end: capture finalize (SIGINT to complete archive), node / mem capture",
			Result: fmt.Sprintf("%.1f s / %.1f s", finalize[0].Seconds(), finalize[1].Seconds()),
			Note:   how + "; finalize includes sealing the last chunks, symbolizing every stack while the processes live, and bundling the zip: " + said(&nodeOut, node) + " / " + said(&memOut, mem)},
		{Name: "end to end: `bpfsnap report` of both archives to one HTML page",
			Result: fmt.Sprintf("%.1f s, %.1f MB", reportTime.Seconds(), size(html)),
			Note:   how + "; wall time of `bpfsnap report demo.bpfsnap leak.bpfsnap -o report.html` and the page's size (self-contained: data, SVG flame graphs, scripts)"},
		{Name: "end to end: archive sizes, node / mem capture",
			Result: fmt.Sprintf("%.1f MB / %.1f MB", size(node), size(mem)),
			Note:   how},
	}, ratioRows...), nil
}

// reportOverAnalyze times `report` against `analyze --json` on one archive,
// interleaved, in CPU time (steadier than wall time on a shared machine),
// and returns the ratios.
func reportOverAnalyze(env *Env, archive string) (Stats, error) {
	html := archive + ".html"
	defer os.Remove(html)
	var ratios []float64
	for i := 0; i < max(env.Reps, 3); i++ {
		an := exec.Command(env.Bpfsnap, "analyze", "--json", archive)
		if out, err := an.CombinedOutput(); err != nil {
			return Stats{}, fmt.Errorf("analyze: %v: %.200s", err, out)
		}
		rep := exec.Command(env.Bpfsnap, "report", "-o", html, archive)
		if out, err := rep.CombinedOutput(); err != nil {
			return Stats{}, fmt.Errorf("report: %v: %s", err, out)
		}
		if a := cpuSeconds(an); a > 0 {
			ratios = append(ratios, cpuSeconds(rep)/a)
		}
	}
	return stats(ratios), nil
}
