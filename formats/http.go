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
// the window. Latency is ResponseNs - RequestNs: for a server, from the
// request's first segment arriving to the response's first segment being
// sent; for a client, from the request's first segment sent to the
// response's first segment arriving.
type HTTPRequest struct {
	RequestNs uint64 `parquet:"request_ns"`
	// ResponseNs is 0 when no response came before the window ended
	// (counted in drops as http.no_response).
	ResponseNs uint64 `parquet:"response_ns"`
	PID        uint32 `parquet:"pid"` // the socket's process; 0 when it could not be learned
	TID        uint32 `parquet:"tid"`
	// CgroupID is the cgroup v2 id of the socket's owner.
	CgroupID uint64 `parquet:"cgroup_id"`
	Role     string `parquet:"role,dict"`
	Method   string `parquet:"method,dict"`
	// Path is the request target without query string, fragment or
	// userinfo (unless captured with --keep-query), at most 200 bytes.
	Path          string `parquet:"path"`
	PathTruncated bool   `parquet:"path_truncated"`
	Status        uint32 `parquet:"status"` // 0 without a response
	LocalAddr     string `parquet:"local_addr"`
	RemoteAddr    string `parquet:"remote_addr"`
	// Connection is the kernel's socket cookie: requests of one keep-alive
	// connection share it (per side: client and server sockets differ).
	Connection uint64 `parquet:"connection"`
	// RequestBytes and ResponseBytes are the Content-Length headers when
	// they were within the captured head of the message, else -1.
	RequestBytes  int64 `parquet:"request_bytes"`
	ResponseBytes int64 `parquet:"response_bytes"`
}
