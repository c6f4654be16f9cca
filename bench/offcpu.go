package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
)

func init() {
	benchmarks = append(benchmarks, benchmark{"off-CPU cost at a high context-switch rate", benchOffCPU})
}

// bpftraceOffCPU does what -p offcpu does, the way people write it with
// bpftrace: at switch-out of a thread of the target, its time and kernel
// and user stacks; at the waking, the end of the blocked part; at
// switch-in, the blocked and run-queue time summed per stack.
const bpftraceOffCPU = `tracepoint:sched:sched_switch {
	if (args->prev_pid != 0 && pid == $1) {
		@off[args->prev_pid] = nsecs;
		@ks[args->prev_pid] = kstack;
		@us[args->prev_pid] = ustack;
	}
	$t = @off[args->next_pid];
	if ($t != 0) {
		$w = @wake[args->next_pid];
		if ($w != 0) {
			@blocked[@ks[args->next_pid], @us[args->next_pid]] = sum($w - $t);
			@runq[@ks[args->next_pid], @us[args->next_pid]] = sum(nsecs - $w);
		} else {
			@runq[@ks[args->next_pid], @us[args->next_pid]] = sum(nsecs - $t);
		}
		delete(@off[args->next_pid]);
		delete(@wake[args->next_pid]);
	}
}
tracepoint:sched:sched_waking /@off[args->pid]/ { @wake[args->pid] = nsecs; }
END { clear(@off); clear(@wake); clear(@ks); clear(@us); }`

var pingpongFigures = regexp.MustCompile(`([0-9.]+) switches/s ([0-9.]+) ns/switch \(([0-9]+) switches`)

// pingpongRun is one run of the ping-pong pair under a tracer.
type pingpongRun struct {
	perSec, nsPerSwitch, switches float64
	bpfNs                         float64 // the tracer's BPF run time during the run
}

