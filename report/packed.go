package report

import (
	"bytes"
	"compress/gzip"
	"encoding/base64"
)

// pack gzips text and encodes it in base64, for parts of the HTML report
// that are there but not shown when it opens (the time slices' flame
// graphs, the folded stacks to download): a page holding them as markup
// made the browser parse and lay out every one (a busy node's report took
// seconds to open); as a base64 attribute they cost a fraction of the
// bytes and no layout, and report.js unpacks one when it is asked for
// (DecompressionStream). Base64's alphabet holds nothing HTML treats
// specially.
func pack(text string) string {
	var b bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&b, gzip.BestSpeed)
	zw.Write([]byte(text))
	zw.Close()
	return base64.StdEncoding.EncodeToString(b.Bytes())
}
