package report

import (
	"bufio"
	"encoding/xml"
	"fmt"
	"io"
)

// xmlWriter writes markup where every workload string goes through an XML
// escaper: text and attribute values alike. Nothing builds tags from
// workload strings by concatenation.
type xmlWriter struct {
	w   *bufio.Writer
	err error
}

func newXMLWriter(w io.Writer) *xmlWriter { return &xmlWriter{w: bufio.NewWriterSize(w, 64*1024)} }

// raw writes trusted markup (our own tags and numbers).
func (x *xmlWriter) raw(format string, args ...any) {
	if x.err == nil {
		_, x.err = fmt.Fprintf(x.w, format, args...)
	}
}

// text writes an escaped string. encoding/xml also replaces invalid UTF-8
// and characters XML forbids (most control characters) with U+FFFD.
func (x *xmlWriter) text(s string) {
	if x.err == nil {
		x.err = xml.EscapeText(x.w, []byte(s))
	}
}

func (x *xmlWriter) flush() error {
	if x.err != nil {
		return x.err
	}
	return x.w.Flush()
}
