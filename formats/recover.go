package formats

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// RecoverResult says what Recover kept and what it had to leave out.
type RecoverResult struct {
	Output  string           `json:"output"`
	Tables  map[string]int64 `json:"tables"`
	Skipped []string         `json:"skipped,omitempty"` // chunk files that were unreadable
}

// Recover turns the partial directory of a crashed capture into a normal
// archive at output. Sealed chunks are kept; temporary (unsealed) files and
// chunks that do not open are left out and named in the result; the
// manifest's row counts are recounted from the chunks; the window ends at
// the last time the manifest was sealed. The directory itself is kept, so
// nothing is lost if the result is not what the user wanted.
func Recover(dir, output string) (*RecoverResult, error) {
	a, err := Open(dir)
	if err != nil {
		return nil, err
	}
	defer a.Close()
	m := cloneManifest(*a.Manifest())
	res := &RecoverResult{Output: output, Tables: map[string]int64{}}
	stage, err := os.MkdirTemp(filepath.Dir(output), ".recover-")
	if err != nil {
		return nil, fmt.Errorf("recover: %w", err)
	}
	defer os.RemoveAll(stage)
	for table, cs := range a.chunks {
		for _, c := range cs {
			pf, err := openChunk(c)
			if err != nil {
				res.Skipped = append(res.Skipped, c.name)
				continue
			}
			res.Tables[table] += pf.NumRows()
			// Hard links keep recovery cheap and leave dir untouched; fall
			// back to a copy across filesystems.
			src, dst := filepath.Join(dir, c.name), filepath.Join(stage, c.name)
			if err := os.Link(src, dst); err != nil {
				if err := copyFile(src, dst); err != nil {
					return nil, fmt.Errorf("recover: %w", err)
				}
			}
		}
	}
	m.Tables = res.Tables
	if !m.Complete {
		m.Window.EndReason = "crash"
		m.Warnings = append(m.Warnings, "capture did not finish (crash or kill); recovered from sealed chunks, up to the last second of data may be missing")
	}
	if len(res.Skipped) > 0 {
		m.Warnings = append(m.Warnings, "unreadable chunks left out by recover: "+strings.Join(res.Skipped, ", "))
	}
	m.Complete = true
	m.Recovered = true
	data, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(stage, ManifestName), data, 0o640); err != nil {
		return nil, fmt.Errorf("recover: %w", err)
	}
	if err := Bundle(stage, output); err != nil {
		return nil, err
	}
	return res, nil
}

func copyFile(src, dst string) error {
	data, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	return os.WriteFile(dst, data, 0o640)
}
