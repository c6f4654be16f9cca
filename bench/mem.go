package main

import (
	"fmt"
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
	benchmarks = append(benchmarks, benchmark{"allocation tracing cost", benchMem})
}

const memLibc = "/lib/x86_64-linux-gnu/libc.so.6"

// bpftraceMemEmpty is the cheapest thing bpftrace can attach: empty bodies
// on malloc and free entry (free+0: a single-stepped instruction).
const bpftraceMemEmpty = `uprobe:%[1]s:malloc {} uprobe:%[1]s:free {}`

// bpftraceMemScript does what -p mem does, the way people write it: size at
// malloc entry, block and stack at its return, forget the block at free.
const bpftraceMemScript = `uprobe:%[1]s:malloc { @sz[tid] = arg0; }
uretprobe:%[1]s:malloc /@sz[tid]/ { @size[retval] = @sz[tid]; @stack[retval] = ustack; delete(@sz[tid]); }
uprobe:%[1]s:free { delete(@size[arg0]); delete(@stack[arg0]); }
END { clear(@size); clear(@stack); clear(@sz); }`

var nsPer = regexp.MustCompile(`([0-9.]+) ns/(pair|call)`)

// benchMem: ns per malloc/free pair of testdata/mem/pairs.c bare, under
// `capture -p mem --pid`, under the floor (the same probes with empty
// programs, --mem-floor), under two bpftrace scripts and under heaptrack,
// interleaved; plus byte sampling, DWARF stacks, and what the syscall
// tracepoints cost a process that is not traced.
func benchMem(env *Env) ([]Row, error) {
	bin := filepath.Join(env.Dir, "pairs")
	if out, err := exec.Command("gcc", "-O2", "-fno-omit-frame-pointer", "-o", bin, "testdata/mem/pairs.c").CombinedOutput(); err != nil {
		return nil, fmt.Errorf("gcc: %v: %s", err, out)
	}
	const pairs = 200000
	gate := filepath.Join(env.Dir, "pairs.go")
	// traced runs the workload held until tracer (argv with PID
	// substituted) is attached and returns its figure.
	traced := func(n int, mode string, tracer []string, ready string) (float64, error) {
		args := []string{strconv.Itoa(n)}
		if mode != "" {
			args = append(args, mode)
		}
		w := exec.Command(bin, args...)
		w.Env = append(os.Environ(), "PAIRS_WAIT_FILE="+gate)
		out, err := gatedRun(w, gate, tracer, ready, nil)
		if err != nil {
			return 0, err
		}
		m := nsPer.FindStringSubmatch(out)
		if m == nil {
			return 0, fmt.Errorf("pairs printed no figure: %q", out)
		}
		return strconv.ParseFloat(m[1], 64)
	}
	out := filepath.Join(env.Dir, "mem.bpfsnap")
	capture := func(extra ...string) []string {
		return append([]string{env.Bpfsnap, "capture", "-p", "mem", "--pid", "PID", "-d", "10m", "-o", out, "--force"}, extra...)
	}
	// A capture prints nothing when it is ready without a terminal: give
	// it time to attach (bpftrace says "Attaching").
	const ready = ""
	variants := []struct {
		name   string
		n      int
		mode   string
		tracer []string
		ready  string
	}{
		{"bare", 5000000, "", nil, ""},
		{"bpfsnap", pairs, "", capture(), ready},
		{"floor", pairs, "", capture("--mem-floor"), ready},
		{"bpftrace-empty", pairs, "", []string{"bpftrace", "-p", "PID", "-e", fmt.Sprintf(bpftraceMemEmpty, memLibc)}, "Attaching"},
		{"bpftrace-script", pairs, "", []string{"bpftrace", "-p", "PID", "-e", fmt.Sprintf(bpftraceMemScript, memLibc)}, "Attaching"},
		{"sampled", pairs, "", capture("--mem-sample", "524288"), ready},
		{"dwarf", pairs, "", capture("--mem-unwind", "dwarf"), ready},
		{"nommap", pairs, "", capture("--mem-mmap=false"), ready},
		// A process that is not traced, making syscalls while a capture
		// of another process runs (the syscall tracepoints are host-wide).
		{"sys-bare", 2000000, "sys", nil, ""},
		{"sys-under-mem", 2000000, "sys", []string{"sh", "-c", "sleep 600 & exec " + strings.Join(capture(), " ") + " --pid $!"}, ""},
	}
	if _, err := exec.LookPath("heaptrack"); err == nil {
		variants = append(variants, struct {
			name   string
			n      int
			mode   string
			tracer []string
			ready  string
		}{"heaptrack", pairs, "", nil, ""})
	}
	res := map[string][]float64{}
	for i := 0; i < env.Reps; i++ {
		for _, v := range variants {
			var x float64
			var err error
			switch {
			case v.name == "heaptrack":
				x, err = heaptrackPairs(env, bin, v.n)
			case v.name == "sys-under-mem":
				x, err = underSleeper(traced, v.n, v.mode, v.tracer)
			default:
				x, err = traced(v.n, v.mode, v.tracer, v.ready)
			}
			if err != nil {
				return nil, fmt.Errorf("%s: %w", v.name, err)
			}
			res[v.name] = append(res[v.name], x)
		}
	}
	st := func(name string) Stats { return stats(res[name]) }
	var ratioFloor, ratioBT []float64
	for i := range res["bpfsnap"] {
		ratioFloor = append(ratioFloor, res["bpfsnap"][i]/res["floor"][i])
		ratioBT = append(ratioBT, res["bpfsnap"][i]/res["bpftrace-empty"][i])
	}
	rf, rb := stats(ratioFloor), stats(ratioBT)
	peers := "bpftrace empty malloc+free bodies: " + st("bpftrace-empty").Format("%.0f") +
		"; bpftrace malloc/uretprobe/free script: " + st("bpftrace-script").Format("%.0f")
	if len(res["heaptrack"]) > 0 {
		peers += "; heaptrack: " + st("heaptrack").Format("%.0f")
	} else {
		peers += "; heaptrack not installed"
	}
	how := fmt.Sprintf("testdata/mem/pairs.c, %d malloc(64)+free pairs per run, ns/pair from the program's own clock; bare %s ns/pair; capture -p mem --pid (default: frame pointers, every allocation, mmap tracepoints on); %d interleaved runs",
		pairs, st("bare").Format("%.1f"), env.Reps)
	sysBare, sysUnder := st("sys-bare"), st("sys-under-mem")
	return []Row{
		{Name: "allocation tracing: ns per malloc/free pair, -p mem", Result: st("bpfsnap").Format("%.0f"), Peer: peers,
			Goal: "≤ 1/5 of bpftrace (empty bodies)", Met: yesNo(rb.Median <= 0.2), Note: how + "; ratio to bpftrace " + rb.Format("%.2f")},
		{Name: "allocation tracing: -p mem over the floor (empty programs at the same probes)", Result: rf.Format("%.2f"),
			Peer: "floor: " + st("floor").Format("%.0f") + " ns/pair", Goal: "≤ 1.3", Met: yesNo(rf.Median <= 1.3),
			Note: "--mem-floor attaches empty programs where -p mem attaches its own (malloc-family entry + uretprobe, free+3, syscall tracepoints)"},
		{Name: "allocation tracing: --mem-sample 512 KiB, ns per pair", Result: st("sampled").Format("%.0f"),
			Note: "unsampled allocations cost the traps and a few map operations, no ring event"},
		{Name: "allocation tracing: --mem-unwind dwarf, ns per pair", Result: st("dwarf").Format("%.0f"),
			Note: "4 KiB stack copy per allocation, unwound by the recorder"},
		{Name: "allocation tracing: --mem-mmap=false, ns per pair", Result: st("nommap").Format("%.0f"),
			Note: "without the syscall tracepoints"},
		{Name: "mem syscall tracepoints: getppid cost of an untraced process", Result: sysUnder.Format("%.0f") + " ns",
			Peer: "bare: " + sysBare.Format("%.0f") + " ns", Note: fmt.Sprintf("slowdown %.2f×: enabling any syscall tracepoint sends every syscall on the host through the slow path while -p mem runs (--mem-mmap=false avoids it)", sysUnder.Median/sysBare.Median)},
	}, nil
}

