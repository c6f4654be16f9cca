package main

import (
	"fmt"
	"github.com/bpfsnap/bpfsnap/internal/httpparse"

	"github.com/bpfsnap/bpfsnap/formats"
)

// aloneHTTP is the http probe set's synthetic stream for benchRecorderAlone.
func aloneHTTP(w *formats.Writer) func(int) error {
	t := formats.NewTable[formats.HTTPRequest](w, formats.TableHTTPRequests)
	req := []byte("GET /api/products/1234?page=2 HTTP/1.1\r\nHost: shop\r\nUser-Agent: wrk\r\nAccept: */*\r\n\r\n")
	resp := []byte("HTTP/1.1 200 OK\r\nServer: nginx\r\nContent-Type: text/html\r\nContent-Length: 17\r\n\r\n")
	return func(i int) error {
		// Two ring records make one row: the request head and the
		// response head.
		r, ok := httpparse.ParseRequest(req)
		st, ok2 := httpparse.ParseStatus(resp)
		if !ok || !ok2 {
			return fmt.Errorf("synthetic HTTP heads do not parse")
		}
		path, cut := httpparse.CleanTarget(r.Target, false)
		return t.Write(formats.HTTPRequest{RequestNs: uint64(i) * 20_000, ResponseNs: uint64(i)*20_000 + 50_000, ResponseEndNs: uint64(i)*20_000 + 60_000, PID: 4242, TID: 4242, CgroupID: 777,
			Role: formats.RoleServer, Method: r.Method, Path: path, PathTruncated: cut, Status: uint32(st), LocalAddr: "127.0.0.1:8080",
			RemoteAddr: "127.0.0.1:" + fmt.Sprint(40000+i%1000), Connection: uint64(i / 100), RequestBytes: -1, ResponseBytes: httpparse.ContentLength(resp)})
	}
}
