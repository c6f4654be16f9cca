package main

import (
	"unsafe"

	"github.com/bpfsnap/bpfsnap/capture/probes/mem"
	"github.com/bpfsnap/bpfsnap/formats"
)

// aloneMem is the mem probe set's synthetic stream for benchRecorderAlone.
func aloneMem(w *formats.Writer) func(int) error {
	t := formats.NewTable[formats.MemEvent](w, formats.TableMemEvents)
	raw := make([]byte, unsafe.Sizeof(mem.Event{}))
	ev := (*mem.Event)(unsafe.Pointer(&raw[0]))
	copy(ev.Ustack[:], aloneUserStack[:])
	ev.H.UstackBytes, ev.H.Pid, ev.H.Tid = int32(8*len(aloneUserStack)), 4242, 4243
	kinds := [...]string{"", formats.MemMalloc, formats.MemCalloc, formats.MemRealloc, formats.MemFree}
	return func(i int) error {
		ev.H.TimeNs, ev.H.Kind, ev.H.Addr, ev.H.Size = uint64(i)*500, uint16(1+3*(i&1)), 0x5500000000+uint64(i%4096)*64, uint64(32+i%256)
		e := (*mem.Event)(unsafe.Pointer(&raw[0]))
		row := formats.MemEvent{TimeNs: e.H.TimeNs, PID: e.H.Pid, TID: e.H.Tid, Kind: kinds[e.H.Kind], Addr: e.H.Addr, Size: e.H.Size, Weight: 1}
		if e.H.Kind != 4 {
			frames := make([]uint64, 0, e.H.UstackBytes/8)
			for _, f := range e.Ustack[:e.H.UstackBytes/8] {
				frames = append(frames, f-1)
			}
			row.StackID = frames[0] ^ uint64(len(frames)) // stands in for the dedup table's id
		}
		return t.Write(row)
	}
}
