#!/usr/bin/env bash
# make demo: build bpfsnap and the demo workloads, capture a short window of
# them, and show what the archive says. Needs root (it loads eBPF programs).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" != 0 ]; then
	echo "make demo loads eBPF programs: run it as root (sudo make demo)" >&2
	exit 1
fi
./scripts/deps.sh
make -s build
out=demo-out
rm -rf "$out" && mkdir -p "$out"
bin=bin/bpfsnap

echo "== doctor"
$bin doctor | tail -n 3

echo "== capture: a shell pipeline, followed from its first instruction"
$bin capture -d 10s -o "$out/demo.bpfsnap" -- /bin/sh -c 'for i in 1 2 3; do ls / >/dev/null; sleep 0.3; done'

echo "== inspect"
$bin inspect "$out/demo.bpfsnap"
echo "== analyze"
$bin analyze "$out/demo.bpfsnap"
echo
echo "archive: $out/demo.bpfsnap"
