package analyze

import (
	"sort"

	"github.com/bpfsnap/bpfsnap/formats"
	"github.com/bpfsnap/bpfsnap/internal/symbolize"
)

// nameJITFrames names frames of JIT code (module "[jit]" or
// "[jit:RUNTIME]", no function) from the jit_symbols rows of the pid of
// the stack holding them: the last row of that pid containing the frame's
// address, as the runtime's map said most recently. stackPIDs gives each
// wanted stack's pid; a JIT frame's id is its process's, so it has one.
func nameJITFrames(a *formats.Archive, frames map[uint64]*formats.Frame, wanted map[uint64][]uint64, stackPIDs map[uint64]uint32) error {
	if !a.HasTable(formats.TableJITSymbols) {
		return nil
	}
	framePID := map[uint64]uint32{}
	addrs := map[uint32][]uint64{}
	for sid, fids := range wanted {
		for _, fid := range fids {
			f := frames[fid]
			if f == nil || f.Kernel || f.Function != "" {
				continue
			}
			if _, ok := formats.IsJITModule(f.Module); !ok {
				continue
			}
			if _, seen := framePID[fid]; seen {
				continue
			}
			pid := stackPIDs[sid]
			framePID[fid] = pid
			addrs[pid] = append(addrs[pid], f.Address)
		}
	}
	if len(framePID) == 0 {
		return nil
	}
	namers := make(map[uint32]*symbolize.JITNamer, len(addrs))
	for pid, as := range addrs {
		namers[pid] = symbolize.NewJITNamer(as)
	}
	err := formats.ReadTable(a, formats.TableJITSymbols, func(rows []formats.JITSymbol) error {
		for i := range rows {
			if n := namers[rows[i].PID]; n != nil {
				n.Add(symbolize.JITSymbol{Start: rows[i].Start, Size: rows[i].Size, Name: rows[i].Name})
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	for fid, pid := range framePID {
		f := frames[fid]
		if s, ok := namers[pid].Lookup(f.Address); ok {
			f.Function = s.Name
		}
	}
	return nil
}

// JITProcess is a process whose CPU samples ran JIT code: how many, how
// many of those have every JIT frame named from the runtime's perf map,
// and, when some stayed unnamed, how to make the runtime name its code.
type JITProcess struct {
	PID     uint32 `json:"pid"`
	Process string `json:"process"`
	// Runtime is "node", "java", "python", "dotnet", or empty when the
	// process's mappings did not show which runtime made the code.
	Runtime string `json:"runtime,omitempty"`
	// Samples have at least one frame in JIT code; NamedSamples have all
	// of them named.
	Samples      uint64 `json:"samples"`
	NamedSamples uint64 `json:"named_samples"`
	// Hint says how to have the runtime write its perf map (empty when
	// every JIT frame was named).
	Hint string `json:"hint,omitempty"`
}

// JITHint is how to make a runtime name its JIT code in
// /tmp/perf-PID.map, which bpfsnap reads at the end of a capture.
func JITHint(runtime string) string {
	switch runtime {
	case formats.RuntimeNode:
		return "run node with --perf-basic-prof (or --perf-basic-prof-only-functions) so it names its JIT code in /tmp/perf-PID.map"
	case formats.RuntimeJava:
		return "run java with -XX:+PreserveFramePointer (whole stacks through JIT code) and have it write /tmp/perf-PID.map: capture with --perf-map-request (jcmd PID Compiler.perfmap at the end of the window) or start it with -XX:+UnlockDiagnosticVMOptions -XX:+DumpPerfMapAtExit"
	case formats.RuntimePython:
		return "run python 3.12+ with -X perf (or PYTHONPERFSUPPORT=1) so its functions are named in /tmp/perf-PID.map"
	case formats.RuntimeDotnet:
		return "set DOTNET_PerfMapEnabled=1 in the process's environment so .NET names its JIT code in /tmp/perf-PID.map"
	}
	return "the runtime that generated this code can name it in /tmp/perf-PID.map (perf's JIT interface): node --perf-basic-prof, java with jcmd PID Compiler.perfmap, python -X perf, DOTNET_PerfMapEnabled=1"
}

// JITProcesses lists the processes of a CPU profile that ran JIT code,
// most samples in JIT code first.
func JITProcesses(p *CPUProfile) []JITProcess {
	if p == nil {
		return nil
	}
	by := map[uint32]*JITProcess{}
	for i := range p.Stacks {
		s := &p.Stacks[i]
		inJIT, named, runtime := false, true, ""
		for _, f := range s.Frames {
			rt, ok := formats.IsJITModule(f.Module)
			if !ok || f.Kernel {
				continue
			}
			inJIT = true
			if rt != "" {
				runtime = rt
			}
			if f.Function == "" {
				named = false
			}
		}
		if !inJIT {
			continue
		}
		jp := by[s.PID]
		if jp == nil {
			jp = &JITProcess{PID: s.PID, Process: p.ProcessName(s.PID)}
			by[s.PID] = jp
		}
		if runtime != "" {
			jp.Runtime = runtime
		}
		jp.Samples += s.Count
		if named {
			jp.NamedSamples += s.Count
		}
	}
	out := make([]JITProcess, 0, len(by))
	for _, jp := range by {
		if jp.NamedSamples < jp.Samples {
			jp.Hint = JITHint(jp.Runtime)
		}
		out = append(out, *jp)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Samples != out[j].Samples {
			return out[i].Samples > out[j].Samples
		}
		return out[i].PID < out[j].PID
	})
	return out
}
