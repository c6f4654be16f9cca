package report

import (
	"bufio"
	"encoding/xml"
	"io"
)

// svgWriter writes XML markup where every text and every attribute value
// goes through encoding/xml's escaper: '<', '>', '&', quotes and
// whitespace control characters are entities, and characters XML cannot
// hold (other control characters, invalid UTF-8) become U+FFFD. No method
// takes raw markup except raw, which is only used for the package's own
// constant strings.
type svgWriter struct {
	w   *bufio.Writer
	err error
}

func newSVGWriter(w io.Writer) *svgWriter {
	return &svgWriter{w: bufio.NewWriterSize(w, 64<<10)}
}

// start writes <name k="v" ...>, or <name .../> when selfClose.
// attrs alternate name and value; names are the package's constants.
func (s *svgWriter) start(name string, selfClose bool, attrs ...string) {
	s.w.WriteByte('<')
	s.w.WriteString(name)
	for i := 0; i+1 < len(attrs); i += 2 {
		s.w.WriteByte(' ')
		s.w.WriteString(attrs[i])
		s.w.WriteString(`="`)
		s.escape(attrs[i+1])
		s.w.WriteByte('"')
	}
	if selfClose {
		s.w.WriteString("/>")
	} else {
		s.w.WriteByte('>')
	}
}

func (s *svgWriter) end(name string) {
	s.w.WriteString("</")
	s.w.WriteString(name)
	s.w.WriteByte('>')
}

// text writes escaped character data.
func (s *svgWriter) text(v string) { s.escape(v) }

// element writes <name attrs>text</name>.
func (s *svgWriter) element(name, text string, attrs ...string) {
	s.start(name, false, attrs...)
	s.escape(text)
	s.end(name)
}

// raw writes the package's own constant markup (the embedded script and
// style): never workload data.
func (s *svgWriter) raw(v string) { s.w.WriteString(v) }

func (s *svgWriter) escape(v string) {
	if isXMLPlain(v) {
		s.w.WriteString(v)
		return
	}
	if err := xml.EscapeText(s.w, []byte(v)); err != nil && s.err == nil {
		s.err = err
	}
}

func (s *svgWriter) flush() error {
	if err := s.w.Flush(); err != nil {
		return err
	}
	return s.err
}

// isXMLPlain is the fast path: printable ASCII without markup characters
// needs no escaping (most frame names).
func isXMLPlain(v string) bool {
	for i := 0; i < len(v); i++ {
		switch c := v[i]; {
		case c < 0x20 || c >= 0x7f, c == '<', c == '>', c == '&', c == '"', c == '\'':
			return false
		}
	}
	return true
}
