// Command server serves the echo gRPC service (h2c) on -listen.
package main

import (
	"flag"
	"log"
	"net"

	"google.golang.org/grpc"

	"bpfsnap.test/grpc/echo"
)

func main() {
	addr := flag.String("listen", "127.0.0.1:50051", "address")
	flag.Parse()
	l, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatal(err)
	}
	s := grpc.NewServer()
	s.RegisterService(&echo.Desc, nil)
	log.Fatal(s.Serve(l))
}
