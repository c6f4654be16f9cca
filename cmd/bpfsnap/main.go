// Command bpfsnap captures a window of eBPF events on a Linux node into one
// archive and turns archives into latency tables, flame graphs, leak
// reports and an HTML report anywhere.
package main

import (
	"fmt"
	"os"

	"github.com/bpfsnap/bpfsnap/report"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	runHeldChildIfAsked()
	if err := newRootCmd().Execute(); err != nil {
		fmt.Fprintf(os.Stderr, "bpfsnap: %s\n", report.TerminalSafe(err.Error()))
		os.Exit(1)
	}
}
