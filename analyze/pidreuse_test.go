package analyze

import (
	"testing"

	"github.com/bpfsnap/bpfsnap/formats"
)

// Samples of a pid reused within the window are named after the life they
// fall in, not after the pid's last program.
func TestCPUStacksNamedPerPIDLife(t *testing.T) {
	procs := FoldProcesses([]formats.ProcessEvent{
		{TimeNs: 100, Kind: formats.ProcessFork, PID: 7, StartNs: 100, Comm: "sh"},
		{TimeNs: 110, Kind: formats.ProcessExec, PID: 7, StartNs: 100, Comm: "alpha"},
		{TimeNs: 200, Kind: formats.ProcessExit, PID: 7, StartNs: 100, Comm: "alpha"},
		{TimeNs: 300, Kind: formats.ProcessFork, PID: 7, StartNs: 300, Comm: "sh"},
		{TimeNs: 310, Kind: formats.ProcessExec, PID: 7, StartNs: 300, Comm: "beta"},
		{TimeNs: 400, Kind: formats.ProcessExit, PID: 7, StartNs: 300, Comm: "beta"},
		{TimeNs: 100, Kind: formats.ProcessScan, PID: 9, StartNs: 50, Comm: "solo"},
	})
	lives := newPIDLives(procs)
	if len(lives[7]) != 2 || lives[9] != nil {
		t.Fatalf("lives: %+v", lives)
	}
	counts := map[sampleKey]uint64{}
	for _, s := range []struct {
		pid uint32
		t   uint64
	}{{7, 150}, {7, 160}, {7, 350}, {9, 150}} {
		var life int32
		if lives[s.pid] != nil {
			life = lives.life(s.pid, s.t)
		}
		counts[sampleKey{s.pid, life, 0}]++
	}
	p := buildCPUProfile(counts, &Stacks{}, lives)
	p.Names[7], p.Names[9] = "beta", "solo"
	p.Samples = 4
	got := map[string]uint64{}
	for _, f := range p.Folded(FoldOptions{WithPID: true}) {
		got[f.Frames[0]] += f.Count
	}
	if got["alpha-7"] != 2 || got["beta-7"] != 1 || got["solo-9"] != 1 || len(got) != 3 {
		t.Errorf("folded roots %v, want alpha-7:2 beta-7:1 solo-9:1", got)
	}
	sum := p.Summarize()
	if len(sum.Processes) != 3 || sum.Processes[0].Comm != "alpha" || sum.Processes[0].Samples != 2 {
		t.Errorf("summary processes %+v", sum.Processes)
	}
}
