// Package httpparse reads the head of HTTP/1.x messages captured from the
// wire: request lines, status lines and Content-Length. Input is whatever
// bytes a workload sent, possibly cut short; nothing here trusts it.
package httpparse

import (
	"bytes"
	"strconv"
	"strings"
)

// MaxPath is the longest path kept; longer ones are cut and flagged.
const MaxPath = 200

var methods = map[string]bool{
	"GET": true, "POST": true, "PUT": true, "HEAD": true, "DELETE": true,
	"PATCH": true, "OPTIONS": true, "CONNECT": true, "TRACE": true,
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
	if sp <= 0 || sp > 8 || !methods[string(b[:sp])] {
		return r, false
	}
	r.Method = string(b[:sp])
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

// ParseStatus parses the status code of "HTTP/1.x NNN ...".
func ParseStatus(b []byte) (int, bool) {
	if len(b) < 12 || !bytes.HasPrefix(b, []byte("HTTP/1.")) || b[8] != ' ' {
		return 0, false
	}
	code, err := strconv.Atoi(string(b[9:12]))
	if err != nil || code < 100 || code > 999 {
		return 0, false
	}
	return code, true
}

// ContentLength returns the Content-Length header if it lies entirely
// within b, else -1. It runs once per captured message on the recorder's
// hot path, so it scans in place without allocating.
func ContentLength(b []byte) int64 {
	// Skip the start line.
	i := bytes.Index(b, crlf)
	if i < 0 {
		return -1
	}
	b = b[i+2:]
	for len(b) > 0 {
		eol := bytes.Index(b, crlf)
		if eol < 0 {
			return -1 // the rest is cut short: no complete header here
		}
		line := b[:eol]
		b = b[eol+2:]
		if len(line) == 0 {
			return -1 // end of headers
		}
		colon := bytes.IndexByte(line, ':')
		if colon < 0 || !bytes.EqualFold(bytes.TrimSpace(line[:colon]), contentLength) {
			continue
		}
		v := bytes.TrimSpace(line[colon+1:])
		if len(v) == 0 || len(v) > 18 {
			return -1
		}
		var n int64
		for _, c := range v {
			if c < '0' || c > '9' {
				return -1
			}
			n = n*10 + int64(c-'0')
		}
		return n
	}
	return -1
}

// MessageLen returns the length of the message whose head starts b: the
// head up to its blank line plus the body Content-Length declares. A
// request without Content-Length or Transfer-Encoding has no body. ok is
// false when b does not hold the whole head, or the body length is not
// declared (chunked, or a response delimited by closing the connection).
func MessageLen(b []byte, request bool) (n int64, ok bool) {
	end := bytes.Index(b, headEnd)
	if end < 0 {
		return 0, false
	}
	head := b[:end+2]
	body := ContentLength(head)
	if body < 0 {
		if !request || containsFold(head, transferEncoding) {
			return 0, false
		}
		body = 0
	}
	return int64(end+4) + body, true
}

func containsFold(b, lowerNeedle []byte) bool {
	for i := 0; i+len(lowerNeedle) <= len(b); i++ {
		if bytes.EqualFold(b[i:i+len(lowerNeedle)], lowerNeedle) {
			return true
		}
	}
	return false
}

var (
	headEnd          = []byte("\r\n\r\n")
	transferEncoding = []byte("\r\ntransfer-encoding:")
	crlf             = []byte("\r\n")
	contentLength = []byte("content-length")
)

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