// underSleeper measures a workload while tracer (a capture of some other
// process) runs.
func underSleeper(traced func(int, string, []string, string) (float64, error), n int, mode string, tracer []string) (float64, error) {
	t := exec.Command(tracer[0], tracer[1:]...)
	t.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := t.Start(); err != nil {
		return 0, err
	}
	defer func() {
		syscall.Kill(-t.Process.Pid, syscall.SIGINT)
		t.Wait()
		syscall.Kill(-t.Process.Pid, syscall.SIGKILL)
	}()
	time.Sleep(2500 * time.Millisecond)
	return traced(n, mode, nil, "")
}

// heaptrackPairs runs the workload under heaptrack (LD_PRELOAD: it starts
// the program itself).
func heaptrackPairs(env *Env, bin string, n int) (float64, error) {
	cmd := exec.Command("heaptrack", "-o", filepath.Join(env.Dir, "heaptrack.out"), bin, strconv.Itoa(n))
	out, err := cmd.CombinedOutput()
	if err != nil {
		return 0, fmt.Errorf("heaptrack: %v: %s", err, out)
	}
	m := nsPer.FindStringSubmatch(string(out))
	if m == nil {
		return 0, fmt.Errorf("heaptrack: no figure: %s", out)
	}
	return strconv.ParseFloat(m[1], 64)
}
