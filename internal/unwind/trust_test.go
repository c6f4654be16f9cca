package unwind

import (
	"reflect"
	"testing"

	"github.com/bpfsnap/bpfsnap/internal/symbolize"
)

func TestTrustedFramePointer(t *testing.T) {
	// One text mapping (no CFI loaded: binary returns nil) and one
	// anonymous executable mapping (JIT); data beyond them is not code.
	p := NewProcess([]symbolize.Mapping{
		{Start: 0x1000, End: 0x2000, Perms: "r-xp", Path: "/usr/lib/libcrypto.so.3", Inode: 1},
		{Start: 0x5000, End: 0x6000, Perms: "rwxp"},
		{Start: 0x7000, End: 0x8000, Perms: "rw-p", Path: "/usr/lib/libcrypto.so.3", Inode: 1},
	}, func(symbolize.Mapping) *Binary { return nil })

	cases := []struct {
		name    string
		cfi, fp []uint64
		want    []uint64
		wantCut bool
	}{
		{"all code", []uint64{0x1100}, []uint64{0x1100, 0x1200, 0x5100}, []uint64{0x1100, 0x1200, 0x5100}, false},
		{"garbage after two frames", []uint64{0x1100}, []uint64{0x1100, 0x1200, 0x7ffd0000, 0x7100, 0x1300}, []uint64{0x1100, 0x1200}, true},
		{"zero is not code", []uint64{0x1100}, []uint64{0x1100, 0, 0, 0}, []uint64{0x1100}, true},
		{"disagrees with CFI", []uint64{0x1100, 0x1400}, []uint64{0x1100, 0x1200, 0x1300}, nil, true},
	}
	for _, c := range cases {
		got, cut := TrustedFramePointer(p, c.cfi, c.fp)
		if !reflect.DeepEqual(got, c.want) || cut != c.wantCut {
			t.Errorf("%s: got %#x cut=%v, want %#x cut=%v", c.name, got, cut, c.want, c.wantCut)
		}
	}
}
