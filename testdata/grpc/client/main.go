// Command client calls the echo gRPC service and measures each call the
// way bpfsnap does: from its request's write to the kernel's receive
// timestamps (SO_TIMESTAMPNS) of the reads that brought the response's
// first and last frames, so its own wake-up delays do not count. Calls are
// made one at a time per connection. It prints one JSON line per call.
//
//	client -addr A -calls N            N calls of each method, in turn
//	client ... -warm K -wait           K calls of each first, then "ready" and wait for a line on stdin
//	client ... -load 9s -conns 4       calls for 9 s on 4 connections, no output (demo load)
//
// The first call of a connection (which dials) is to Hello, not measured.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"net"
	"os"
	"sync"
	"syscall"
	"time"
	"unsafe"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"bpfsnap.test/grpc/echo"
)

// timedConn reads with recvmsg and keeps the receive timestamps of the
// reads that carried response frames (HEADERS, DATA, CONTINUATION), found
// by following the frame headers of the bytes read.
type timedConn struct {
	*net.TCPConn
	raw syscall.RawConn
	oob []byte

	mu          sync.Mutex
	since       time.Time
	sent        time.Time // the first write since the mark
	first, last time.Time

	// The frame being read: its header's bytes so far, then the payload
	// bytes left.
	hdr  [9]byte
	hn   int
	left int
	typ  byte
}

func dial(ctx context.Context, addr string) (net.Conn, error) {
	c, err := (&net.Dialer{}).DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	tc := c.(*net.TCPConn)
	raw, err := tc.SyscallConn()
	if err != nil {
		return nil, err
	}
	var serr error
	raw.Control(func(fd uintptr) { serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_TIMESTAMPNS, 1) })
	if serr != nil {
		return nil, serr
	}
	t := &timedConn{TCPConn: tc, raw: raw, oob: make([]byte, 256)}
	conns <- t
	return t, nil
}

var conns = make(chan *timedConn, 64)

func (c *timedConn) Read(p []byte) (int, error) {
	var n, oobn int
	var serr error
	err := c.raw.Read(func(fd uintptr) bool {
		n, oobn, _, _, serr = syscall.Recvmsg(int(fd), p, c.oob, 0)
		return serr != syscall.EAGAIN
	})
	if err != nil {
		return 0, err
	}
	if serr != nil {
		return 0, serr
	}
	if n == 0 {
		return 0, net.ErrClosed
	}
	rx := time.Now()
	if msgs, err := syscall.ParseSocketControlMessage(c.oob[:oobn]); err == nil {
		for _, m := range msgs {
			if m.Header.Level == syscall.SOL_SOCKET && m.Header.Type == syscall.SO_TIMESTAMPNS && len(m.Data) >= 16 {
				ts := (*syscall.Timespec)(unsafe.Pointer(&m.Data[0]))
				rx = time.Unix(ts.Sec, ts.Nsec)
			}
		}
	}
	c.mu.Lock()
	if c.frames(p[:n]) && !rx.Before(c.since) {
		if c.first.IsZero() {
			c.first = rx
		}
		c.last = rx
	}
	c.mu.Unlock()
	return n, nil
}

// frames follows the frames in b; it reports whether b holds bytes of a
// HEADERS, DATA or CONTINUATION frame.
func (c *timedConn) frames(b []byte) bool {
	carries := false
	for len(b) > 0 {
		if c.left > 0 {
			k := min(c.left, len(b))
			if c.typ <= 1 || c.typ == 9 {
				carries = true
			}
			c.left -= k
			b = b[k:]
			continue
		}
		k := copy(c.hdr[c.hn:], b)
		c.hn += k
		b = b[k:]
		if c.hn < 9 {
			break
		}
		c.hn = 0
		c.typ = c.hdr[3]
		c.left = int(c.hdr[0])<<16 | int(c.hdr[1])<<8 | int(c.hdr[2])
		if c.typ <= 1 || c.typ == 9 {
			carries = true
		}
	}
	return carries
}

