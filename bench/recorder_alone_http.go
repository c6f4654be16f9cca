package main

import (
	"fmt"

	"github.com/bpfsnap/bpfsnap/internal/httpparse"

	"github.com/bpfsnap/bpfsnap/formats"
)

// aloneHTTP is the http probe set's synthetic stream for benchRecorderAlone.
func aloneHTTP(w *formats.Writer) func(int) error {
	t := formats.NewTable[formats.HTTPRequest](w, formats.TableHTTPRequests)
	line := []byte("GET /api/products/1234?page=2 HTTP/1.1\r")
	return func(i int) error {
		// One ring record makes one row: the kernel framed and paired the
		// exchange and sends the request line with the response's status
		// and times.
		r, ok := httpparse.ParseRequest(line)
		if !ok {
			return fmt.Errorf("synthetic request line does not parse")
		}
		path, cut := httpparse.CleanTarget(r.Target, false)
		return t.Write(formats.HTTPRequest{RequestNs: uint64(i) * 20_000, ResponseNs: uint64(i)*20_000 + 50_000, ResponseEndNs: uint64(i)*20_000 + 60_000, PID: 4242, TID: 4242, CgroupID: 777,
			Role: formats.RoleServer, Method: r.Method, Path: path, PathTruncated: cut, Status: 200, LocalAddr: "127.0.0.1:8080",
			RemoteAddr: "127.0.0.1:" + fmt.Sprint(40000+i%1000), Connection: uint64(i / 100), RequestBytes: -1, ResponseBytes: 17, Protocol: formats.ProtocolHTTP1})
	}
}
