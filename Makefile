# bpfsnap — see README.md. Every target works on a fresh Debian/Ubuntu
# machine after `make deps` (which .ci/run, `make test` and `make demo` call).

# Go from the official tarball is in /usr/local/go (CI machines): found
# even when it is not on PATH (the tests run `go build` themselves too).
export PATH := $(PATH):/usr/local/go/bin
GO        ?= go
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS   := -s -w -X main.version=$(VERSION)
BIN       := bin/bpfsnap
# Packages that must build on every OS (checked by cross-build).
PORTABLE  := ./formats/... ./analyze/... ./report/... ./cmd/bpfsnap/

.PHONY: all build generate generate-check vmlinux test test-short stress test-kernels fuzz lint cross-build demo bench deps tracefs clean

all: build

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/bpfsnap

# Regenerate the committed eBPF objects of every probe set (needs clang,
# llvm-strip, libbpf-dev); each capture/probes/NAME/gen.go has its line.
generate:
	cd capture/probes && $(GO) generate ./...

# Fails when the committed objects do not match their sources.
generate-check: generate
	git diff --exit-code -- capture/probes/ || (echo "capture/probes/ objects are stale: run make generate and commit" >&2; exit 1)

# Refresh capture/probes/include/vmlinux.h from this kernel's BTF (rarely needed: CO-RE
# relocates field offsets at load time).
vmlinux:
	bpftool btf dump file /sys/kernel/btf/vmlinux format c > capture/probes/include/vmlinux.h

# The test suite: unit tests, real-kernel tests (root), fuzz seeds. It
# installs what it needs first (deps: packages as root, DuckDB from npm), so
# a fresh clone passes `make test` alone. Kernel tests skip without root/BTF
# unless BPFSNAP_REQUIRE_BPF=1. Packages run one at a time (-p 1): the
# kernel tests measure CPU shares and latencies, and two of them on this
# 2-core machine at once skew each other. The analysis fuzz target runs
# slowly (each input is a whole archive written and read by every
# renderer), so its new inputs are minimized briefly.
test: deps tracefs
	$(GO) test -p 1 -count=1 -timeout 40m ./...
	$(GO) test -run '^$$' -fuzz FuzzOpenArchive -fuzztime 20s ./formats/
	$(GO) test -run '^$$' -fuzz FuzzAnalyzeArchive -fuzztime 30s -fuzzminimizetime 5x ./formats/
	$(GO) test -run '^$$' -fuzz FuzzOpenBinary -fuzztime 10s ./internal/symbolize/

# The long forms of the reliability suite (docs/reliability.md): a minute
# of fork/exec + sampling + HTTP flood through one-page rings, a 10-minute
# capture of a steady workload whose recorder RSS must stay flat, and 100
# captures of every probe set killed with SIGKILL at random moments
# (TestStressKill9RandomMoments). Needs root; takes ~20 minutes.
stress: tracefs
	BPFSNAP_STRESS=1 $(GO) test -p 1 -count=1 -timeout 40m -run 'Stress' -v ./capture/

# The kernel tests on the kernels users run: Debian's 6.1 and 6.12 cloud
# kernels booted in qemu (KVM, or TCG where there is none), and this
# machine's own kernel; one line per kernel and probe set (docs/kernels.md).
# Needs root; takes ~30 minutes with TCG. Not part of `make test` nor CI:
# run it by hand before a release (docs/kernels.md, "How often").
test-kernels:
	./scripts/test-kernels.sh

test-short:
	$(GO) test -short -count=1 ./...

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

cross-build:
	GOOS=darwin GOARCH=arm64 CGO_ENABLED=0 $(GO) build $(PORTABLE)
	GOOS=windows GOARCH=amd64 CGO_ENABLED=0 $(GO) build $(PORTABLE)
	@if GOOS=darwin $(GO) list -deps $(PORTABLE) | grep -E 'bpfsnap/capture(/|$$)'; then \
		echo "portable packages must not import capture/ or its probe sets" >&2; exit 1; fi

# Mount tracefs if it is missing (tracepoint ids live there).
tracefs:
	@if [ "$$(id -u)" = 0 ] && [ ! -d /sys/kernel/tracing/events ]; then \
		mount -t tracefs tracefs /sys/kernel/tracing || true; fi

# Install everything the build, tests and benchmarks need (Debian/Ubuntu).
deps:
	./scripts/deps.sh

demo: build tracefs
	./scripts/demo.sh

bench: build tracefs
	./scripts/bench.sh

clean:
	rm -rf bin demo-out
