//go:build linux

package unwind

import (
	"bufio"
	"debug/elf"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/bpfsnap/bpfsnap/internal/symbolize"
	"github.com/bpfsnap/bpfsnap/internal/testenv"
)

// stoppedSample is what a sampler would have: registers, a copy of the top
// of the stack, and the process maps.
type stoppedSample struct {
	regs  Regs
	stack Stack
	maps  []symbolize.Mapping
}

// startChain runs the -O2 -fomit-frame-pointer chain program and waits until
// it spins in chain_leaf.
func startChain(t *testing.T, src string, flags ...string) *exec.Cmd {
	t.Helper()
	bin := buildC(t, src, flags...)
	cmd := exec.Command(bin)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil || line != "ready\n" {
		t.Fatalf("chain program did not start: %q %v", line, err)
	}
	// "ready" is written from chain_leaf just before it spins: give the
	// write(2) time to return so both stops below land in the loop.
	time.Sleep(100 * time.Millisecond)
	return cmd
}

// sampleWithPtrace stops pid, copies its registers and stackBytes of stack
// from rsp up (bounded by the [stack] mapping), and lets it run again.
func sampleWithPtrace(t *testing.T, pid int, stackBytes int) stoppedSample {
	t.Helper()
	if os.Geteuid() != 0 {
		testenv.Skip(t, "ptrace of a child needs root or ptrace_scope 0")
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if err := unix.PtraceAttach(pid); err != nil {
		t.Fatalf("ptrace attach: %v", err)
	}
	defer unix.PtraceDetach(pid)
	var ws unix.WaitStatus
	if _, err := unix.Wait4(pid, &ws, unix.WALL, nil); err != nil {
		t.Fatalf("wait: %v", err)
	}
	var pr unix.PtraceRegs
	if err := unix.PtraceGetRegs(pid, &pr); err != nil {
		t.Fatalf("getregs: %v", err)
	}
	mf, err := os.Open(fmt.Sprintf("/proc/%d/maps", pid))
	if err != nil {
		t.Fatal(err)
	}
	maps, err := symbolize.ParseMaps(mf)
	mf.Close()
	if err != nil {
		t.Fatal(err)
	}
	sp := pr.Rsp
	n := uint64(stackBytes)
	if m, ok := symbolize.Find(maps, sp); ok && m.End-sp < n {
		n = m.End - sp
	}
	mem, err := os.Open(fmt.Sprintf("/proc/%d/mem", pid))
	if err != nil {
		t.Fatal(err)
	}
	defer mem.Close()
	buf := make([]byte, n)
	got, err := mem.ReadAt(buf, int64(sp))
	if err != nil && got == 0 {
		t.Fatalf("read stack: %v", err)
	}
	return stoppedSample{
		regs:  Regs{PC: pr.Rip, SP: pr.Rsp, BP: pr.Rbp},
		stack: Stack{Base: sp, Data: buf[:got]},
		maps:  maps,
	}
}

// symbolizer names PCs of a process with its binaries' symbol tables.
type symbolizer struct {
	maps []symbolize.Mapping
	bins map[string]*symbolize.Binary
}

func (s *symbolizer) name(pc uint64) string {
	m, ok := symbolize.Find(s.maps, pc)
	if !ok || !m.FileBacked() {
		return fmt.Sprintf("%#x", pc)
	}
	b, ok := s.bins[m.Path]
	if !ok {
		b, _ = symbolize.OpenFile(m.Path)
		s.bins[m.Path] = b
	}
	if b != nil {
		if loc, ok := b.Resolve(m.FileOffset(pc)); ok {
			return loc.Function
		}
	}
	return fmt.Sprintf("%s+%#x", m.Path, m.FileOffset(pc))
}

// unwindStopped samples a running process with ptrace and unwinds it.
func unwindStopped(t *testing.T, pid int) (Result, []string, stoppedSample) {
	t.Helper()
	smp := sampleWithPtrace(t, pid, 16<<10)
	proc := NewProcess(smp.maps, NewCache().Mapping)
	res := Unwind(proc, smp.regs, smp.stack, Options{})
	sym := &symbolizer{maps: smp.maps, bins: map[string]*symbolize.Binary{}}
	var names []string
	for i, pc := range res.PCs {
		// Return addresses are named by their call instruction: after a
		// call to a noreturn function they point past the caller's end.
		if i > 0 {
			pc--
		}
		names = append(names, sym.name(pc))
	}
	t.Logf("unwound %d frames (%s) from %d stack bytes: %s", len(res.PCs), res.Reason, len(smp.stack.Data), strings.Join(names, " <- "))
	if !res.Complete() {
		t.Fatalf("walk stopped early: %s at %#x", res.Reason, res.StopPC)
	}
	return res, names, smp
}

// Signal frames: the walk crosses libc's __restore_rt (CIE augmentation 'S')
// back into the interrupted function, using the registers the kernel saved
// in the ucontext on the stack.
func TestUnwindThroughSignalFrame(t *testing.T) {
	cmd := startChain(t, "sig.c", "-O2", "-fomit-frame-pointer")
	_, names, _ := unwindStopped(t, cmd.Process.Pid)
	if err := inOrder(names, []string{"sig_leaf", "sig_mid", "on_alarm", "interrupted_loop", "main", "_start"}); err != nil {
		t.Fatal(err)
	}
	// __restore_rt is a local symbol of libc (not in .dynsym): the frame
	// between the handler and the interrupted function is libc's.
	if i := indexOf(names, "on_alarm"); names[i+1] == "interrupted_loop" {
		t.Errorf("no trampoline frame between the handler and the interrupted code: %v", names)
	}
}

// .debug_frame only (no .eh_frame for the program's own code).
func TestUnwindDebugFrameOnly(t *testing.T) {
	cmd := startChain(t, "chain.c", "-O2", "-fomit-frame-pointer", "-g", "-fno-asynchronous-unwind-tables", "-fno-unwind-tables")
	// Prove the premise: the program's functions are described only in
	// .debug_frame.
	tab, err := LoadFile(cmd.Path)
	if err != nil {
		t.Fatal(err)
	}
	ef, err := elf.Open(cmd.Path)
	if err != nil {
		t.Fatal(err)
	}
	syms, _ := ef.Symbols()
	ef.Close()
	for _, s := range syms {
		if s.Name == "chain_c" {
			if tab.debug == nil || (tab.hdr != nil && tab.findHdr(s.Value) != nil) {
				t.Fatal("chain_c has .eh_frame CFI; the test needs .debug_frame only")
			}
		}
	}
	_, names, _ := unwindStopped(t, cmd.Process.Pid)
	if err := inOrder(names, []string{"chain_leaf", "chain_c", "chain_cmp", "chain_b", "chain_a", "main", "_start"}); err != nil {
		t.Fatal(err)
	}
}

func TestUnwindStoppedProcess(t *testing.T) {
	cmd := startChain(t, "chain.c", "-O2", "-fomit-frame-pointer", "-g0")
	res, names, smp := unwindStopped(t, cmd.Process.Pid)
	// The binary's own frames in order, with libc's qsort frames between
	// chain_cmp and chain_b, then main and libc's start-up frames.
	want := []string{"chain_leaf", "chain_c", "chain_cmp", "chain_b", "chain_a", "main"}
	if err := inOrder(names, want); err != nil {
		t.Fatal(err)
	}
	iCmp, iB := indexOf(names, "chain_cmp"), indexOf(names, "chain_b")
	libcBetween := 0
	for _, pc := range res.PCs[iCmp+1 : iB] {
		if m, ok := symbolize.Find(smp.maps, pc); ok && strings.Contains(m.Path, "libc.so") {
			libcBetween++
		}
	}
	if libcBetween == 0 {
		t.Errorf("no libc (qsort) frames between chain_cmp and chain_b: %v", names)
	}
	// After main: libc start-up (__libc_start_call_main, __libc_start_main)
	// and the binary's _start, whose CFI marks the return address undefined.
	after := names[indexOf(names, "main")+1:]
	if len(after) < 2 {
		t.Fatalf("nothing unwound past main: %v", names)
	}
	if m, ok := symbolize.Find(smp.maps, res.PCs[indexOf(names, "main")+1]); !ok || !strings.Contains(m.Path, "libc.so") {
		t.Errorf("main's caller is not in libc: %v", after)
	}
	if names[len(names)-1] != "_start" {
		t.Errorf("outermost frame is %q, want _start", names[len(names)-1])
	}

	// Incomplete walks stop with the right reason, and are counted.
	var counts Counts
	proc := NewProcess(smp.maps, NewCache().Mapping)
	short := Unwind(proc, smp.regs, Stack{Base: smp.stack.Base, Data: smp.stack.Data[:64]}, Options{})
	deep := Unwind(proc, smp.regs, smp.stack, Options{MaxDepth: 3})
	none := Unwind(NewProcess(nil, NewCache().Mapping), smp.regs, smp.stack, Options{})
	for _, r := range []Result{res, short, deep, none} {
		counts.Add(r)
	}
	if short.Reason != ReasonOutsideStack || deep.Reason != ReasonDepth || len(deep.PCs) != 3 || none.Reason != ReasonNoModule {
		t.Errorf("stop reasons: 64-byte stack %s, depth 3 %s (%d frames), no modules %s", short.Reason, deep.Reason, len(deep.PCs), none.Reason)
	}
	if got := counts.Map(); got["end"] != 1 || got["outside_stack"] != 1 || got["depth"] != 1 || got["no_module"] != 1 || counts.Total() != 4 {
		t.Errorf("counts: %v", got)
	}

	// gdb, attached independently, must see the same return addresses.
	gdb := testenv.RequireTool(t, "gdb")
	out, err := exec.Command(gdb, "-batch", "-nx", "-p", strconv.Itoa(cmd.Process.Pid),
		"-ex", "set backtrace past-main on", "-ex", "set backtrace past-entry on", "-ex", "bt").CombinedOutput()
	if err != nil {
		t.Fatalf("gdb: %v\n%s", err, out)
	}
	gdbPCs := gdbReturnAddresses(out)
	if len(gdbPCs) < 6 {
		t.Fatalf("gdb backtrace too short:\n%s", out)
	}
	// Frame 0 moved on (the leaf spins between the two stops); every return
	// address must be the same.
	ours := res.PCs[1:]
	for i := 0; i < len(gdbPCs) && i < len(ours); i++ {
		if gdbPCs[i] != ours[i] {
			t.Errorf("frame %d: gdb %#x, unwind %#x (%s)\ngdb:\n%s", i+1, gdbPCs[i], ours[i], names[i+1], out)
		}
	}
	if len(ours) < len(gdbPCs) {
		t.Errorf("unwind found %d return addresses, gdb %d:\n%s", len(ours), len(gdbPCs), out)
	}
}

var gdbFrame = regexp.MustCompile(`(?m)^#(\d+)\s+(0x[0-9a-f]+ in )?`)

// gdbReturnAddresses lists the PCs gdb prints for frames 1..N. Inlined frames
// have no address of their own (they share their caller's PC) and are skipped.
func gdbReturnAddresses(out []byte) []uint64 {
	var pcs []uint64
	for _, m := range gdbFrame.FindAllSubmatch(out, -1) {
		if string(m[1]) == "0" || len(m[2]) == 0 {
			continue
		}
		v, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimPrefix(string(m[2]), "0x"), " in "), 16, 64)
		if err == nil {
			pcs = append(pcs, v)
		}
	}
	return pcs
}

