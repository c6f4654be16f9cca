//go:build linux

package main

import (
	"strings"
	"testing"
	"time"

	"github.com/bpfsnap/bpfsnap/capture"
)

// The live status line keeps lost events apart from incomplete rows, with
// the lost share (issue #24: "5 dropped" on an idle machine were stacks
// whose unwind stopped early, and no event was lost).
func TestStatusLineKeepsLostApartFromIncomplete(t *testing.T) {
	idle := statusLine(capture.Status{Elapsed: 2 * time.Second, Total: 4 * time.Second, Events: 21, Incomplete: 5})
	if !strings.Contains(idle, "| 0 lost |") || !strings.Contains(idle, "| 5 incomplete |") || strings.Contains(idle, "dropped") {
		t.Errorf("idle capture: %q", idle)
	}
	busy := statusLine(capture.Status{Events: 990, Lost: 10})
	if !strings.Contains(busy, "10 lost (1%)") {
		t.Errorf("lossy capture: %q", busy)
	}
}
