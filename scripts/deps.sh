#!/usr/bin/env bash
# Installs the packages bpfsnap's build, tests, demo and benchmarks use.
# Idempotent; does nothing that is already done.
set -euo pipefail
cd "$(dirname "$0")/.."
pkgs=(clang llvm bpftool libbpf-dev linux-perf bpftrace wrk nginx-light runc chromium jq zip unzip make gcc curl openssl nodejs)
missing=()
for p in "${pkgs[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
	if [ "$(id -u)" != 0 ]; then
		echo "deps: missing ${missing[*]}; run as root to install" >&2
		exit 1
	fi
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
if [ "$(id -u)" = 0 ] && [ ! -d /sys/kernel/tracing/events ]; then
	mount -t tracefs tracefs /sys/kernel/tracing
fi
# DuckDB (npm) is the independent Parquet reader in tests and the analysis
# peer in benchmarks.
if [ ! -d tools/duckdb/node_modules/@duckdb/node-api ]; then
	(cd tools/duckdb && npm ci --no-audit --no-fund --loglevel=error)
fi