func indexOf(names []string, n string) int {
	for i, s := range names {
		if s == n {
			return i
		}
	}
	return -1
}

// inOrder checks that want appears in names as an ordered subsequence.
func inOrder(names, want []string) error {
	j := 0
	for _, n := range names {
		if j < len(want) && n == want[j] {
			j++
		}
	}
	if j < len(want) {
		return fmt.Errorf("missing %q in order %v: got %v", want[j], want, names)
	}
	return nil
}

// Code with frame pointers but no CFI (the program's own functions here;
// Go binaries in practice): a CFI-only walk stops at the first such frame
// with no_cfi, the frame-pointer fallback (capture --unwind auto) goes on.
func TestUnwindFramePointerFallback(t *testing.T) {
	cmd := startChain(t, "chain.c", "-O2", "-fno-omit-frame-pointer", "-fno-asynchronous-unwind-tables", "-fno-unwind-tables", "-g0")
	smp := sampleWithPtrace(t, cmd.Process.Pid, 16<<10)
	proc := NewProcess(smp.maps, NewCache().Mapping)
	strict := Unwind(proc, smp.regs, smp.stack, Options{})
	if strict.Reason != ReasonNoCFI || len(strict.PCs) != 1 {
		t.Fatalf("CFI-only walk: %s after %d frames, want no_cfi at the leaf", strict.Reason, len(strict.PCs))
	}
	res := Unwind(proc, smp.regs, smp.stack, Options{FramePointerFallback: true})
	sym := &symbolizer{maps: smp.maps, bins: map[string]*symbolize.Binary{}}
	var names []string
	for i, pc := range res.PCs {
		if i > 0 {
			pc--
		}
		names = append(names, sym.name(pc))
	}
	t.Logf("with fallback: %s after %d frames: %s", res.Reason, len(res.PCs), strings.Join(names, " <- "))
	// libc's qsort frames have CFI but no frame pointers: the walk switches
	// rule per frame, CFI through libc and rbp through the program.
	if err := inOrder(names, []string{"chain_leaf", "chain_c", "chain_cmp", "chain_b", "chain_a", "main"}); err != nil {
		t.Fatal(err)
	}
}
