package main

import (
	"unsafe"

	"github.com/bpfsnap/bpfsnap/capture/probes/cpu"
	"github.com/bpfsnap/bpfsnap/formats"
)

// aloneCPU is the cpu probe set's synthetic stream for benchRecorderAlone.
func aloneCPU(w *formats.Writer) func(int) error {
	t := formats.NewTable[formats.CPUSample](w, formats.TableCPUSamples)
	raw := make([]byte, unsafe.Sizeof(cpu.Sample{}))
	ev := (*cpu.Sample)(unsafe.Pointer(&raw[0]))
	copy(ev.Ustack[:], aloneUserStack[:])
	copy(ev.Kstack[:], []uint64{0xffffffff81000000, 0xffffffff81000100, 0xffffffff81000200})
	ev.UstackBytes, ev.KstackBytes, ev.Pid, ev.Tid, ev.CgroupId = int32(8*len(aloneUserStack)), 24, 4242, 4243, 777
	copy(ev.Comm[:], []int8{'w', 'o', 'r', 'k', 'e', 'r'})
	return func(i int) error {
		ev.TimeNs, ev.Cpu = uint64(i)*50_000, uint32(i&1)
		e := (*cpu.Sample)(unsafe.Pointer(&raw[0]))
		k := append([]uint64(nil), e.Kstack[:e.KstackBytes/8]...)
		u := append([]uint64(nil), e.Ustack[:e.UstackBytes/8]...)
		comm := make([]byte, 0, 16)
		for _, c := range e.Comm {
			if c == 0 {
				break
			}
			comm = append(comm, byte(c))
		}
		return t.Write(formats.CPUSample{TimeNs: e.TimeNs, CPU: e.Cpu, PID: e.Pid, TID: e.Tid, CgroupID: e.CgroupId, Comm: string(comm), StackID: k[0] ^ u[len(u)-1]})
	}
}
