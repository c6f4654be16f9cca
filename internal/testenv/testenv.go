// Package testenv decides whether tests that need a real kernel may run.
// Tests that need root and BPF call RequireBPF: it skips with a clear reason
// on machines without them, and fails instead when BPFSNAP_REQUIRE_BPF=1
// (CI sets it), so a skipped kernel test can never pass as green in CI.
package testenv

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// Strict reports whether skips of kernel tests are failures.
func Strict() bool { return os.Getenv("BPFSNAP_REQUIRE_BPF") == "1" }

// Emulated reports whether the test runs in a CPU emulator (qemu without
// KVM, as make test-kernels does where there is no /dev/kvm; it sets
// BPFSNAP_EMULATED=1). Everything runs ~10x slower there and timing jitter
// is in milliseconds: tests keep their counting and attribution checks and
// log, rather than assert, comparisons of latencies with tight tolerances.
func Emulated() bool { return os.Getenv("BPFSNAP_EMULATED") == "1" }

// Skip skips the test with reason, or fails it under BPFSNAP_REQUIRE_BPF=1.
func Skip(t testing.TB, reason string) {
	t.Helper()
	if Strict() {
		t.Fatalf("BPFSNAP_REQUIRE_BPF=1 but: %s", reason)
	}
	t.Skip(reason)
}

// RequireBPF skips unless the test runs as root on a kernel with BTF.
func RequireBPF(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		Skip(t, "needs root to load eBPF programs")
	}
	if _, err := os.Stat("/sys/kernel/btf/vmlinux"); err != nil {
		Skip(t, "needs a kernel with BTF (/sys/kernel/btf/vmlinux)")
	}
}

// RequireTool skips unless name is on PATH (e.g. a compiler, perf, nginx).
func RequireTool(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		Skip(t, name+" is not installed")
	}
	return p
}

// SourceLine returns the 1-based number of the first line of file src
// that holds marker: tests name source lines by a comment on them, so the
// expectations survive edits above.
func SourceLine(t testing.TB, src, marker string) int {
	t.Helper()
	text, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	for i, l := range strings.Split(string(text), "\n") {
		if strings.Contains(l, marker) {
			return i + 1
		}
	}
	t.Fatalf("%q not in %s", marker, src)
	return 0
}
