// Command h2tls is a Go net/http server for bpfsnap's HTTP/2 and TLS tests
// and benchmarks: HTTP/1.1 and h2c on -listen, and HTTP/1.1 and HTTP/2
// (ALPN) over TLS on -tls-listen.
//
//	/fast     answers at once
//	/slow/ID  answers after 8 ms
//	/fail     503
//	anything else: 404, except "/", which says hello
package main

import (
	"flag"
	"log"
	"net/http"
	"time"
)

func main() {
	listen := flag.String("listen", "", "plaintext address (HTTP/1.1 and h2c)")
	tlsListen := flag.String("tls-listen", "", "TLS address (HTTP/1.1 and HTTP/2)")
	cert := flag.String("cert", "", "TLS certificate (PEM)")
	key := flag.String("key", "", "TLS key (PEM)")
	flag.Parse()
	mux := http.NewServeMux()
	mux.HandleFunc("/fast", func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok")) })
	mux.HandleFunc("/slow/", func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(8 * time.Millisecond)
		w.Write([]byte("slow"))
	})
	mux.HandleFunc("/fail", func(w http.ResponseWriter, r *http.Request) { http.Error(w, "boom", 503) })
	mux.HandleFunc("/{$}", func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("hello from go\n")) })
	p := new(http.Protocols)
	p.SetHTTP1(true)
	p.SetUnencryptedHTTP2(true)
	p.SetHTTP2(true)
	if *tlsListen != "" {
		go func() {
			log.Fatal((&http.Server{Addr: *tlsListen, Handler: mux, Protocols: p}).ListenAndServeTLS(*cert, *key))
		}()
	}
	log.Fatal((&http.Server{Addr: *listen, Handler: mux, Protocols: p}).ListenAndServe())
}
