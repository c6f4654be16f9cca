#!/usr/bin/env bash
# make demo: build bpfsnap and the demo workloads, capture a window of them
# (an HTTP service with a slow endpoint under load, also served over HTTPS;
# a gRPC service under load; and a CPU-bound C program), then analyze the
# archive and draw a flame graph. Needs root.
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
port=18088
tlsport=18443
grpcport=18051

echo "== building the demo workloads"
go build -o "$out/shop" ./testdata/demo/shop
# The gRPC service is a module of its own (grpc-go from the module proxy).
(cd testdata/grpc && GOFLAGS=-mod=mod go build -o "../../$out/grpc-server" ./server && GOFLAGS=-mod=mod go build -o "../../$out/grpc-client" ./client)
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$out/key.pem" -out "$out/cert.pem" \
	-days 1 -subj /CN=bpfsnap-demo -addext subjectAltName=IP:127.0.0.1 2>/dev/null
gcc -O1 -fno-omit-frame-pointer -o "$out/cpuburn" testdata/demo/cpuburn.c
gcc -O2 -fno-omit-frame-pointer -o "$out/leaky" testdata/demo/leaky.c

echo "== doctor"
$bin doctor | tail -n 1

"$out/shop" -listen 127.0.0.1:$port -tls-listen 127.0.0.1:$tlsport -cert "$out/cert.pem" -key "$out/key.pem" &
shop=$!
"$out/grpc-server" -listen 127.0.0.1:$grpcport &
grpc=$!
trap 'kill $shop $grpc 2>/dev/null || true' EXIT
for _ in $(seq 50); do curl -s -o /dev/null "http://127.0.0.1:$port/api/products" && break; sleep 0.1; done

echo "== capture: 10 s of the whole node (cpu + http) while the shop (HTTP and HTTPS) and the gRPC service are under load"
"$out/shop" -load "http://127.0.0.1:$port" -d 9s -c 3 &
load=$!
"$out/shop" -load "https://127.0.0.1:$tlsport" -d 9s -c 2 &
tlsload=$!
"$out/grpc-client" -addr 127.0.0.1:$grpcport -load 9s -conns 2 &
grpcload=$!
"$out/cpuburn" 3000 >/dev/null &
$bin capture -d 10s -o "$out/demo.bpfsnap"
wait $load $tlsload $grpcload

echo "== capture: allocations of a leaking program (attached by pid before it starts allocating)"
LEAKY_WAIT_FILE="$out/go" "$out/leaky" 200000 50 &
leaky=$!
(sleep 2; touch "$out/go") &
$bin capture -p mem --pid $leaky -d 6s -o "$out/leak.bpfsnap"
wait $leaky

echo "== analyze"
$bin analyze "$out/demo.bpfsnap" | head -n 40
$bin analyze "$out/leak.bpfsnap" | tail -n 8
$bin flamegraph "$out/demo.bpfsnap" -o "$out/cpu.svg"
$bin report "$out/demo.bpfsnap" "$out/leak.bpfsnap" -o "$out/report.html"
echo
echo "archives:    $out/demo.bpfsnap $out/leak.bpfsnap"
echo "flame graph: $out/cpu.svg"
echo "report:      $out/report.html (open it in a browser)"
