package formats

// TableHTTPRequests holds one row per HTTP/1.x request seen on a socket.
const TableHTTPRequests = "http_requests" // HTTPRequest

// HTTP roles: a server reads requests and writes responses; a client
// writes requests and reads responses.
const (
	RoleServer = "server"
	RoleClient = "client"
)

// HTTPRequest is one request, paired with its response when one came in
// the window. Times are the kernel's monotonic clock at the socket layer.
// Latency is ResponseEndNs - RequestNs: for a server, from the request's
// first byte arriving to the response's last byte being sent; for a
// client, from the request's first byte sent to the response's last byte
// arriving. ResponseNs - RequestNs is the time to the response's first
// byte (TTFB). Archives of format version 1 have no ResponseEndNs (it
// reads as 0): their only figure is the time to first byte.
//
// Encodings (any Parquet reader decodes them; archives written before
// used PLAIN and read the same): the four times are DELTA_BINARY_PACKED
// (consecutive requests are microseconds apart, so their deltas take a
// few bits where the plain values took eight bytes for zstd to chew
// through), and the path and the addresses are dictionary-encoded (a
// handful of routes and one address pair per connection). Together they
// cut the recorder's Parquet and zstd work per request by ~40% and the
// bytes per row by ~15% (measured on 490k real rows, docs/benchmarks.md).
type HTTPRequest struct {
	RequestNs uint64 `parquet:"request_ns,delta"`
	// ResponseNs is the response's first byte; 0 when no response came
	// before the window ended (counted in drops as http.no_response).
	ResponseNs uint64 `parquet:"response_ns,delta"`
	// ResponseEndNs is the response's last byte; 0 when it was not seen
	// (the window ended inside the response's body, or the message framing
	// was lost: http.response_end_unknown).
	ResponseEndNs uint64 `parquet:"response_end_ns,delta"`
	// ResponseWrittenNs is when the response's last segment sent in the
	// context of a task of the socket's owner left: about when the server
	// finished writing it (a segment held back by Nagle leaves later, from
	// the softirq of the peer's ACK, and does not count). 0 when unknown.
	// The time split of a server request ends here.
	ResponseWrittenNs uint64 `parquet:"response_written_ns,delta"`
	PID               uint32 `parquet:"pid"` // the socket's process; 0 when it could not be learned
	TID               uint32 `parquet:"tid"` // a thread of PID seen on the socket
	// RequestTID and ResponseTID are the threads that handled each
	// message where the hook runs in their context: for a server the
	// thread that wrote the response; for a client the thread that wrote
	// the request. 0 where unknown (received messages are seen in softirq
	// context).
	RequestTID  uint32 `parquet:"request_tid"`
	ResponseTID uint32 `parquet:"response_tid"`
	// CgroupID is the cgroup v2 id of the socket's owner.
	CgroupID uint64 `parquet:"cgroup_id"`
	Role     string `parquet:"role,dict"`
	Method   string `parquet:"method,dict"`
	// Path is the request target without query string, fragment or
	// userinfo (unless captured with --keep-query), at most 200 bytes.
	Path          string `parquet:"path,dict"`
	PathTruncated bool   `parquet:"path_truncated"`
	Status        uint32 `parquet:"status"` // 0 without a response
	LocalAddr     string `parquet:"local_addr,dict"`
	RemoteAddr    string `parquet:"remote_addr,dict"`
	// Connection is the kernel's socket cookie: requests of one keep-alive
	// connection share it (per side: client and server sockets differ).
	Connection uint64 `parquet:"connection"`
	// RequestBytes is the request body's Content-Length, or -1 when none
	// was declared (chunked or no body). ResponseBytes is the response
	// body's length: Content-Length, or the bytes a chunked or
	// close-delimited body had; -1 when unknown.
	RequestBytes  int64 `parquet:"request_bytes"`
	ResponseBytes int64 `parquet:"response_bytes"`
	// Protocol is "http1", "http2" or "grpc" (HTTP/2 with a content-type
	// of application/grpc); empty in format 1.
	Protocol string `parquet:"protocol,dict"`
	// TLS is true when the messages were read from a TLS library's
	// plaintext rather than from the wire.
	TLS bool `parquet:"tls"`
	// Stream is the HTTP/2 stream id; 0 for HTTP/1.x. Absent in archives
	// written before HTTP/2 capture (reads as 0).
	Stream uint32 `parquet:"stream"`
	// GRPCStatus is a gRPC call's grpc-status trailer; -1 when the call
	// had none (not gRPC, no trailers in the window) or it could not be
	// decoded (http.h2_status_unknown). Absent in archives written before
	// HTTP/2 capture.
	GRPCStatus int32 `parquet:"grpc_status"`
}

// HTTP protocols.
const (
	ProtocolHTTP1 = "http1"
	ProtocolHTTP2 = "http2"
	ProtocolGRPC  = "grpc"
)

// PathNameUnknown stands for the path of an HTTP/2 request whose header
// block could not be decoded (its connection's HPACK state began before
// the window) and whose name no probe recovered (http.h2_name_unknown).
const PathNameUnknown = "[h2 name unknown]"
