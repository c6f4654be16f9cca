package main

import "github.com/bpfsnap/bpfsnap/capture"

// runHeldChildIfAsked turns this process into the held child of
// `capture -- COMMAND` when the recorder started it as one.
func runHeldChildIfAsked() {
	if capture.IsHeldChild() {
		capture.RunHeldChild()
	}
}
