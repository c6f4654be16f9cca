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
// from just before the write to the kernel's receive timestamp of the
// response's first segment (SO_TIMESTAMPNS), so the client's figure does
// not include its own wake-up delay on this busy 2-core machine; and
// whether the connection stays open.
func TimedGet(conn net.Conn, path string) (float64, bool, error) {
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	raw, err := conn.(*net.TCPConn).SyscallConn()
	if err != nil {
		return 0, false, err
	}
	var serr error
	raw.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_TIMESTAMPNS, 1) })
	if serr != nil {
		return 0, false, serr
	}
	req := "GET " + path + " HTTP/1.1\r\nHost: test\r\nUser-Agent: bpfsnap-test\r\n\r\n"
	start := time.Now()
	if _, err := io.WriteString(conn, req); err != nil {
		return 0, false, err
	}
	buf, oob := make([]byte, 64*1024), make([]byte, 256)
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
