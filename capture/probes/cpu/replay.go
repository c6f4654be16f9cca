//go:build linux

package cpu

import (
	"unsafe"

	"github.com/bpfsnap/bpfsnap/capture/recorder"
	"github.com/bpfsnap/bpfsnap/formats"
)

// Replay returns a function that feeds the probe set's own decoder (frame
// pointer samples), with no kernel, the i-th of a stream of samples of one
// process with a 12-frame user stack and a 3-frame kernel stack: for
// benchmarks of the recorder's user-space half (bench/), which then run
// the real decoding and stack deduplication rather than a copy of them.
func Replay(s *recorder.Session) func(i int) error {
	c := &cpuProbe{s: s}
	c.table = formats.NewTable[formats.CPUSample](s.Writer(), formats.TableCPUSamples)
	stacks := s.Stacks()
	var ev bpfCpuSample
	user := []uint64{0x401000, 0x401200, 0x401400, 0x7f0000001000, 0x7f0000002000, 0x401600, 0x401800, 0x401a00, 0x401c00, 0x7f0000003000, 0x7f0000004000, 0x401e00}
	copy(ev.Ustack[:], user)
	copy(ev.Kstack[:], []uint64{0xffffffff81000000, 0xffffffff81000100, 0xffffffff81000200})
	ev.UstackBytes, ev.KstackBytes, ev.Pid, ev.Tid, ev.CgroupId = int32(8*len(user)), 24, 4242, 4243, 777
	copy(ev.Comm[:], []int8{'w', 'o', 'r', 'k', 'e', 'r'})
	raw := unsafe.Slice((*byte)(unsafe.Pointer(&ev)), unsafe.Sizeof(ev))
	return func(i int) error {
		ev.TimeNs, ev.Cpu = uint64(i)*50_000, uint32(i&1)
		// A few distinct stacks, as a real profile has.
		ev.Ustack[0] = user[0] + uint64(i%16)*4
		c.handle(stacks, raw)
		return s.Writer().Err()
	}
}
