#!/usr/bin/env bash
# make demo: build bpfsnap and the demo workloads, then walk through what
# bpfsnap does on one node, about two minutes in all. Needs root.
#
#   the shop: an HTTP service (slow checkout, CPU-heavy search, orders that
#   wait for the disk), also served over HTTPS (HTTP/2 over TLS), a replica
#   of it, a gRPC service, a CPU-bound C program, a Node.js program (JIT
#   frames named from its perf map), and a leaking C program.
#
#   1. a flight recorder on the shop, waiting for checkout's p99 to pass 100 ms
#   2. "before": the whole node, CPU + HTTP(S)/gRPC + off-CPU, 10 s
#   3. the bad deploy (release v2: slower checkout, hotter search, a cache
#      that only grows), then "after": each replica captured alone (two
#      archives: a fleet; the shop's memory growth too), while the
#      recorder's trigger fires
#   4. a leaking program's allocations
#   5. analyze, diff, flame graphs, the reports, and the archives as one
#      Parquet dataset queried with DuckDB
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" != 0 ]; then
	echo "make demo loads eBPF programs: run it as root (sudo make demo)" >&2
	exit 1
fi
./scripts/deps.sh
make -s build
out=demo-out
rm -rf "$out" && mkdir -p "$out/fleet" "$out/ring"
bin=bin/bpfsnap
port=18088
replicaport=18089
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
"$out/shop" -listen 127.0.0.1:$replicaport &
replica=$!
"$out/grpc-server" -listen 127.0.0.1:$grpcport &
grpc=$!
recorder=
trap 'kill $shop $replica $grpc $recorder 2>/dev/null || true' EXIT
for p in $port $replicaport; do
	for _ in $(seq 50); do curl -s -o /dev/null "http://127.0.0.1:$p/api/products" && break; sleep 0.1; done
done

# load SECONDS: every workload under load at once, in the background;
# their pids in loads.
loads=()
load() {
	"$out/shop" -load "http://127.0.0.1:$port" -d "$1s" -c 3 >/dev/null &
	loads+=($!)
	"$out/shop" -load "https://127.0.0.1:$tlsport" -d "$1s" -c 2 >/dev/null &
	loads+=($!)
	"$out/shop" -load "http://127.0.0.1:$replicaport" -d "$1s" -c 2 >/dev/null &
	loads+=($!)
	"$out/grpc-client" -addr 127.0.0.1:$grpcport -load "$1s" -conns 2 >/dev/null &
	loads+=($!)
	"$out/cpuburn" 2500 >/dev/null &
	loads+=($!)
}
# A Node.js program with a hot function: node writes /tmp/perf-PID.map
# (--perf-basic-prof) and its log file in its working directory.
mkdir -p "$out/node"
cat >"$out/node/hot.js" <<'JS'
function hotLoop(n) { let s = 0; for (let i = 0; i < n; i++) s = (s * 31 + i) % 1000003; return s; }
const end = Date.now() + Number(process.argv[2]) * 1000;
while (Date.now() < end) hotLoop(200000);
JS

echo "== 1. flight recorder: the shop's requests, the last 20 s kept, dumped when checkout's p99 passes 100 ms"
$bin capture --ring 20s -p http --pid $shop -o "$out/ring/shop.bpfsnap" \
	--trigger 'http.p99>100ms,route=/api/checkout,cooldown=1m' >"$out/ring/recorder.log" 2>&1 &
recorder=$!
sleep 2

# The load starts once the capture runs: connections opened before a window
# carry HTTP/2 header state bpfsnap never saw (their requests are counted
# under [h2 name unknown]).
echo "== 2. before: 12 s of the whole node (cpu + http + offcpu) under load"
$bin capture -p cpu,http,offcpu -d 12s -o "$out/before.bpfsnap" &
before=$!
sleep 2
load 9
(cd "$out/node" && exec node --perf-basic-prof hot.js 9) &
node_pid=$!
loads+=($node_pid)
wait $before "${loads[@]}"
loads=()
rm -f "/tmp/perf-$node_pid.map" # read into the archive; node leaves it behind

