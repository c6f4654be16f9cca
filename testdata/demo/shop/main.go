// shop is bpfsnap's demo workload: a small HTTP service with one slow
// endpoint and one CPU-heavy endpoint, plus a load generator for it.
//
//	shop -listen 127.0.0.1:8088            serve
//	shop -listen ... -tls-listen 127.0.0.1:8443 -cert C -key K   also serve HTTPS (HTTP/1.1 and HTTP/2)
//	shop -load http://127.0.0.1:8088 -d 10s  generate load (an https:// URL: HTTP/2 over TLS, the demo's self-signed certificate accepted)
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

func serve(addr, tlsAddr, cert, key string) {
	mux := http.NewServeMux()
	mux.HandleFunc("/api/products", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, `[{"id":1},{"id":2}]`)
	})
	mux.HandleFunc("/api/products/", func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(time.Millisecond)
		fmt.Fprint(w, `{"id":1}`)
	})
	// The incident: checkout waits on a slow downstream.
	mux.HandleFunc("/api/checkout", func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(time.Duration(20+rand.Intn(40)) * time.Millisecond)
		if rand.Intn(50) == 0 {
			http.Error(w, "payment gateway timeout", http.StatusGatewayTimeout)
			return
		}
		fmt.Fprint(w, `{"ok":true}`)
	})
	// Search burns CPU: the flame graph's hot path.
	mux.HandleFunc("/api/search", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, `{"score":%d}`, rankResults(r.URL.Query().Get("q")))
	})
	if tlsAddr != "" {
		go func() { log.Fatal(http.ListenAndServeTLS(tlsAddr, cert, key, mux)) }()
	}
	log.Fatal(http.ListenAndServe(addr, mux))
}

//go:noinline
func rankResults(q string) int {
	sum := sha256.Sum256([]byte(q))
	for i := 0; i < 3000; i++ {
		sum = sha256.Sum256(sum[:])
	}
	return int(sum[0])
}

func load(base string, d time.Duration, workers int) {
	paths := []string{"/api/products", "/api/products/42", "/api/products/7", "/api/checkout", "/api/search?q=shoes", "/api/search?q=socks"}
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
