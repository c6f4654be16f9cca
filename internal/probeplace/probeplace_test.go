package probeplace

import "testing"

func TestEntry(t *testing.T) {
	cases := []struct {
		name string
		code []byte
		want uint64
	}{
		// glibc free: test %rdi,%rdi; je ...; push %rbp
		{"free", []byte{0x48, 0x85, 0xff, 0x0f, 0x84, 0xbf, 0x00, 0x00, 0x00, 0x55}, 3},
		// glibc malloc: push %r12
		{"malloc", []byte{0x41, 0x54, 0x55, 0x53}, 0},
		// valloc: cmpb $0,0x140e31(%rip); push %rbx
		{"valloc", []byte{0x80, 0x3d, 0x31, 0x0e, 0x14, 0x00, 0x00, 0x53, 0x48, 0x89, 0xfb}, 7},
		// reallocarray: mov %rsi,%rax; mul %rdx (writes rdx, an argument)
		{"reallocarray", []byte{0x48, 0x89, 0xf0, 0x48, 0xf7, 0xe2, 0x48, 0x89, 0xc6}, 0},
		// mov %rdi,%rbx? no: mov %rsi,%rdi writes an argument register.
		{"clobber", []byte{0x48, 0x89, 0xf7, 0x55}, 0},
	}
	for _, c := range cases {
		p := Entry(c.code)
		if p.Offset != c.want {
			t.Errorf("%s: offset %d (%s), want %d", c.name, p.Offset, p.Reason, c.want)
		}
	}
}
