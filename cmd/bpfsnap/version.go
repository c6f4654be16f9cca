package main

import (
	"fmt"
	"runtime"

	"github.com/spf13/cobra"

	"github.com/bpfsnap/bpfsnap/formats"
)

func newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the bpfsnap version and archive format version",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			fmt.Fprintf(cmd.OutOrStdout(), "bpfsnap %s (archive format %d, %s, %s/%s)\n",
				version, formats.FormatVersion, runtime.Version(), runtime.GOOS, runtime.GOARCH)
			return nil
		},
	}
}
