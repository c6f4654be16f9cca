//go:build linux

package recorder

import (
	"slices"
	"testing"
)

// OutermostCgroups keeps a path only when no other one is its ancestor,
// also when a sibling whose name extends the ancestor's sorts between
// them ("/a-x" between "/a" and "/a/b").
func TestOutermostCgroups(t *testing.T) {
	for _, c := range []struct{ in, want []string }{
		{[]string{"/a/b", "/a-x", "/a"}, []string{"/a", "/a-x"}},
		{[]string{"/pod1/c1", "/pod2", "/pod1"}, []string{"/pod1", "/pod2"}},
		{[]string{"/x/y", "/"}, []string{"/"}},
		{[]string{"/a", "/a"}, []string{"/a"}},
		{nil, nil},
	} {
		if got := OutermostCgroups(slices.Clone(c.in)); !slices.Equal(got, c.want) {
			t.Errorf("OutermostCgroups(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}
