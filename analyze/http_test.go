package analyze

import (
	"math/rand/v2"
	"regexp"
	"strings"
	"testing"
)

// The regular expressions NormalizeRoute was first written with; the
// byte-scanning version must give the same answer for every path.
var (
	refNumber = regexp.MustCompile(`^[0-9]+$`)
	refUUID   = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)
	refHex    = regexp.MustCompile(`^[0-9a-fA-F]{12,}$`)
	refMixed  = regexp.MustCompile(`^[A-Za-z0-9_-]{20,}$`)
)

func refNormalizeRoute(path string) string {
	segs := strings.Split(path, "/")
	for i, s := range segs {
		if s == "" {
			continue
		}
		if refNumber.MatchString(s) || refUUID.MatchString(s) || refHex.MatchString(s) ||
			(refMixed.MatchString(s) && strings.ContainsAny(s, "0123456789")) {
			segs[i] = "{id}"
		}
	}
	return strings.Join(segs, "/")
}

func TestNormalizeRoute(t *testing.T) {
	for in, want := range map[string]string{
		"/users/42":          "/users/{id}",
		"/users/42/orders/7": "/users/{id}/orders/{id}",
		"/orders/0f8fad5b-d9cb-469f-a165-70867728950e": "/orders/{id}",
		"/blobs/deadbeefcafe":                          "/blobs/{id}",
		"/blobs/deadbeefcaf":                           "/blobs/deadbeefcaf",
		"/t/abcdefghijklmnopqrs1":                      "/t/{id}",
		"/t/abcdefghijklmnopqrst":                      "/t/abcdefghijklmnopqrst",
		"/api/v2/products":                             "/api/v2/products",
		"//x//1//":                                     "//x//{id}//",
		"":                                             "",
		"/":                                            "/",
		"/caf\xc3\xa9/12":                              "/caf\xc3\xa9/{id}",
		"/0f8fad5b-d9cb-469f-a165-70867728950e-extra/1": "/{id}/{id}",
	} {
		if got := NormalizeRoute(in); got != want {
			t.Errorf("NormalizeRoute(%q) = %q, want %q", in, got, want)
		}
		if ref := refNormalizeRoute(in); ref != want {
			t.Errorf("reference(%q) = %q, want %q (bad test case)", in, ref, want)
		}
	}
}

// TestNormalizeRouteMatchesRegexps compares with the regular expressions on
// random paths built from the characters that matter (digits, hex, token
// characters, dashes, slashes, other bytes).
func TestNormalizeRouteMatchesRegexps(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	alphabets := []string{"0123456789", "0123456789abcdefABCDEF", "0123456789abcdef-", "abcxyzXYZ_-0123456789", "/", "/.%\xff~é"}
	for i := 0; i < 200_000; i++ {
		var b strings.Builder
		for n := rng.IntN(6); n >= 0; n-- {
			b.WriteByte('/')
			a := alphabets[rng.IntN(len(alphabets))]
			for k := rng.IntN(40); k > 0; k-- {
				b.WriteByte(a[rng.IntN(len(a))])
			}
			if rng.IntN(10) == 0 { // a UUID, sometimes damaged
				u := []byte("0f8fad5b-d9cb-469f-a165-70867728950e")
				if rng.IntN(2) == 0 {
					u[rng.IntN(len(u))] = "-g0/"[rng.IntN(4)]
				}
				b.Write(u)
			}
		}
		p := b.String()
		if got, want := NormalizeRoute(p), refNormalizeRoute(p); got != want {
			t.Fatalf("NormalizeRoute(%q) = %q, the regular expressions say %q", p, got, want)
		}
	}
}
