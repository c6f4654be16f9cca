#!/usr/bin/env bash
# Installs the packages bpfsnap's build, tests, demo and benchmarks use, on
# Debian/Ubuntu (`make test`, `make demo` and .ci/run call it first).
# Idempotent; does nothing that is already done. Not as root, it names what
# is missing and goes on: the tests that need it skip (or fail under
# BPFSNAP_REQUIRE_BPF=1, as CI runs them).
set -euo pipefail
cd "$(dirname "$0")/.."
# Build: make, gcc (test workloads), clang/llvm/libbpf-dev (make generate).
# Tests: g++, binutils (addr2line, objdump, readelf), gdb, python3, procps
# (pkill, sysctl), openjdk-17-jdk-headless (java and javac: the JIT and Java HTTP tests), chromium (report tests), runc, nginx-light, wrk,
# linux-perf and bpftrace (peers), zip/unzip, jq, libjemalloc2 (the
# jemalloc leak test), busybox-static (the kubectl plugin Job's command under busybox sh). Benchmarks: heaptrack.
# git and curl for a clone and the demo (curl also as an HTTP/2 client;
# openssl makes the TLS tests' certificates); ca-certificates for npm.
pkgs=(clang llvm bpftool libbpf-dev linux-perf bpftrace wrk nginx-light runc chromium jq zip unzip make gcc openjdk-17-jdk-headless libjemalloc2 busybox-static
	g++ binutils gdb python3 procps git curl openssl ca-certificates heaptrack)
# DuckDB (npm) needs node and npm. A Node.js from elsewhere (NodeSource
# bundles npm) is kept: Debian's npm package would conflict with it.
command -v node >/dev/null 2>&1 || pkgs+=(nodejs)
command -v npm >/dev/null 2>&1 || pkgs+=(npm)
missing=()
if command -v dpkg-query >/dev/null 2>&1; then
	for p in "${pkgs[@]}"; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
	done
else
	echo "deps: not a Debian/Ubuntu system: install the equivalents of ${pkgs[*]} yourself" >&2
fi
if [ ${#missing[@]} -gt 0 ]; then
	if [ "$(id -u)" != 0 ]; then
		echo "deps: missing ${missing[*]}; run as root to install them (tests that need them skip)" >&2
	else
		export DEBIAN_FRONTEND=noninteractive
		apt-get update -qq
		apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
	fi
fi
if [ "$(id -u)" = 0 ] && [ ! -d /sys/kernel/tracing/events ]; then
	mount -t tracefs tracefs /sys/kernel/tracing
fi
# DuckDB (npm) is the independent Parquet reader in tests and the analysis
# peer in benchmarks.
if [ ! -d tools/duckdb/node_modules/@duckdb/node-api ]; then
	if command -v npm >/dev/null 2>&1; then
		(cd tools/duckdb && npm ci --no-audit --no-fund --loglevel=error)
	else
		echo "deps: npm is missing: the DuckDB tests cannot run" >&2
	fi
fi
