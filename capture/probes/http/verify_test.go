//go:build linux

package http

import (
	"errors"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/cilium/ebpf"

	"github.com/bpfsnap/bpfsnap/internal/testenv"
)

// The programs verify quickly: each global function is verified once and
// the loops run in bpf_loop callbacks whose state lives in map values. A
// change that makes the verifier walk states again (an unrolled loop with
// branches, state on the stack) shows here as a jump in instructions
// processed long before it hits the kernel's 1M limit or slows capture
// start-up.
func TestProgramsVerifyCheaply(t *testing.T) {
	testenv.RequireBPF(t)
	spec, err := loadBpf()
	if err != nil {
		t.Fatal(err)
	}
	processed := regexp.MustCompile(`processed (\d+) insns`)
	start := time.Now()
	for name, ps := range spec.Programs {
		coll := spec.Copy()
		for other := range coll.Programs {
			if other != name {
				delete(coll.Programs, other)
			}
		}
		c, err := ebpf.NewCollectionWithOptions(coll, ebpf.CollectionOptions{Programs: ebpf.ProgramOptions{LogLevel: ebpf.LogLevelStats}})
		if err != nil {
			var ve *ebpf.VerifierError
			if errors.As(err, &ve) {
				t.Fatalf("%s (%s): %+v", name, ps.Type, ve)
			}
			t.Fatalf("%s: %v", name, err)
		}
		log := c.Programs[name].VerifierLog
		m := processed.FindStringSubmatch(log)
		c.Close()
		if m == nil {
			t.Fatalf("%s: no stats in the verifier log: %q", name, log)
		}
		n, _ := strconv.Atoi(m[1])
		t.Logf("%s: %d instructions processed", name, n)
		if n > 200_000 {
			t.Errorf("%s: the verifier processed %d instructions", name, n)
		}
	}
	t.Logf("all programs loaded in %s", time.Since(start).Round(time.Millisecond))
}
