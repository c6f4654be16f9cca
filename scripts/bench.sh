#!/usr/bin/env bash
# make bench: the benchmark harness (bench/), which writes docs/benchmarks.md.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" != 0 ]; then
	echo "make bench loads eBPF programs: run it as root" >&2
	exit 1
fi
./scripts/deps.sh
go run ./bench "$@"
