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

// Head is what one pass over a message head finds.
type Head struct {
	// ContentLength is the Content-Length header when it lies entirely
	// within the bytes, else -1.
	ContentLength int64
	// Len is the length of the head including its blank line, or -1 when
	// the bytes end before it.
	Len int
	// Chunked is true when a Transfer-Encoding header was seen.
	Chunked bool
}

// ScanHead reads the header lines after the start line of b once, without
// allocating: it runs for every captured message on the recorder's hot
// path.
func ScanHead(b []byte) Head {
	h := Head{ContentLength: -1, Len: -1}
	i := bytes.IndexByte(b, '\n')
	if i < 0 {
		return h
	}
	pos := i + 1
	for pos < len(b) {
		// Lines end in CRLF; a bare LF is accepted, as servers do.
		eol := bytes.IndexByte(b[pos:], '\n')
		if eol < 0 {
			return h // cut short inside a header line
		}
		line := b[pos : pos+eol]
		pos += eol + 1
		if n := len(line); n > 0 && line[n-1] == '\r' {
			line = line[:n-1]
		}
		if len(line) == 0 {
			h.Len = pos
			return h
		}
		// Only two headers matter; test the first letter before comparing.
		switch line[0] | 0x20 {
		case 'c':
			if k, v, ok := bytes.Cut(line, colon); ok && bytes.EqualFold(bytes.TrimSpace(k), contentLength) {
				h.ContentLength = parseLength(bytes.TrimSpace(v))
			}
		case 't':
			if k, _, ok := bytes.Cut(line, colon); ok && bytes.EqualFold(bytes.TrimSpace(k), transferEncoding) {
				h.Chunked = true
			}
		}
	}
	return h
}

func parseLength(v []byte) int64 {
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

// ContentLength returns the Content-Length header if it lies entirely
// within b, else -1.
func ContentLength(b []byte) int64 { return ScanHead(b).ContentLength }

// MessageLen returns the length of the message whose head h describes: the
// head plus the body Content-Length declares. A request without
// Content-Length or Transfer-Encoding has no body. ok is false when the
// bytes did not hold the whole head, or the body length is not declared
// (chunked, or a response delimited by closing the connection).
func (h Head) MessageLen(request bool) (n int64, ok bool) {
	if h.Len < 0 {
		return 0, false
	}
	body := h.ContentLength
	if body < 0 {
		if !request || h.Chunked {
			return 0, false
		}
		body = 0
	}
	return int64(h.Len) + body, true
}

// MessageLen is ScanHead(b).MessageLen(request).
func MessageLen(b []byte, request bool) (int64, bool) { return ScanHead(b).MessageLen(request) }

var (
	colon            = []byte(":")
	contentLength    = []byte("content-length")
	transferEncoding = []byte("transfer-encoding")
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
