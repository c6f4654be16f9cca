//go:build linux

package mem

import (
	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"

	"github.com/bpfsnap/bpfsnap/capture/recorder"
)

// Requires lists what mem needs beyond every capture's features. uprobe.multi
// links (Linux 6.6) are not among them: without them each allocator function
// gets a classic uprobe of its own (attachUprobes).
func (*memProbe) Requires() []*recorder.Feature {
	return []*recorder.Feature{recorder.FeatureTaskStorage}
}

// singleUprobes reports whether this kernel lacks uprobe.multi links, so
// that mem attaches one classic uprobe per allocator function and process
// (Linux 6.1: Debian 12, Amazon Linux 2023, COS 105). Each call pays the
// same trap either way; what costs more is setting the probes up and
// tearing them down (about ten links per process instead of two).
func singleUprobes() bool { return recorder.FeatureUprobeMulti.Err() != nil }

// uprobeAttachType is the attach type mem's uprobe programs are loaded
// with: a program loaded for uprobe.multi links cannot be attached to a
// classic uprobe, and older kernels do not know the type.
func uprobeAttachType() ebpf.AttachType {
	if singleUprobes() {
		return ebpf.AttachNone
	}
	return ebpf.AttachTraceUprobeMulti
}

// loadAsSingleUprobes retypes the uprobe.multi programs of spec for
// classic uprobes, on kernels without uprobe.multi links.
func loadAsSingleUprobes(spec *ebpf.CollectionSpec) {
	for _, p := range spec.Programs {
		if p.AttachType == ebpf.AttachTraceUprobeMulti {
			p.AttachType = uprobeAttachType()
		}
	}
}

// attachUprobes attaches prog at every address of opts, in one process:
// one uprobe.multi link, or one classic uprobe per address (with the same
// cookie, so the program tells the functions apart the same way).
func attachUprobes(ex *link.Executable, prog *ebpf.Program, opts *link.UprobeMultiOptions, ret bool) ([]link.Link, error) {
	if !singleUprobes() {
		multi := ex.UprobeMulti
		if ret {
			multi = ex.UretprobeMulti
		}
		l, err := multi(nil, prog, opts)
		if err != nil {
			return nil, err
		}
		return []link.Link{l}, nil
	}
	single := ex.Uprobe
	if ret {
		single = ex.Uretprobe
	}
	var ls []link.Link
	for i, addr := range opts.Addresses {
		o := &link.UprobeOptions{Address: addr, PID: int(opts.PID)}
		if i < len(opts.Offsets) {
			o.Offset = opts.Offsets[i]
		}
		if i < len(opts.Cookies) {
			o.Cookie = opts.Cookies[i]
		}
		l, err := single("", prog, o)
		if err != nil {
			for _, l := range ls {
				l.Close()
			}
			return nil, err
		}
		ls = append(ls, l)
	}
	return ls, nil
}