echo "== 3. the bad deploy: release v2 on the shop; after: each replica captured alone, 10 s (the shop with -p growth too)"
curl -s -X POST "http://127.0.0.1:$port/admin/release-v2"
$bin capture -p cpu,http,growth --pid $shop -d 10s -o "$out/fleet/shop.bpfsnap" &
a=$!
$bin capture -p cpu,http --pid $replica -d 10s -o "$out/fleet/replica.bpfsnap" &
b=$!
sleep 2
load 7
wait $a $b "${loads[@]}"
sleep 3
echo "-- the flight recorder's dumps (its trigger, then an on-demand one):"
$bin trigger --output "$out/ring/shop.bpfsnap" || true
kill -INT $recorder && wait $recorder || true
grep -E '^(dumped|wrote)' "$out/ring/recorder.log" || true

echo "== 4. allocations of a leaking program (attached by pid before it starts allocating)"
LEAKY_WAIT_FILE="$out/go" "$out/leaky" 200000 50 &
leaky=$!
(sleep 2; touch "$out/go") &
$bin capture -p mem --pid $leaky -d 6s -o "$out/leak.bpfsnap"
wait $leaky

echo "== 5. analyze"
$bin analyze "$out/before.bpfsnap" | sed -n '1,70p'
$bin analyze "$out/leak.bpfsnap" | tail -n 8
echo "-- the shop's memory growth after the deploy"
$bin analyze "$out/fleet/shop.bpfsnap" | sed -n '/^Memory growth/,/^$/p'
echo "-- diff: the shop before and after the deploy"
$bin diff "$out/before.bpfsnap" "$out/fleet/shop.bpfsnap" --base-pid $shop --new-pid $shop | grep -v '^warning' | sed -n '1,30p'
$bin flamegraph "$out/before.bpfsnap" -o "$out/cpu.svg"
$bin flamegraph "$out/before.bpfsnap" --off-cpu -o "$out/offcpu.svg"
$bin flamegraph --diff "$out/before.bpfsnap" "$out/fleet/shop.bpfsnap" --pid $shop -o "$out/cpu-diff.svg"
$bin flamegraph "$out/fleet/shop.bpfsnap" --growth -o "$out/growth.svg"
$bin report "$out/before.bpfsnap" "$out/leak.bpfsnap" -o "$out/report.html"
$bin report "$out/fleet/" --baseline "$out/before.bpfsnap" -o "$out/fleet.html"
echo "-- the archives as one Parquet dataset; DuckDB: p99 per route and node"
$bin export --format parquet-dataset -o "$out/dataset" "$out/before.bpfsnap" "$out/fleet/"*.bpfsnap
node tools/duckdb/query.mjs "
  SELECT host, capture, role, method, path, count(*) AS n,
         round(quantile_disc((response_end_ns - request_ns) / 1e6, 0.99), 1) AS p99_ms
  FROM read_parquet('$out/dataset/table=http_requests/**/*.parquet', hive_partitioning = true, union_by_name = true)
  WHERE role = 'server' AND response_end_ns > 0 AND path LIKE '/api/checkout%'
  GROUP BY ALL ORDER BY p99_ms DESC" | jq -c '.[]'
echo
echo "archives:     $out/before.bpfsnap $out/fleet/*.bpfsnap $out/ring/*.bpfsnap $out/leak.bpfsnap"
echo "flame graphs: $out/cpu.svg $out/offcpu.svg $out/cpu-diff.svg $out/growth.svg"
echo "reports:      $out/report.html (the node and the leak), $out/fleet.html (the fleet after the deploy, against before)"
echo "dataset:      $out/dataset/ (Hive-partitioned Parquet: docs/cookbook.md)"
