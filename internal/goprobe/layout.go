package goprobe

import (
	"debug/dwarf"
	"errors"
	"fmt"
)

// Layouts of golang.org/x/net/http2 (and of its copy bundled in net/http)
// that capture/probes/http's go_h2_names program reads; stable since
// x/net's MetaHeadersFrame appeared (2016) through x/net v0.63.0 and Go
// 1.26 (checked against their DWARF by CheckHTTP2Layouts in tests):
//
//	type MetaHeadersFrame struct { *HeadersFrame; Fields []hpack.HeaderField; Truncated bool }
//	type HeadersFrame struct { FrameHeader; Priority PriorityParam; headerFragBuf []byte }
//	type FrameHeader struct { valid bool; Type FrameType; Flags Flags; Length uint32; StreamID uint32 }
//	type HeaderField struct { Name, Value string; Sensitive bool }
const (
	MetaFieldsOffset  = 8
	FrameTypeOffset   = 1
	FrameFlagsOffset  = 2
	FrameStreamOffset = 8
	FieldValueOffset  = 16
	FieldSize         = 40
)

// The path from a crypto/tls connection to its socket's descriptor that
// the go_bind program follows (stable since Go 1.9's internal/poll):
//
//	type tls.Conn struct { conn net.Conn; ... }          // the interface's data word at 8
//	type net.TCPConn struct { conn }                     // conn{fd *netFD}: fd at 0
//	type net.netFD struct { pfd poll.FD; ... }           // pfd at 0
//	type poll.FD struct { fdmu fdMutex; Sysfd int; ... } // Sysfd at 16
const (
	TLSConnOffset     = 0
	NetConnFDOffset   = 0
	NetFDPFDOffset    = 0
	PollFDSysfdOffset = 16
)

// CheckTLSLayouts compares those offsets with the DWARF of a binary that
// links crypto/tls.
func CheckTLSLayouts(d *dwarf.Data) error {
	return checkFields(d, map[string]map[string]int64{
		"crypto/tls.Conn":  {"conn": TLSConnOffset},
		"net.conn":         {"fd": NetConnFDOffset},
		"net.netFD":        {"pfd": NetFDPFDOffset},
		"internal/poll.FD": {"Sysfd": PollFDSysfdOffset},
	}, nil)
}

// HTTP2Types names the Go types of one HTTP/2 implementation.
type HTTP2Types struct{ Meta, Header, Field string }

var (
	// StdHTTP2 is the copy bundled in net/http.
	StdHTTP2 = HTTP2Types{"net/http.http2MetaHeadersFrame", "net/http.http2FrameHeader", "vendor/golang.org/x/net/http2/hpack.HeaderField"}
	// XNetHTTP2 is golang.org/x/net/http2, as grpc-go links it.
	XNetHTTP2 = HTTP2Types{"golang.org/x/net/http2.MetaHeadersFrame", "golang.org/x/net/http2.FrameHeader", "golang.org/x/net/http2/hpack.HeaderField"}
)

// CheckHTTP2Layouts compares the offsets above with the DWARF of a binary
// that links the implementation ty.
func CheckHTTP2Layouts(d *dwarf.Data, ty HTTP2Types) error {
	return checkFields(d, map[string]map[string]int64{
		ty.Meta:   {"Fields": MetaFieldsOffset},
		ty.Header: {"valid": 0, "Type": FrameTypeOffset, "Flags": FrameFlagsOffset, "StreamID": FrameStreamOffset},
		ty.Field:  {"Name": 0, "Value": FieldValueOffset},
	}, map[string]int64{ty.Field: FieldSize, ty.Meta: -1})
}

// checkFields finds each struct type of want in the DWARF and compares
// its fields' offsets; sizes gives whole sizes to check (-1: the first
// field must be at 0).
func checkFields(d *dwarf.Data, want map[string]map[string]int64, sizes map[string]int64) error {
	var errs []error
	found := map[string]bool{}
	r := d.Reader()
	for {
		e, err := r.Next()
		if err != nil {
			return err
		}
		if e == nil {
			break
		}
		name, _ := e.Val(dwarf.AttrName).(string)
		fields, ok := want[name]
		if e.Tag != dwarf.TagStructType || !ok || found[name] {
			continue
		}
		found[name] = true
		typ, err := d.Type(e.Offset)
		if err != nil {
			return err
		}
		st, ok := typ.(*dwarf.StructType)
		if !ok {
			continue
		}
		if sz, ok := sizes[name]; ok {
			if sz < 0 && (len(st.Field) == 0 || st.Field[0].ByteOffset != 0) {
				errs = append(errs, fmt.Errorf("%s: its first field is not at 0", name))
			} else if sz >= 0 && st.ByteSize != sz {
				errs = append(errs, fmt.Errorf("%s: %d bytes, probes assume %d", name, st.ByteSize, sz))
			}
		}
		for _, f := range st.Field {
			if off, ok := fields[f.Name]; ok {
				if f.ByteOffset != off {
					errs = append(errs, fmt.Errorf("%s.%s at %d, probes assume %d", name, f.Name, f.ByteOffset, off))
				}
				delete(fields, f.Name)
			}
		}
		for f := range fields {
			errs = append(errs, fmt.Errorf("%s has no field %s", name, f))
		}
	}
	for name := range want {
		if !found[name] {
			errs = append(errs, fmt.Errorf("type %s not in the DWARF", name))
		}
	}
	return errors.Join(errs...)
}
