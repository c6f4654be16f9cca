package analyze

import (
	"bufio"
	"fmt"
	"io"
	"path"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/bpfsnap/bpfsnap/formats"
	"github.com/bpfsnap/bpfsnap/internal/safetext"
)

// KernelSuffix marks kernel frames in folded stacks, as perf's and
// FlameGraph's tools do, so renderers can colour them apart.
const KernelSuffix = "_[k]"

// InlinedSuffix marks frames of functions inlined into their caller (the
// next frame towards the root), as FlameGraph's stackcollapse-perf.pl
// --inline annotations do, so flame graphs can style them apart.
const InlinedSuffix = "_[i]"

// FoldedStack is one line of folded output: frame names root first (the
// first is the process), and the samples that had exactly that stack.
type FoldedStack struct {
	Frames []string `json:"frames"`
	Count  uint64   `json:"count"`
}

// FoldOptions tunes how stacks are folded.
type FoldOptions struct {
	// WithPID names the root frame "name-PID" instead of "name", keeping
	// processes with the same name apart (stackcollapse-perf's --pid).
	WithPID bool
}

// unknownFrame names a frame outside every mapping, or in anonymous code.
const unknownFrame = "[unknown]"

// FrameName is the display name of a frame: its function, or for an
// unresolved frame "module+0xoffset" ("[unknown]" without a module), with
// KernelSuffix on kernel frames and InlinedSuffix on inlined ones. The
// result is SafeFrameName-clean.
func FrameName(f *formats.Frame) string {
	var name string
	switch {
	case f.Function != "":
		name = f.Function
	case f.Kernel && f.Module != "":
		name = fmt.Sprintf("%s+0x%x", f.Module, f.Address)
	case f.Module != "" && f.Module != unknownFrame:
		name = fmt.Sprintf("%s+0x%x", path.Base(f.Module), f.FileOffset)
	default:
		// No mapping (earlier recorders wrote the module "[unknown]",
		// which read "[unknown]+0x0": one spelling for both).
		name = unknownFrame
	}
	name = SafeFrameName(name)
	if f.Kernel {
		name += KernelSuffix
	} else if f.Inlined {
		name += InlinedSuffix
	}
	return name
}

// FunctionName is FrameName without InlinedSuffix: the same function
// whether a frame ran it inlined or as a call of its own.
func FunctionName(f *formats.Frame) string {
	return strings.TrimSuffix(FrameName(f), InlinedSuffix)
}

// SafeFrameName makes a workload-supplied name safe inside a folded line:
// ';' (the frame separator) becomes ':', control and format characters
// (newlines would split the line, bidi overrides reorder it) become '?', invalid UTF-8 becomes U+FFFD. Spaces stay:
// the count is always the text after the last space of a line.
func SafeFrameName(s string) string {
	if safetext.PlainASCII(s) && !strings.Contains(s, ";") {
		if s == "" {
			return unknownFrame
		}
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			b.WriteRune(utf8.RuneError)
		case r == ';':
			b.WriteByte(':')
		case safetext.Unsafe(r):
			// Format characters too: a bidi override would reorder the
			// rest of the line on a terminal or in a flame graph label.
			b.WriteByte('?')
		default:
			b.WriteString(s[i : i+size])
		}
		i += size
	}
	return b.String()
}

// FoldFrames names a stack for a folded line: process first, then its
// frames root first (frames are given leaf first, as stored). Other stack
// profiles (e.g. outstanding bytes per allocation stack) fold with it and
// render with report.FlameTreeFromFolded.
func FoldFrames(process string, frames []*formats.Frame) []string {
	out := make([]string, 0, len(frames)+1)
	out = append(out, SafeFrameName(process))
	if len(frames) == 0 {
		return append(out, "[no stack]")
	}
	for i := len(frames) - 1; i >= 0; i-- {
		out = append(out, FrameName(frames[i]))
	}
	return out
}

// Folded aggregates the profile into folded stacks sorted by their text,
// like FlameGraph's stackcollapse tools. The root frame is the process name
// (ProcessName). Samples without a stack appear as "name;[no stack]".
func (p *CPUProfile) Folded(opts FoldOptions) []FoldedStack {
	names := map[*formats.Frame]string{}
	agg := map[string]*FoldedStack{}
	var key strings.Builder
	for i := range p.Stacks {
		s := &p.Stacks[i]
		root := SafeFrameName(p.StackProcess(s))
		if opts.WithPID {
			root = fmt.Sprintf("%s-%d", root, s.PID)
		}
		frames := make([]string, 0, len(s.Frames)+1)
		frames = append(frames, root)
		if len(s.Frames) == 0 {
			frames = append(frames, "[no stack]")
		}
		for i := len(s.Frames) - 1; i >= 0; i-- {
			f := s.Frames[i]
			n, ok := names[f]
			if !ok {
				n = FrameName(f)
				names[f] = n
			}
			frames = append(frames, n)
		}
		key.Reset()
		for i, f := range frames {
			if i > 0 {
				key.WriteByte(';')
			}
			key.WriteString(f)
		}
		k := key.String()
		if fs := agg[k]; fs != nil {
			fs.Count += s.Count
		} else {
			agg[k] = &FoldedStack{Frames: frames, Count: s.Count}
		}
	}
	keys := make([]string, 0, len(agg))
	for k := range agg {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	out := make([]FoldedStack, len(keys))
	for i, k := range keys {
		out[i] = *agg[k]
	}
	return out
}

// WriteFolded writes folded stacks, one "frame;frame;leaf COUNT" line each.
func WriteFolded(w io.Writer, stacks []FoldedStack) error {
	bw := bufio.NewWriterSize(w, 64<<10)
	var num [20]byte
	for _, s := range stacks {
		for i, f := range s.Frames {
			if i > 0 {
				bw.WriteByte(';')
			}
			bw.WriteString(f)
		}
		bw.WriteByte(' ')
		bw.Write(strconv.AppendUint(num[:0], s.Count, 10))
		bw.WriteByte('\n')
	}
	return bw.Flush()
}

// maxFoldedLine bounds one line of folded input.
const maxFoldedLine = 1 << 20

// ParseFolded reads folded stacks ("a;b;c 12" per line). Blank lines are
// skipped; a line without a count is an error naming its number.
func ParseFolded(r io.Reader) ([]FoldedStack, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), maxFoldedLine)
	var out []FoldedStack
	for ln := 1; sc.Scan(); ln++ {
		line := strings.TrimRight(sc.Text(), "\r")
		if strings.TrimSpace(line) == "" {
			continue
		}
		sp := strings.LastIndexByte(line, ' ')
		if sp < 0 {
			return nil, fmt.Errorf("folded line %d has no sample count", ln)
		}
		n, err := strconv.ParseUint(line[sp+1:], 10, 64)
		if err != nil {
			return nil, fmt.Errorf("folded line %d: count %q is not a number", ln, line[sp+1:])
		}
		out = append(out, FoldedStack{Frames: strings.Split(line[:sp], ";"), Count: n})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading folded stacks: %w", err)
	}
	return out, nil
}
