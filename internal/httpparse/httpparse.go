// Package httpparse reads HTTP/1.x request lines captured from the wire
// and cleans their targets for the archive. (Message framing happens in
// the kernel: capture/probes/http/http.bpf.c.) Input is whatever bytes a
// workload sent, possibly cut short; nothing here trusts it.
package httpparse

import (
	"bytes"
	"strings"
)

// MaxPath is the longest path kept; longer ones are cut and flagged.
const MaxPath = 200

// methods maps a method's bytes to its one string: looked up as
// methods[string(b)], which Go does without allocating, so a parsed
// request's method costs no allocation.
var methods = map[string]string{
	"GET": "GET", "POST": "POST", "PUT": "PUT", "HEAD": "HEAD", "DELETE": "DELETE",
	"PATCH": "PATCH", "OPTIONS": "OPTIONS", "CONNECT": "CONNECT", "TRACE": "TRACE",
}

// Request is a parsed request line.
type Request struct {
	Method string
	Target string // raw request target as sent
	// Cut is true when the captured bytes ended inside the request line.
	Cut bool
}

// ParseRequest parses "METHOD SP target SP HTTP/1.x CRLF" from the start
// of b. ok is false when b does not start with a known method and a target.
func ParseRequest(b []byte) (r Request, ok bool) {
	sp := bytes.IndexByte(b, ' ')
	if sp <= 0 || sp > 8 {
		return r, false
	}
	m, known := methods[string(b[:sp])]
	if !known {
		return r, false
	}
	r.Method = m
	rest := b[sp+1:]
	end := bytes.IndexAny(rest, " \r\n")
	if end < 0 {
		// The capture ended inside the target.
		r.Target, r.Cut = string(rest), true
		return r, len(rest) > 0
	}
	r.Target = string(rest[:end])
	if r.Target == "" {
		return r, false
	}
	if rest[end] == ' ' && !bytes.HasPrefix(rest[end+1:], []byte("HTTP/1.")) && len(rest[end+1:]) >= 7 {
		return r, false
	}
	return r, true
}

// CleanTarget turns a request target into the path stored in the archive:
// userinfo of an absolute URL, the fragment, and (unless keepQuery) the
// query string are removed, so credentials and personal data in URLs never
// reach the archive; the result is cut at MaxPath bytes.
func CleanTarget(target string, keepQuery bool) (path string, truncated bool) {
	path = target
	if i := strings.Index(path, "://"); i > 0 {
		// absolute-form: scheme://[userinfo@]host[:port]/path
		rest := path[i+3:]
		slash := strings.IndexByte(rest, '/')
		authority := rest
		if slash >= 0 {
			authority = rest[:slash]
		}
		if at := strings.LastIndexByte(authority, '@'); at >= 0 {
			authority = authority[at+1:]
		}
		tail := ""
		if slash >= 0 {
			tail = rest[slash:]
		}
		path = path[:i+3] + authority + tail
	}
	if i := strings.IndexByte(path, '#'); i >= 0 {
		path = path[:i]
	}
	if !keepQuery {
		if i := strings.IndexByte(path, '?'); i >= 0 {
			path = path[:i]
		}
	}
	if len(path) > MaxPath {
		return path[:MaxPath], true
	}
	return path, false
}
