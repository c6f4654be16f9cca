// goleak is a Go service that leaks: four goroutines each keep MB/4
// buffers of 1 MiB in a global slice, one every MS milliseconds (default
// 200), then it waits a moment and exits. It listens on a TCP port as a service does, which links
// libc through cgo's resolver: the Go runtime's heap grows through its own
// mmaps while libc sees a few hundred bytes (the loader's thread-local
// storage), and each new thread's first libc call is a free, inside which
// glibc creates the thread's arena.
//
//	goleak MB [MS]
package main

import (
	"fmt"
	"net"
	"os"
	"strconv"
	"time"
)

// kept is what the service never gives back.
var kept [][]byte

func leak(n int) {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i) // touch every page
	}
	kept = append(kept, b)
}

func main() {
	mb, err := strconv.Atoi(os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, "usage: goleak MB [MS]")
		os.Exit(2)
	}
	every := 200 * time.Millisecond
	if len(os.Args) > 2 {
		ms, _ := strconv.Atoi(os.Args[2])
		every = time.Duration(ms) * time.Millisecond
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	defer l.Close()
	done := make(chan bool)
	for w := 0; w < 4; w++ {
		go func() {
			for i := 0; i < mb/4; i++ {
				leak(1 << 20)
				time.Sleep(every)
			}
			done <- true
		}()
	}
	for w := 0; w < 4; w++ {
		<-done
	}
	time.Sleep(300 * time.Millisecond)
	fmt.Println(len(kept), "MiB kept")
}
