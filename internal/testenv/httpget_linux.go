//go:build linux

package testenv

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// TimedResponse is what TimedGet measured of one request.
type TimedResponse struct {
	TTFB, Total float64 // ms to the response's first and last byte
	Keep        bool    // the connection stays open
}

// TimedGet sends one GET and reads the whole response; it returns the
// times from the kernel's transmit timestamp of the request
// (SO_TIMESTAMPING, as the segment leaves for the device: on loopback,
// when the server's socket gets it; the time just before the write when the
// kernel gives none) to its receive timestamps (SO_TIMESTAMPNS) of the
// response's first and last bytes, so the client's figures include neither
// its own wake-up delays nor a preemption between reading the clock and
// writing on this busy 2-core machine.
func TimedGet(conn net.Conn, path string) (TimedResponse, error) {
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	raw, err := conn.(*net.TCPConn).SyscallConn()
	if err != nil {
		return TimedResponse{}, err
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
		return TimedResponse{}, serr
	}
	req := "GET " + path + " HTTP/1.1\r\nHost: test\r\nUser-Agent: bpfsnap-test\r\n\r\n"
	start := time.Now()
	if _, err := io.WriteString(conn, req); err != nil {
		return TimedResponse{}, err
	}
	tr := &timedReader{raw: raw, oob: make([]byte, 256)}
	if tx := tr.sent(); !tx.IsZero() {
		start = tx
	}
	// A small buffer: the reads follow the segments, and the last one is
	// the read that completes the body.
	resp, err := http.ReadResponse(bufio.NewReaderSize(tr, 16), nil)
	if err != nil {
		return TimedResponse{}, err
	}
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		return TimedResponse{}, err
	}
	resp.Body.Close()
	ms := func(t time.Time) float64 { return float64(t.UnixNano()-start.UnixNano()) / 1e6 }
	return TimedResponse{TTFB: ms(tr.first), Total: ms(tr.last), Keep: !resp.Close}, nil
}

// timedReader reads a socket with recvmsg and keeps the kernel's receive
// timestamp (SO_TIMESTAMPNS) of the first and the last read.
type timedReader struct {
	raw         syscall.RawConn
	oob         []byte
	first, last time.Time
}

// sent returns the transmit timestamp of the last write, queued on the
// socket's error queue while the write sent (loopback transmits inside
// the syscall); zero when there is none.
func (r *timedReader) sent() time.Time {
	var tx time.Time
	r.raw.Control(func(fd uintptr) {
		for {
			_, oobn, _, _, err := unix.Recvmsg(int(fd), nil, r.oob, unix.MSG_ERRQUEUE|unix.MSG_DONTWAIT)
			if err != nil {
				return
			}
			msgs, _ := unix.ParseSocketControlMessage(r.oob[:oobn])
			for _, m := range msgs {
				// struct scm_timestamping: ts[0] is the software timestamp.
				if m.Header.Level == unix.SOL_SOCKET && m.Header.Type == unix.SCM_TIMESTAMPING && len(m.Data) >= 16 {
					if ts := (*unix.Timespec)(unsafe.Pointer(&m.Data[0])); ts.Sec != 0 {
						tx = time.Unix(ts.Sec, ts.Nsec)
					}
				}
			}
		}
	})
	return tx
}

func (r *timedReader) Read(p []byte) (int, error) {
	n, rx, err := RecvTimed(r.raw, p, r.oob)
	if err != nil {
		return 0, err
	}
	if r.first.IsZero() {
		r.first = rx
	}
	r.last = rx
	return n, nil
}

// RecvTimed reads a socket (SO_TIMESTAMPNS on) with recvmsg and returns
// the kernel's receive timestamp of the bytes read; oob is scratch for
// the control messages (256 bytes is plenty).
func RecvTimed(raw syscall.RawConn, p, oob []byte) (int, time.Time, error) {
	var n, oobn int
	var serr error
	rerr := raw.Read(func(fd uintptr) bool {
		n, oobn, _, _, serr = unix.Recvmsg(int(fd), p, oob, 0)
		return serr != unix.EAGAIN
	})
	if rerr != nil {
		return 0, time.Time{}, rerr
	}
	if serr != nil {
		return 0, time.Time{}, serr
	}
	if n == 0 {
		return 0, time.Time{}, io.EOF
	}
	rx := time.Now()
	msgs, _ := unix.ParseSocketControlMessage(oob[:oobn])
	for _, m := range msgs {
		if m.Header.Level == unix.SOL_SOCKET && m.Header.Type == unix.SO_TIMESTAMPNS && len(m.Data) >= 16 {
			ts := (*unix.Timespec)(unsafe.Pointer(&m.Data[0]))
			// The kernel enables receive timestamps lazily (a deferred
			// static key), so the first reads after enabling may come
			// without one: then the time of the read stands in
			// (HoldTimestamps avoids that).
			rx = time.Unix(ts.Sec, ts.Nsec)
		}
	}
	return n, rx, nil
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
