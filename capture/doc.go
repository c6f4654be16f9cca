// Package capture is the recorder: it loads bpfsnap's eBPF probe sets into
// the running kernel, follows the targeted processes, and streams events into
// a formats.Writer. It is Linux-only; everything that reads archives lives in
// formats/, analyze/ and report/ and never imports this package.
package capture
