package main

import (
	"io"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"
)

// openOutput returns where a verb writes: standard output when path is
// empty, otherwise a temporary file beside path that finish renames into
// place, so a failed run never leaves a truncated file under the final name.
func openOutput(cmd *cobra.Command, path string) (io.Writer, func(error) error, error) {
	if path == "" || path == "-" {
		return cmd.OutOrStdout(), func(err error) error { return err }, nil
	}
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return nil, nil, err
	}
	finish := func(err error) error {
		if err == nil {
			err = f.Chmod(0o644) // CreateTemp's 0600 would hide a report from its readers
		}
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err == nil {
			err = os.Rename(f.Name(), path)
		}
		if err != nil {
			os.Remove(f.Name())
		}
		return err
	}
	return f, finish, nil
}
