// shop is bpfsnap's demo workload: a small HTTP service with one slow
// endpoint and one CPU-heavy endpoint, plus a load generator for it.
//
//	shop -listen 127.0.0.1:8088            serve
//	shop -listen ... -tls-listen 127.0.0.1:8443 -cert C -key K   also serve HTTPS (HTTP/1.1 and HTTP/2)
//	shop -load http://127.0.0.1:8088 -d 10s  generate load (an https:// URL: HTTP/2 over TLS, the demo's self-signed certificate accepted)
//	curl -X POST http://127.0.0.1:8088/admin/release-v2   the bad deploy: checkout slower, search hotter, a cache that only grows
//
// Orders are appended to a file in $TMPDIR and fsync'ed: the off-CPU
// section's disk wait.
package main

import (
	"crypto/sha256"
	"crypto/tls"
	"flag"
	"fmt"
	"io"
	"log"
	"math/rand"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

func main() {
	listen := flag.String("listen", "", "serve on this address")
	target := flag.String("load", "", "send load to this base URL")
	d := flag.Duration("d", 10*time.Second, "load duration")
	workers := flag.Int("c", 4, "concurrent load workers")
	tlsListen := flag.String("tls-listen", "", "also serve HTTPS on this address")
	cert := flag.String("cert", "", "TLS certificate (PEM)")
	key := flag.String("key", "", "TLS key (PEM)")
	flag.Parse()
	switch {
	case *listen != "":
		serve(*listen, *tlsListen, *cert, *key)
	case *target != "":
		load(*target, *d, *workers)
	default:
		flag.Usage()
		os.Exit(2)
	}
}

// releaseV2 is the demo's regression, switched on at run time so the
// before and after captures see the same process.
var releaseV2 atomic.Bool

func serve(addr, tlsAddr, cert, key string) {
	orders, err := os.CreateTemp("", "shop-orders-*.log")
	if err != nil {
		log.Fatal(err)
	}
	defer os.Remove(orders.Name())
	var ordersMu sync.Mutex
	mux := http.NewServeMux()
	mux.HandleFunc("/admin/release-v2", func(w http.ResponseWriter, r *http.Request) {
		releaseV2.Store(true)
		fmt.Fprintln(w, "release v2 deployed")
	})
	// Orders are durable: each waits for the disk (fsync) under a lock.
	mux.HandleFunc("/api/orders", func(w http.ResponseWriter, r *http.Request) {
		ordersMu.Lock()
		fmt.Fprintf(orders, "order %d\n", rand.Int())
		err := orders.Sync()
		ordersMu.Unlock()
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		fmt.Fprint(w, `{"order":"accepted"}`)
	})
	mux.HandleFunc("/api/products", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, `[{"id":1},{"id":2}]`)
	})
	mux.HandleFunc("/api/products/", func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(time.Millisecond)
		fmt.Fprint(w, `{"id":1}`)
	})
	// The incident: checkout waits on a slow downstream.
	mux.HandleFunc("/api/checkout", func(w http.ResponseWriter, r *http.Request) {
		wait := 20 + rand.Intn(40)
		if releaseV2.Load() {
			wait += 100 // v2 waits for a second payment service
		}
		time.Sleep(time.Duration(wait) * time.Millisecond)
		if rand.Intn(50) == 0 {
			http.Error(w, "payment gateway timeout", http.StatusGatewayTimeout)
			return
		}
		fmt.Fprint(w, `{"ok":true}`)
	})
	// Search burns CPU: the flame graph's hot path. v2 also keeps every
	// result page in a cache that is never evicted: the memory growth.
	mux.HandleFunc("/api/search", func(w http.ResponseWriter, r *http.Request) {
		score := rankResults(r.URL.Query().Get("q"))
		if releaseV2.Load() {
			cacheResults(score)
		}
		fmt.Fprintf(w, `{"score":%d}`, score)
	})
	if tlsAddr != "" {
		go func() { log.Fatal(http.ListenAndServeTLS(tlsAddr, cert, key, mux)) }()
	}
	log.Fatal(http.ListenAndServe(addr, mux))
}

var (
	cacheMu sync.Mutex
	cache   [][]byte
)

//go:noinline
func cacheResults(score int) {
	page := make([]byte, 256<<10)
	for i := range page {
		page[i] = byte(score + i) // touched: resident, not just reserved
	}
	cacheMu.Lock()
	cache = append(cache, page)
	cacheMu.Unlock()
}

//go:noinline
func rankResults(q string) int {
	sum := sha256.Sum256([]byte(q))
	rounds := 3000
	if releaseV2.Load() {
		rounds = 9000 // v2 ranks with a costlier model
	}
	for i := 0; i < rounds; i++ {
		sum = sha256.Sum256(sum[:])
	}
	return int(sum[0])
}

func load(base string, d time.Duration, workers int) {
	paths := []string{"/api/products", "/api/products/42", "/api/products/7", "/api/checkout", "/api/search?q=shoes", "/api/search?q=socks", "/api/orders"}
	// The demo's certificate is self-signed; HTTPS load speaks HTTP/2.
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: workers,
		ForceAttemptHTTP2: true, TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	deadline := time.Now().Add(d)
	var wg sync.WaitGroup
	var mu sync.Mutex
	n := 0
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(seed int64) {
			defer wg.Done()
			rng := rand.New(rand.NewSource(seed))
			for time.Now().Before(deadline) {
				resp, err := client.Get(base + paths[rng.Intn(len(paths))])
				if err != nil {
					time.Sleep(50 * time.Millisecond)
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				mu.Lock()
				n++
				mu.Unlock()
			}
		}(int64(w))
	}
	wg.Wait()
	fmt.Printf("load: %d requests in %s\n", n, d)
}
