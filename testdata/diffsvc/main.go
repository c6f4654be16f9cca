// diffsvc is the workload of bpfsnap's comparison tests: a small HTTP
// service run twice, once as is and once with -regress, which makes one
// route slower (/api/orders waits 300 ms longer) and one function hotter
// (scoreItems does three times the work); nothing else changes. Each
// CPU-bound handler does its work in a function of its own, in that
// function's body, so the work is the function's self time in a profile.
//
//	diffsvc -listen 127.0.0.1:8089 [-regress]
package main

import (
	"flag"
	"fmt"
	"log"
	"net/http"
	"time"
)

// Work per request, in loop iterations, so that on this VM the three
// steady handlers cost about 1.2 ms of CPU each and scoreItems 0.15 ms
// (1.75, 1.2, 4.9 and 1.15 ns per iteration). Under -regress scoreItems'
// extra work is about 7% of the service's CPU: its share of the samples
// nearly triples, while the others' shares, about a quarter each, drop by
// 7% of themselves (shares of a larger whole), less than sampling noise.
const (
	catalogWork = 700_000
	searchWork  = 1_000_000
	reportWork  = 250_000
	scoreWork   = 130_000
)

func main() {
	listen := flag.String("listen", "127.0.0.1:8089", "serve on this address")
	regress := flag.Bool("regress", false, "the bad deploy: /api/orders 300 ms slower, scoreItems 3x hotter")
	flag.Parse()
	ordersWait, scoreN := 5*time.Millisecond, scoreWork
	if *regress {
		ordersWait, scoreN = 305*time.Millisecond, 3*scoreWork
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/api/orders", func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(ordersWait) // a downstream call
		fmt.Fprint(w, `{"orders":[]}`)
	})
	mux.HandleFunc("/api/catalog", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, `{"catalog":%d}`, renderCatalog(catalogWork))
	})
	mux.HandleFunc("/api/search", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, `{"hits":%d}`, searchIndex(searchWork))
	})
	mux.HandleFunc("/api/report", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, `{"report":%d}`, buildReport(reportWork))
	})
	mux.HandleFunc("/api/score", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, `{"score":%d}`, scoreItems(scoreN))
	})
	log.Fatal(http.ListenAndServe(*listen, mux))
}

// renderCatalog: a xorshift generator.
//
//go:noinline
func renderCatalog(n int) uint64 {
	x := uint64(88172645463325252)
	for i := 0; i < n; i++ {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
	}
	return x
}

// searchIndex: a linear congruential generator and a parity fold. Not
// bits.OnesCount32: Go checks for POPCNT at run time and otherwise calls
// a frameless leaf, which a frame-pointer walk passes over, so the
// function's samples would go to its caller on such a CPU.
//
//go:noinline
func searchIndex(n int) int {
	x, hits := uint32(12345), 0
	for i := 0; i < n; i++ {
		x = x*1664525 + 1013904223
		p := x ^ x>>16
		p ^= p >> 8
		hits += int((p ^ p>>4) & 1)
	}
	return hits
}

// buildReport: a chain of divisions.
//
//go:noinline
func buildReport(n int) uint64 {
	acc := uint64(1) << 62
	for i := 1; i <= n; i++ {
		acc = acc/uint64(i%7+1) + uint64(i)*2654435761
	}
	return acc
}

// scoreItems: FNV-1a over the loop counter.
//
//go:noinline
func scoreItems(n int) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < n; i++ {
		h ^= uint64(i & 0xff)
		h *= 1099511628211
	}
	return h
}
