package main

import (
	"io"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/bpfsnap/bpfsnap/analyze"
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

// writeCPU is the path of the verbs that draw one archive's CPU profile:
// load it (CPU section only), refuse an archive or filter without samples
// before creating the output file, then render into path.
func writeCPU(cmd *cobra.Command, archive, path string, flags *analysisFlags, render func(io.Writer, *analyze.Summary) error) error {
	return writeSection(cmd, archive, path, flags, analyze.SectionCPU, func(s *analyze.Summary) error {
		_, err := s.RequireCPU()
		return err
	}, render)
}

// writeSection analyzes one section of an archive, checks it has data
// (require), and renders it to path (stdout when empty).
func writeSection(cmd *cobra.Command, archive, path string, flags *analysisFlags, section analyze.Sections, require func(*analyze.Summary) error, render func(io.Writer, *analyze.Summary) error) error {
	s, err := analyze.Load(archive, flags.request(section))
	if err != nil {
		return err
	}
	if err := require(s); err != nil {
		return err
	}
	w, finish, err := openOutput(cmd, path)
	if err != nil {
		return err
	}
	return finish(render(w, s))
}

// writeGrowth is writeCPU for the memory growth section (-p growth).
func writeGrowth(cmd *cobra.Command, archive, path string, flags *analysisFlags, render func(io.Writer, *analyze.Summary) error) error {
	return writeSection(cmd, archive, path, flags, analyze.SectionGrowth, func(s *analyze.Summary) error {
		_, err := s.RequireGrowth()
		return err
	}, render)
}
