//go:build linux

package main

import (
	"archive/zip"
	"bytes"
	"io"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/parquet-go/parquet-go"
)

// privacyRequests carry secrets in every place a URL or header can: query
// strings, userinfo of an absolute-form target, Authorization, Cookie and
// Proxy-Authorization headers, a fragment.
var privacyRequests = []string{
	"GET /priv/path?token=SECRETQUERY1 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer SECRETAUTH2\r\nCookie: session=SECRETCOOKIE3\r\n\r\n",
	"GET http://alice:SECRETPASS4@x/priv/abs?k=SECRETQUERY5 HTTP/1.1\r\nHost: x\r\n\r\n",
	"POST /priv/form?x=SECRETQUERY6 HTTP/1.1\r\nHost: x\r\nProxy-Authorization: Basic SECRETPROXY7\r\nContent-Length: 0\r\n\r\n",
	"GET /priv/frag#SECRETFRAG8 HTTP/1.1\r\nHost: x\r\nCookie: a=SECRETCOOKIE9\r\n\r\n",
}

var querySecrets = []string{"SECRETQUERY1", "SECRETQUERY5", "SECRETQUERY6"}
var alwaysSecret = []string{"SECRETAUTH2", "SECRETCOOKIE3", "SECRETPASS4", "alice", "SECRETPROXY7", "SECRETFRAG8", "SECRETCOOKIE9"}

// archiveStrings returns every text the archive holds: its raw bytes,
// each zip entry's bytes, and every string value of every Parquet column
// (the pages are zstd-compressed, so grepping the file alone proves little).
func archiveStrings(t *testing.T, path string) []string {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	out := []string{string(raw)}
	zr, err := zip.NewReader(bytes.NewReader(raw), int64(len(raw)))
	if err != nil {
		t.Fatal(err)
	}
	parquetFiles := 0
	for _, f := range zr.File {
		rc, err := f.Open()
		if err != nil {
			t.Fatal(err)
		}
		data, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, string(data))
		if !strings.HasSuffix(f.Name, ".parquet") {
			continue
		}
		parquetFiles++
		pf, err := parquet.OpenFile(bytes.NewReader(data), int64(len(data)))
		if err != nil {
			t.Fatalf("%s: %v", f.Name, err)
		}
		var sb strings.Builder
		for _, rg := range pf.RowGroups() {
			rows := rg.Rows()
			buf := make([]parquet.Row, 128)
			for {
				n, err := rows.ReadRows(buf)
				for _, row := range buf[:n] {
					for _, v := range row {
						if v.Kind() == parquet.ByteArray || v.Kind() == parquet.FixedLenByteArray {
							sb.Write(v.ByteArray())
							sb.WriteByte('\n')
						}
					}
				}
				if err != nil {
					break
				}
			}
			rows.Close()
		}
		out = append(out, sb.String())
	}
	if parquetFiles == 0 {
		t.Fatalf("%s holds no Parquet tables", path)
	}
	return out
}

func containsAny(texts []string, s string) bool {
	for _, t := range texts {
		if strings.Contains(t, s) {
			return true
		}
	}
	return false
}

// Query strings, userinfo and Authorization/Cookie headers sent to a real
// server under -p http never reach the archive (raw bytes, zip entries,
// decoded column values) nor analyze's output; --keep-query keeps queries
// only. The decoded values do hold the paths, so the search is real.
func TestPrivacyNoSecretsInArchive(t *testing.T) {
	bin := bpfsnapBin(t)
	for _, keep := range []bool{false, true} {
		dir := t.TempDir()
		var extra []string
		if keep {
			extra = []string{"--keep-query"}
		}
		arc := hostileCapture(t, dir, extra...)
		texts := archiveStrings(t, arc)
		js, err := exec.Command(bin, "analyze", "--json", arc).Output()
		if err != nil {
			t.Fatal(err)
		}
		texts = append(texts, string(js))
		for _, p := range []string{"/priv/path", "/priv/abs", "/priv/form", "/priv/frag"} {
			if !containsAny(texts[1:], p) {
				t.Errorf("keep-query=%v: path %s is not in the archive: the search below would prove nothing", keep, p)
			}
		}
		for _, s := range alwaysSecret {
			if containsAny(texts, s) {
				t.Errorf("keep-query=%v: secret %q reached the archive or analyze", keep, s)
			}
		}
		for _, s := range querySecrets {
			if got := containsAny(texts, s); got != keep {
				t.Errorf("keep-query=%v: query secret %q in the archive: %v", keep, s, got)
			}
		}
	}
}
