package analyze_test

import (
	"math"
	"strings"
	"testing"

	"github.com/bpfsnap/bpfsnap/analyze"
	"github.com/bpfsnap/bpfsnap/formats"
	fx "github.com/bpfsnap/bpfsnap/internal/offcpufixture"
)

func near(got, want, tol float64) bool { return math.Abs(got-want) <= tol }

func loadFixture(t *testing.T, r analyze.Request) *analyze.Summary {
	t.Helper()
	path, err := fx.Write(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	s, err := analyze.Load(path, r)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// Each route's time split adds up what its requests' serving thread did,
// exactly for rows of one interval.
func TestTimeSplitPerEndpoint(t *testing.T) {
	s := loadFixture(t, analyze.Request{})
	splits := map[string]*analyze.TimeSplit{}
	for _, e := range s.HTTP.Endpoints {
		splits[e.Route] = e.TimeSplit
	}
	n := float64(fx.Requests)
	lock := splits["/lock"]
	if lock == nil || lock.Requests != fx.Requests || lock.OnCPUSource != analyze.OnCPUFromScheduler {
		t.Fatalf("/lock split %+v", lock)
	}
	if !near(lock.WallMs, n*fx.LockWall, 1e-6) || !near(lock.OffCPUByClassMs[analyze.WaitLock], n*fx.LockBlocked, 1e-6) ||
		!near(lock.RunqueueMs, n*fx.LockRunq, 1e-6) || !near(lock.OnCPUMs, n*(fx.LockWall-fx.LockBlocked-fx.LockRunq), 1e-6) || lock.Dominant != analyze.WaitLock {
		t.Errorf("/lock: %+v", lock)
	}
	top := lock.BlockedStacks[0]
	if top.Class != analyze.WaitLock || !near(top.Ms, n*fx.LockBlocked, 1e-6) || top.Stack[0] != "schedule_[k]" || !contains(top.Stack, "wait_for_lock") {
		t.Errorf("/lock top blocked stack: %+v (the probe's own frames and __schedule are left out)", top)
	}
	// The summed network row over the first /sleep request only fills
	// the room its exact row leaves.
	sleep := splits["/sleep"]
	if !near(sleep.OffCPUByClassMs[analyze.WaitSleep], n*fx.SleepBlocked, 1e-6) || !near(sleep.OffCPUByClassMs[analyze.WaitNetwork]+sleep.RunqueueMs-n*fx.SleepRunq, fx.SummedRoomMs, 1e-6) ||
		sleep.OnCPUMs < 0 || !near(sleep.OnCPUMs+sleep.OffCPUMs+sleep.RunqueueMs, sleep.WallMs, 1e-6) || sleep.Dominant != analyze.WaitSleep {
		t.Errorf("/sleep: %+v", sleep)
	}
	comp := splits["/compute"]
	if !near(comp.OnCPUMs, n*(fx.ComputeWall-fx.ComputeRunq), 1e-6) || !near(comp.RunqueueMs, n*fx.ComputeRunq, 1e-6) || comp.OffCPUMs != 0 ||
		comp.CPUSamples != fx.Requests*fx.ComputeSamples || comp.Dominant != "on_cpu" {
		t.Errorf("/compute: %+v", comp)
	}
	if len(comp.CPUStacks) != 1 || comp.CPUStacks[0].Stack[0] != "crunch" || !near(comp.CPUStacks[0].Ms, n*fx.ComputeSamples*10, 1e-6) {
		t.Errorf("/compute CPU stacks: %+v", comp.CPUStacks)
	}
	for route, ts := range splits {
		if th := ts.Throttling; th == nil || th.Path != fx.CgroupV2 || th.ThrottledPeriods != fx.ThrottledPeriods || !near(th.ThrottledMs, fx.ThrottledMs, 1e-9) || th.QuotaCPUs != 0.5 {
			t.Errorf("%s: throttling %+v", route, ts.Throttling)
		}
	}
	// The slowest requests get their own split.
	for _, x := range s.HTTP.Slowest {
		if x.TimeSplit == nil || x.TimeSplit.Requests != 1 || !near(x.TimeSplit.WallMs, x.LatencyMs, 1e-6) {
			t.Errorf("slow request %s at %v: split %+v", x.Path, x.Time, x.TimeSplit)
		}
	}
	slow := analyze.SlowRequestsSplit(s.HTTP)
	if slow == nil || slow.Requests != int64(len(s.HTTP.Slowest)) {
		t.Fatalf("slow requests' split: %+v", slow)
	}
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// The offcpu section: classes, processes, throttling, pods, and the
// folded profile in microseconds with the class under the process.
func TestOffCPUSection(t *testing.T) {
	s := loadFixture(t, analyze.Request{})
	o := s.OffCPU
	if o == nil {
		t.Fatal("no offcpu section")
	}
	byClass := map[string]analyze.OffCPUClass{}
	for _, c := range o.Classes {
		byClass[c.Class] = c
	}
	n := float64(fx.Requests)
	if c := byClass[analyze.WaitLock]; !near(c.BlockedMs, n*fx.LockBlocked, 1e-6) || c.Intervals != fx.Requests {
		t.Errorf("lock class %+v", c)
	}
	if c := byClass[analyze.WaitDisk]; !near(c.BlockedMs, 5, 1e-6) || c.Intervals != 50 {
		t.Errorf("disk class (the summed iowait row) %+v", c)
	}
	if c := byClass[analyze.WaitPreempted]; !near(c.RunqueueMs, n*fx.ComputeRunq, 1e-6) || c.BlockedMs != 0 {
		t.Errorf("preempted class %+v", c)
	}
	if o.IntervalsWithoutStack != 20 {
		t.Errorf("intervals without stack = %d, want the 20 of the stackless summed row", o.IntervalsWithoutStack)
	}
	if len(o.Cgroups) != 2 || o.Cgroups[0].Path != fx.CgroupV2 || o.Cgroups[0].Partial || !o.Cgroups[1].Partial {
		t.Errorf("cgroups %+v", o.Cgroups)
	}
	if len(o.Pods) != 1 || o.Pods[0].Pod != fx.Pod || o.Pods[0].Throttling == nil || !near(o.Pods[0].RunqueueMs, o.RunqueueMs, 1e-6) {
		t.Errorf("pods %+v (runqueue of all %.3f)", o.Pods, o.RunqueueMs)
	}
	prof, err := s.RequireOffCPU()
	if err != nil {
		t.Fatal(err)
	}
	var lockUs, runqUs uint64
	for _, f := range prof.Folded() {
		line := strings.Join(f.Frames, ";")
		if strings.Contains(line, "__schedule") || strings.Contains(line, "bpf_trace") || strings.Contains(line, "_einittext") {
			t.Errorf("the probe's own frames in %q", line)
		}
		if f.Frames[0] != "srv" {
			t.Errorf("root %q, want the process", f.Frames[0])
		}
		if f.Frames[1] == "[lock]" && f.Frames[len(f.Frames)-1] == "schedule_[k]" {
			lockUs += f.Count
		}
		if f.Frames[len(f.Frames)-1] == "[run queue]" {
			runqUs += f.Count
		}
		for _, fr := range f.Frames {
			if strings.ContainsAny(fr, ";\n\x1b") {
				t.Errorf("unsafe frame name %q", fr)
			}
		}
	}
	if lockUs != uint64(n*fx.LockBlocked*1000) {
		t.Errorf("folded: %d µs under [lock], want %v", lockUs, n*fx.LockBlocked*1000)
	}
	if !near(float64(runqUs), o.RunqueueMs*1000, float64(len(prof.Stacks))) {
		t.Errorf("folded: %d µs of run queue, want %.0f", runqUs, o.RunqueueMs*1000)
	}
}

// Time slices split the off-CPU profile like the CPU one, and a time
// filter clips intervals to it.
func TestOffCPUSlicesAndFilter(t *testing.T) {
	s := loadFixture(t, analyze.Request{Slices: 5})
	prof := s.OffCPUProfile()
	if len(prof.Slices) != 5 || len(s.CPUProfile().Slices) != 5 || prof.Slices[1].From != s.CPUProfile().Slices[1].From {
		t.Fatalf("slices: %d off-CPU, %d CPU", len(prof.Slices), len(s.CPUProfile().Slices))
	}
	var blocked, runq float64
	for _, sl := range prof.Slices {
		blocked += sl.Profile.BlockedNs
		runq += sl.Profile.RunqueueNs
	}
	if !near(blocked, prof.BlockedNs, 1) || !near(runq, prof.RunqueueNs, 1) {
		t.Errorf("slices hold %.0f+%.0f ns, the whole %.0f+%.0f", blocked, runq, prof.BlockedNs, prof.RunqueueNs)
	}
	// The holder's 499 ms sleep from 6.0 s: cut at 6.2 s.
	cut := loadFixture(t, analyze.Request{From: "6s", To: "6200ms"})
	if !near(cut.OffCPU.BlockedMs, 200, 1e-6) || cut.OffCPU.RunqueueMs != 0 {
		t.Errorf("6.0–6.2 s: %.3f ms blocked, %.3f ms run queue; want 200 and 0", cut.OffCPU.BlockedMs, cut.OffCPU.RunqueueMs)
	}
	if _, err := loadFixture(t, analyze.Request{From: "9s"}).RequireOffCPU(); err == nil {
		t.Error("no error for a slice without off-CPU time")
	}
}

// Without the offcpu probe, on-CPU time comes from the serving thread's
// samples and nothing claims what the rest was.
func TestTimeSplitFromSamplesOnly(t *testing.T) {
	path, err := fx.Write(t.TempDir(), formats.TableOffCPU, formats.TableCgroupCPU)
	if err != nil {
		t.Fatal(err)
	}
	s, err := analyze.Load(path, analyze.Request{})
	if err != nil {
		t.Fatal(err)
	}
	if s.OffCPU != nil {
		t.Fatal("an offcpu section without its table")
	}
	for _, e := range s.HTTP.Endpoints {
		ts := e.TimeSplit
		if ts == nil || ts.OnCPUSource != analyze.OnCPUFromSamples || ts.OffCPUMs != 0 || ts.RunqueueMs != 0 || ts.Throttling != nil {
			t.Fatalf("%s: %+v", e.Route, ts)
		}
		switch e.Route {
		case "/compute": // 2 samples of 10 ms in each 20 ms request
			if !near(ts.OnCPUMs, fx.Requests*fx.ComputeSamples*10, 1e-6) || ts.Dominant != "on_cpu" {
				t.Errorf("/compute: %+v", ts)
			}
		default:
			if ts.OnCPUMs != 0 || ts.Dominant != "unknown" {
				t.Errorf("%s: %+v", e.Route, ts)
			}
		}
	}
	if analyze.SlowRequestsSplit(s.HTTP).OnCPUSource != analyze.OnCPUFromSamples {
		t.Error("the slow requests' split does not say where on-CPU came from")
	}
}
