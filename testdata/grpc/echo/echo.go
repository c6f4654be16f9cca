// Package echo is a gRPC service of known latencies and failure share, for
// bpfsnap's tests and demo, written without generated code: messages are
// raw bytes (a codec named "proto", so calls carry the usual content-type
// application/grpc).
//
//	/bpfsnap.test.Echo/Fast   answers at once
//	/bpfsnap.test.Echo/Slow   answers after SlowDelay
//	/bpfsnap.test.Echo/Flaky  fails every FlakyEvery-th call with UNAVAILABLE
//	/bpfsnap.test.Echo/Hello  answers at once (the client's first call, which dials)
package echo

import (
	"context"
	"errors"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/status"
)

const (
	Service    = "bpfsnap.test.Echo"
	SlowDelay  = 8 * time.Millisecond
	FlakyEvery = 4
)

// Methods are the full method names of the measured calls.
var Methods = []string{"/" + Service + "/Fast", "/" + Service + "/Slow", "/" + Service + "/Flaky"}

// Hello is the method of the call that opens a connection.
const Hello = "/" + Service + "/Hello"

// Codec carries []byte messages as they are.
type Codec struct{}

func (Codec) Name() string { return "proto" }

func (Codec) Marshal(v any) ([]byte, error) {
	switch m := v.(type) {
	case *[]byte:
		return *m, nil
	case []byte:
		return m, nil
	}
	return nil, errors.New("echo: not bytes")
}

func (Codec) Unmarshal(data []byte, v any) error {
	m, ok := v.(*[]byte)
	if !ok {
		return errors.New("echo: not *[]byte")
	}
	*m = append((*m)[:0], data...)
	return nil
}

func init() { encoding.RegisterCodec(Codec{}) }

var flaky atomic.Int64

func handler(delay time.Duration, fail bool) grpc.MethodHandler {
	return func(_ any, ctx context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
		var in []byte
		if err := dec(&in); err != nil {
			return nil, err
		}
		if delay > 0 {
			time.Sleep(delay)
		}
		if fail && flaky.Add(1)%FlakyEvery == 0 {
			return nil, status.Error(codes.Unavailable, "flaky")
		}
		out := append([]byte("echo:"), in...)
		return &out, nil
	}
}

// Desc describes the service for grpc.Server.RegisterService.
var Desc = grpc.ServiceDesc{
	ServiceName: Service,
	HandlerType: (*any)(nil),
	Methods: []grpc.MethodDesc{
		{MethodName: "Fast", Handler: handler(0, false)},
		{MethodName: "Slow", Handler: handler(SlowDelay, false)},
		{MethodName: "Flaky", Handler: handler(0, true)},
		{MethodName: "Hello", Handler: handler(0, false)},
	},
}
