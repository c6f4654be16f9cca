package formats

import (
	"archive/zip"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"time"
)

// Bundle packs a partial directory into the single archive file output: a
// zip whose entries are stored uncompressed (the Parquet chunks are already
// zstd-compressed), so readers can reach each chunk at its offset without
// inflating it, and `unzip` gives back plain Parquet files. manifest.json is
// the first entry. The file is written under a temporary name, fsynced and
// renamed, so output is either absent or whole.
func Bundle(dir, output string) error {
	names, err := listEntries(dir)
	if err != nil {
		return err
	}
	tmp := tmpName(output)
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o640)
	if err != nil {
		return fmt.Errorf("creating %s: %w", output, err)
	}
	zw := zip.NewWriter(f)
	for _, name := range names {
		if err := addStored(zw, filepath.Join(dir, name), name); err != nil {
			f.Close()
			os.Remove(tmp)
			return fmt.Errorf("writing %s: %w", output, err)
		}
	}
	if err := zw.Close(); err != nil {
		f.Close()
		os.Remove(tmp)
		return fmt.Errorf("writing %s: %w", output, err)
	}
	return commitFile(f, tmp, output)
}

// listEntries returns manifest.json followed by the chunk files of dir in
// name order; temporary files and anything else are left out.
func listEntries(dir string) ([]string, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", dir, err)
	}
	var chunks []string
	haveManifest := false
	for _, e := range ents {
		switch {
		case e.Name() == ManifestName:
			haveManifest = true
		case e.Type().IsRegular() && parseChunkName(e.Name()) != "":
			chunks = append(chunks, e.Name())
		}
	}
	if !haveManifest {
		return nil, fmt.Errorf("%s has no %s", dir, ManifestName)
	}
	sort.Strings(chunks)
	return append([]string{ManifestName}, chunks...), nil
}

func addStored(zw *zip.Writer, path, name string) error {
	src, err := os.Open(path)
	if err != nil {
		return err
	}
	defer src.Close()
	st, err := src.Stat()
	if err != nil {
		return err
	}
	hdr := &zip.FileHeader{Name: name, Method: zip.Store, Modified: st.ModTime().UTC()}
	if hdr.Modified.IsZero() {
		hdr.Modified = time.Now().UTC()
	}
	dst, err := zw.CreateHeader(hdr)
	if err != nil {
		return err
	}
	_, err = io.Copy(dst, src)
	return err
}
