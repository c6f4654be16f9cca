package analyze

import (
	"strings"
	"testing"

	"github.com/bpfsnap/bpfsnap/internal/cpufixture"
)

// The growth section: per-process bytes (anonymous apart from file pages),
// the program before an exec left out, the RSS series of the running
// program, stacks ranked by bytes, the flame graph's folded lines in
// bytes with hostile names made safe, and filters honoured.
func TestGrowthOfFixture(t *testing.T) {
	path, err := cpufixture.WriteGrowth(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	s, err := Load(path, Request{})
	if err != nil {
		t.Fatal(err)
	}
	g, err := s.RequireGrowth()
	if err != nil {
		t.Fatal(err)
	}
	if !g.Estimated || g.SampleBytes != 65536 {
		t.Errorf("sampling: %+v", g)
	}
	if g.Bytes != cpufixture.LeakBytes+cpufixture.HostileBytes || g.FileBytes != cpufixture.FileBytes {
		t.Errorf("bytes %d file %d", g.Bytes, g.FileBytes)
	}
	if len(g.Processes) != 2 || g.Processes[0].PID != cpufixture.GrowthPID {
		t.Fatalf("processes %+v", g.Processes)
	}
	p := g.Processes[0]
	if p.Process != "grower" || p.Bytes != cpufixture.LeakBytes || p.FileBytes != cpufixture.FileBytes || p.ExactBytes != cpufixture.LeakBytes+1<<20 {
		t.Errorf("grower: %+v", p)
	}
	if len(p.RSS) != 11 || p.RSSStartBytes != cpufixture.RSSFrom || p.RSSEndBytes != cpufixture.RSSTo || p.RSSPeakBytes != cpufixture.RSSTo ||
		p.VMDataGrowthBytes != cpufixture.RSSTo-cpufixture.RSSFrom || p.RSS[0].T < 1 {
		t.Errorf("grower's RSS: start %d end %d peak %d data %+d, %d points from %.2f s", p.RSSStartBytes, p.RSSEndBytes, p.RSSPeakBytes,
			p.VMDataGrowthBytes, len(p.RSS), p.RSS[0].T)
	}
	if st := g.Stacks[0]; st.PID != cpufixture.GrowthPID || st.Bytes != cpufixture.LeakBytes || st.Events != cpufixture.LeakEvents ||
		strings.Join(st.Stack, ";") != "do_anonymous_page_[k];leak;main" {
		t.Errorf("top stack %+v", st)
	}
	folded := GrowthFolded(g)
	var lines []string
	for _, l := range folded {
		lines = append(lines, strings.Join(l.Frames, ";"))
		for _, f := range l.Frames {
			if strings.ContainsAny(f, ";\n") || f == "old_program" {
				t.Errorf("folded frame %q", f)
			}
		}
	}
	if len(folded) != 2 || lines[1] != "grower;main;leak;do_anonymous_page_[k]" || folded[1].Count != cpufixture.LeakBytes {
		t.Errorf("folded %q %+v", lines, folded)
	}

	// --pid keeps one process; --from/--to a part of the window.
	s, err = Load(path, Request{PIDs: []uint32{cpufixture.HostilePID}})
	if err != nil || s.Growth == nil || len(s.Growth.Processes) != 1 || s.Growth.Bytes != cpufixture.HostileBytes {
		t.Errorf("--pid: %v %+v", err, s.Growth)
	}
	s, err = Load(path, Request{From: "1s", To: "2s"})
	if err != nil || s.Growth.Bytes != 10*64<<10+cpufixture.HostileBytes {
		t.Errorf("--from 1s --to 2s: %v, %d bytes", err, s.Growth.Bytes)
	}
	s, err = Load(path, Request{From: "9.9s"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.RequireGrowth(); err == nil || !strings.Contains(err.Error(), "no memory growth matches") {
		t.Errorf("an empty slice: %v", err)
	}
}

// An archive without growth tables says how to get them.
func TestRequireGrowthWithoutData(t *testing.T) {
	path, err := cpufixture.Write(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	s, err := Load(path, Request{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.RequireGrowth(); err == nil || !strings.Contains(err.Error(), "-p growth") {
		t.Errorf("RequireGrowth: %v", err)
	}
}