// benchOffCPU: two threads pinned to one CPU passing a byte through pipes
// (testdata/offcpu/pingpong.c, ~250k context switches/s bare), run bare,
// under `capture -p offcpu --pid`, under the floor (empty programs at the
// same tracepoints) and under a bpftrace sched_switch script doing the
// same job, interleaved: switches/s kept, the time each adds per switch,
// and the BPF run time per switch (kernel.bpf_stats_enabled).
func benchOffCPU(env *Env) ([]Row, error) {
	bin := filepath.Join(env.Dir, "pingpong")
	if out, err := exec.Command("gcc", "-O2", "-fno-omit-frame-pointer", "-pthread", "-o", bin, "testdata/offcpu/pingpong.c").CombinedOutput(); err != nil {
		return nil, fmt.Errorf("gcc: %v: %s", err, out)
	}
	script := filepath.Join(env.Dir, "offcpu.bt")
	if err := os.WriteFile(script, []byte(bpftraceOffCPU), 0o644); err != nil {
		return nil, err
	}
	exec.Command("sysctl", "-qw", "kernel.bpf_stats_enabled=1").Run()
	defer exec.Command("sysctl", "-qw", "kernel.bpf_stats_enabled=0").Run()
	out := filepath.Join(env.Dir, "offcpu.bpfsnap")
	capture := func(extra ...string) []string {
		return append([]string{env.Bpfsnap, "capture", "-p", "offcpu", "--pid", "PID", "-d", "10m", "-o", out, "--force"}, extra...)
	}
	variants := []struct {
		name   string
		tracer []string
		ready  string // a line the tracer prints once attached; "" waits 2 s
	}{
		{"bare", nil, ""},
		{"bpfsnap", capture(), ""},
		{"floor", capture("--offcpu-floor"), ""},
		{"bpftrace", []string{"bpftrace", script, "PID"}, "Attaching"},
	}
	const rounds = 300000
	res := map[string][]pingpongRun{}
	for i := 0; i < env.Reps; i++ {
		for _, v := range variants {
			r, err := runPingpong(env, bin, rounds, v.tracer, v.ready)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", v.name, err)
			}
			res[v.name] = append(res[v.name], r)
		}
	}
	// Ratios and differences are taken run by run against the bare run
	// of the same round, then summarized.
	kept := func(name string) Stats {
		var xs []float64
		for i, r := range res[name] {
			xs = append(xs, r.perSec/res["bare"][i].perSec)
		}
		return stats(xs)
	}
	added := func(name string) Stats {
		var xs []float64
		for i, r := range res[name] {
			xs = append(xs, r.nsPerSwitch-res["bare"][i].nsPerSwitch)
		}
		return stats(xs)
	}
	bpfPer := func(name string) Stats {
		var xs []float64
		for _, r := range res[name] {
			if r.switches > 0 {
				xs = append(xs, r.bpfNs/r.switches)
			}
		}
		return stats(xs)
	}
	var bare []float64
	for _, r := range res["bare"] {
		bare = append(bare, r.perSec)
	}
	how := fmt.Sprintf("testdata/offcpu/pingpong.c pinned to one CPU, %d round trips per run (bare %s switches/s, from the threads' own context-switch counts and clock); capture -p offcpu --pid (defaults); %d interleaved runs",
		rounds, stats(bare).Format("%.0f"), env.Reps)
	ours, bt, fl := kept("bpfsnap"), kept("bpftrace"), kept("floor")
	return []Row{
		{Name: "off-CPU at ~250k switches/s: switches/s kept, -p offcpu", Result: ours.Format("%.3f"),
			Peer: "bpftrace sched_switch script: " + bt.Format("%.3f") + "; floor (empty programs): " + fl.Format("%.3f"),
			Goal: "keeps more than bpftrace", Met: yesNo(ours.Median > bt.Median), Note: how},
		{Name: "off-CPU: ns added per context switch, -p offcpu", Result: added("bpfsnap").Format("%.0f"),
			Peer: "bpftrace: " + added("bpftrace").Format("%.0f") + "; floor: " + added("floor").Format("%.0f"),
			Note: "the pair's ns per switch under the tracer minus bare, same round"},
		{Name: "off-CPU: BPF run time per context switch, -p offcpu", Result: bpfPer("bpfsnap").Format("%.0f") + " ns",
			Peer: "bpftrace: " + bpfPer("bpftrace").Format("%.0f") + " ns",
			Note: "run_time_ns of the tracer's programs (kernel.bpf_stats_enabled, all their runs: switch, waking, the process probe) / the pair's switches"},
	}, nil
}

// runPingpong runs the pair held until tracer (argv with PID replaced by
// the pair's pid) is attached, and returns its figures and the tracer's
// BPF run time during the run.
func runPingpong(env *Env, bin string, rounds int, tracer []string, ready string) (pingpongRun, error) {
	gate := filepath.Join(env.Dir, "pingpong.go")
	w := exec.Command("taskset", "-c", "0", bin, strconv.Itoa(rounds))
	w.Env = append(os.Environ(), "PINGPONG_WAIT_FILE="+gate)
	var r pingpongRun
	var before float64
	measured := 0
	out, err := gatedRun(w, gate, tracer, ready, func(pid int) {
		if pid == 0 {
			return
		}
		if measured++; measured == 1 {
			before = bpfRunNs(pid)
		} else {
			r.bpfNs = bpfRunNs(pid) - before
		}
	})
	if err != nil {
		return r, err
	}
	m := pingpongFigures.FindStringSubmatch(out)
	if m == nil {
		return r, fmt.Errorf("pingpong printed no figures: %q", out)
	}
	r.perSec, _ = strconv.ParseFloat(m[1], 64)
	r.nsPerSwitch, _ = strconv.ParseFloat(m[2], 64)
	r.switches, _ = strconv.ParseFloat(m[3], 64)
	return r, nil
}
