#!/usr/bin/env bash
# make bench: the benchmark harness (bench/), which writes docs/benchmarks.md.
# It installs or checks its peers first (apt: perf, bpftrace, wrk, nginx,
# heaptrack, node; npm: DuckDB), so it runs on a fresh Debian/Ubuntu machine,
# and prints the total time: the whole run must stay under 30 minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" != 0 ]; then
	echo "make bench loads eBPF programs: run it as root" >&2
	exit 1
fi
start=$SECONDS
./scripts/deps.sh
# Peers deps.sh does not install: heaptrack (the allocation-tracing peer)
# and node/npm (DuckDB's runner). Install what apt has; a missing peer
# makes its row say so instead of stopping the run.
extra=()
command -v heaptrack >/dev/null || extra+=(heaptrack)
command -v node >/dev/null || extra+=(nodejs)
command -v npm >/dev/null || extra+=(npm)
if [ ${#extra[@]} -gt 0 ]; then
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq || true
	for p in "${extra[@]}"; do
		if apt-cache show "$p" >/dev/null 2>&1; then
			apt-get install -y -qq --no-install-recommends "$p" >/dev/null || echo "bench: could not install $p" >&2
		else
			echo "bench: $p is not in apt here; its rows will say so" >&2
		fi
	done
fi
if [ ! -d tools/duckdb/node_modules/@duckdb/node-api ] && command -v npm >/dev/null; then
	(cd tools/duckdb && npm ci --no-audit --no-fund --loglevel=error)
fi
for t in perf bpftrace wrk nginx gcc node; do
	command -v "$t" >/dev/null || echo "bench: warning: $t is missing; rows that need it will fail" >&2
done
go run ./bench "$@"
echo "bench: make bench took $(( (SECONDS - start) / 60 ))m$(( (SECONDS - start) % 60 ))s (budget: 30 minutes)" >&2