// Write notes the time of the first write after the mark: the request
// leaves then (grpc-go writes from its own goroutine, a wake-up after the
// call begins).
func (c *timedConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	if c.sent.IsZero() {
		c.sent = time.Now()
	}
	c.mu.Unlock()
	return c.TCPConn.Write(p)
}

func (c *timedConn) mark(t time.Time) {
	c.mu.Lock()
	c.since, c.sent, c.first, c.last = t, time.Time{}, time.Time{}, time.Time{}
	c.mu.Unlock()
}

func (c *timedConn) times() (sent, first, last time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.sent, c.first, c.last
}

type result struct {
	Method  string  `json:"method"`
	Code    int     `json:"code"`
	TotalMs float64 `json:"total_ms"`
	TTFBMs  float64 `json:"ttfb_ms"`
}

func call(cc *grpc.ClientConn, tc *timedConn, method string, i int) (result, error) {
	in, out := []byte(fmt.Sprint(i)), []byte{}
	tc.mark(time.Now())
	err := cc.Invoke(context.Background(), method, &in, &out, grpc.ForceCodec(echo.Codec{}))
	start, first, last := tc.times()
	if first.IsZero() || start.IsZero() {
		return result{}, fmt.Errorf("%s: no request write or response frames timed", method)
	}
	ms := func(t time.Time) float64 { return float64(t.Sub(start).Nanoseconds()) / 1e6 }
	return result{Method: method, Code: int(status.Code(err)), TotalMs: ms(last), TTFBMs: ms(first)}, nil
}

func connect(addr string) (*grpc.ClientConn, *timedConn) {
	cc, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(dial))
	if err != nil {
		log.Fatal(err)
	}
	cc.Connect()
	// The first call dials.
	in, out := []byte("hello"), []byte{}
	if err := cc.Invoke(context.Background(), echo.Hello, &in, &out, grpc.ForceCodec(echo.Codec{})); err != nil {
		log.Fatal(err)
	}
	return cc, <-conns
}

func main() {
	addr := flag.String("addr", "127.0.0.1:50051", "server address")
	calls := flag.Int("calls", 100, "calls of each method")
	warm := flag.Int("warm", 0, "calls of each method before -wait")
	wait := flag.Bool("wait", false, `print "ready" and wait for a line on stdin before the measured calls`)
	load := flag.Duration("load", 0, "call for this long, without output (demo load)")
	nconns := flag.Int("conns", 1, "connections (with -load)")
	outPath := flag.String("out", "", "write the calls' figures to this file (default: stdout)")
	flag.Parse()
	if *load > 0 {
		var wg sync.WaitGroup
		for w := 0; w < *nconns; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				cc, tc := connect(*addr)
				defer cc.Close()
				for i, end := 0, time.Now().Add(*load); time.Now().Before(end); i++ {
					call(cc, tc, echo.Methods[i%len(echo.Methods)], i)
				}
			}()
		}
		wg.Wait()
		return
	}
	cc, tc := connect(*addr)
	defer cc.Close()
	for i := 0; i < *warm; i++ {
		for _, m := range echo.Methods {
			if _, err := call(cc, tc, m, i); err != nil {
				log.Fatal(err)
			}
		}
	}
	if *wait {
		fmt.Println("ready")
		bufio.NewReader(os.Stdin).ReadString('\n')
	}
	w := os.Stdout
	if *outPath != "" {
		f, err := os.Create(*outPath)
		if err != nil {
			log.Fatal(err)
		}
		defer f.Close()
		w = f
	}
	enc := json.NewEncoder(w)
	for i := 0; i < *calls; i++ {
		for _, m := range echo.Methods {
			r, err := call(cc, tc, m, i)
			if err != nil {
				log.Fatal(err)
			}
			enc.Encode(r)
		}
	}
}
