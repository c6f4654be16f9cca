//go:build linux

package testenv

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// TimedGet sends one GET and reads the whole response; it returns the time
// from the kernel's transmit timestamp of the request (SO_TIMESTAMPING, as
// the segment leaves for the device: on loopback, when the server's socket
// gets it; the time just before the write when the kernel gives none) to
// its receive timestamp of the response's first segment (SO_TIMESTAMPNS),
// so the client's figure includes neither its own wake-up delay nor a
// preemption between reading the clock and writing on this busy 2-core
// machine; and whether the connection stays open.
func TimedGet(conn net.Conn, path string) (float64, bool, error) {
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	raw, err := conn.(*net.TCPConn).SyscallConn()
	if err != nil {
		return 0, false, err
	}
	var serr error
	raw.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_TIMESTAMPNS, 1)
		if serr == nil {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_TIMESTAMPING,
				unix.SOF_TIMESTAMPING_TX_SOFTWARE|unix.SOF_TIMESTAMPING_SOFTWARE|unix.SOF_TIMESTAMPING_OPT_TSONLY)
		}
	})
	if serr != nil {
		return 0, false, serr
	}
	req := "GET " + path + " HTTP/1.1\r\nHost: test\r\nUser-Agent: bpfsnap-test\r\n\r\n"
	start := time.Now()
	if _, err := io.WriteString(conn, req); err != nil {
		return 0, false, err
	}
	buf, oob := make([]byte, 64*1024), make([]byte, 256)
	// The transmit timestamp is queued on the socket's error queue while
	// the write sends (loopback transmits inside the syscall).
	raw.Control(func(fd uintptr) {
		for {
			_, oobn, _, _, err := unix.Recvmsg(int(fd), nil, oob, unix.MSG_ERRQUEUE|unix.MSG_DONTWAIT)
			if err != nil {
				return
			}
			msgs, _ := unix.ParseSocketControlMessage(oob[:oobn])
			for _, m := range msgs {
				// struct scm_timestamping: ts[0] is the software timestamp.
				if m.Header.Level == unix.SOL_SOCKET && m.Header.Type == unix.SCM_TIMESTAMPING && len(m.Data) >= 16 {
					if ts := (*unix.Timespec)(unsafe.Pointer(&m.Data[0])); ts.Sec != 0 {
						start = time.Unix(ts.Sec, ts.Nsec)
					}
				}
			}
		}
	})
	var n, oobn int
	var rx time.Time
	rerr := raw.Read(func(fd uintptr) bool {
		n, oobn, _, _, serr = unix.Recvmsg(int(fd), buf, oob, 0)
		return serr != unix.EAGAIN
	})
	if rerr != nil || serr != nil || n == 0 {
		return 0, false, fmt.Errorf("recvmsg: %v %v (%d bytes)", rerr, serr, n)
	}
	msgs, _ := unix.ParseSocketControlMessage(oob[:oobn])
	for _, m := range msgs {
		if m.Header.Level == unix.SOL_SOCKET && m.Header.Type == unix.SO_TIMESTAMPNS && len(m.Data) >= 16 {
			ts := (*unix.Timespec)(unsafe.Pointer(&m.Data[0]))
			rx = time.Unix(ts.Sec, ts.Nsec)
		}
	}
	if rx.IsZero() {
		// The kernel enables receive timestamps lazily (a deferred static
		// key), so the first responses after enabling may come without
		// one: fall back to the time we read it.
		rx = time.Now()
	}
	ms := float64(rx.UnixNano()-start.UnixNano()) / 1e6
	resp, err := http.ReadResponse(bufio.NewReader(io.MultiReader(bytes.NewReader(buf[:n]), conn)), nil)
	if err != nil {
		return 0, false, err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return ms, !resp.Close, nil
}

// HoldTimestamps keeps the kernel's receive timestamping on until release
// is called. The kernel turns it on lazily, when the first socket asks for
// it, and off again when the last one closes, so a load that opens a new
// connection per request (TimedGet on each) would keep getting responses
// without a timestamp; one socket that asks for them and stays open keeps
// it on.
func HoldTimestamps() (release func(), err error) {
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	raw, err := c.(*net.UDPConn).SyscallConn()
	if err == nil {
		raw.Control(func(fd uintptr) { err = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_TIMESTAMPNS, 1) })
	}
	if err != nil {
		c.Close()
		return nil, err
	}
	// Let the deferred switch take effect before the first request.
	time.Sleep(50 * time.Millisecond)
	return func() { c.Close() }, nil
}
