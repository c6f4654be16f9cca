package formats

import "sort"

// DropClass says what a counter of the manifest's Drops means for the data:
// whether something is missing from the archive, only partly recorded, or
// merely noted. The status line, inspect, analyze and the report keep the
// classes apart, so a stack cut short is never read as an event lost.
type DropClass string

const (
	// DropLost counts events that never reached the archive (a ring or a
	// kernel map was full).
	DropLost DropClass = "lost"
	// DropIncomplete counts rows that are in the archive but partly: a stack
	// that stops early, a frame without a name, a request without response.
	DropIncomplete DropClass = "incomplete"
	// DropNoted counts things worth knowing that lose nothing (a
	// retransmission counted once, a pair made in user space).
	DropNoted DropClass = "noted"
)

// DropReason is one counter name with its one meaning. The catalog below is
// the only place a reason is described; the recorder's kernel counters are
// named from it by index of their C enum (each probe set checks that in a
// test), so the C source, the recorder and every reader agree.
type DropReason struct {
	Name    string    `json:"name"`
	Class   DropClass `json:"class"`
	Meaning string    `json:"meaning"`
}

// unwindStops are the reasons a user-stack walk ends early
// (internal/unwind's stop reasons other than "end"); cpu and mem count them
// under their own prefix.
var unwindStops = []struct{ reason, meaning string }{
	{"no_module", "stopped at code outside any mapped file (JIT, vdso) that neither a frame pointer nor its epilogue could unwind, or at an address no longer mapped (a sample taken inside exec); kept up to there"},
	{"no_cfi", "stopped at a function without unwind info (.eh_frame) that neither a frame pointer nor its epilogue could unwind; kept up to there"},
	{"outside_stack", "were deeper than the copied stack (--stack-size) and the kernel's frame-pointer walk could not continue them; kept up to there"},
	{"depth", "were cut at the depth limit"},
	{"loop", "stopped at a corrupt frame (stack pointer did not move); kept up to there"},
	{"bad_cfi", "stopped at malformed unwind info; kept up to there"},
	{"unknown_register", "stopped at a frame whose unwind rule needs a register not sampled; kept up to there"},
	{"bad_frame_pointer", "stopped at a frame without unwind info whose frame pointer did not point into the stack (code built without frame pointers); kept up to there"},
	{"bad_return_address", "stopped where a return address was outside executable code or did not follow a call (a frame pointer that was not one, or a corrupt stack); kept up to there"},
	{"fp_untrusted", "had the kernel's frame-pointer walk cut where it left executable code (archives of earlier versions; now bad_return_address); kept up to there"},
}

var dropCatalog = func() map[string]DropReason {
	list := []DropReason{
		{"capture.warnings_suppressed", DropNoted, "further capture warnings were not kept (the first 100 are listed)"},
		{"process.ringbuf_full", DropLost, "process events (fork, exec, exit) were lost: the ring buffer was full"},
		{"process.cmdline_redacted", DropNoted, "command-line values that looked like secrets (passwords, tokens, keys, URL userinfo) were replaced by <redacted> before writing (capture --keep-cmdline keeps them)"},
		{"process.targets_full", DropLost, "forked children of targets were not followed: the kernel's target map was full"},
		{"k8s.unresolved", DropIncomplete, "process rows have no pod or container: their cgroup was gone before it could be resolved"},
		{"stacks.unsymbolized_frames", DropIncomplete, "distinct stack frames could not be symbolized (shown as module+offset)"},
		{"cpu.ringbuf_full", DropLost, "CPU samples were lost: the ring buffer was full"},
		{"cpu.kernel_stack_failed", DropIncomplete, "CPU samples have no kernel stack (the kernel could not walk it)"},
		{"cpu.user_stack_failed", DropIncomplete, "CPU samples have no user stack (the kernel could not walk it)"},
		{"cpu.user_regs_missing", DropIncomplete, "samples had no user registers (no user stack copied)"},
		{"http.ringbuf_full", DropLost, "HTTP messages were lost: the ring buffer was full"},
		{"http.pending_full", DropNoted, "HTTP requests were paired in user space because the kernel's pending table was full (not lost; recorders before format 2)"},
		{"http.no_storage", DropLost, "HTTP connections were not followed: the kernel had no memory for their state"},
		{"http.framing_gap", DropIncomplete, "HTTP connections had bytes go by unseen where a message was due (lost or reordered segments): their messages were missed until one started a segment"},
		{"http.head_too_long", DropIncomplete, "HTTP message heads were longer than 2 KiB: their connection's messages were missed until one started a segment"},
		{"http.head_split", DropIncomplete, "HTTP message heads were split across segments inside a framing header (Content-Length, Transfer-Encoding): their connection's messages were missed until one started a segment"},
		{"http.chunks_overflow", DropIncomplete, "TCP segments held more chunks of a chunked HTTP body than the kernel walks (128): their connection's messages were missed until one started a segment"},
		{"http.messages_overflow", DropIncomplete, "TCP segments held more HTTP messages than the kernel frames (32): the rest of the segment was skipped"},
		{"http.unexpected_bytes", DropIncomplete, "where an HTTP message was due, the bytes started none (a body longer than declared, or not HTTP/1.x): the connection's messages were missed until one started a segment"},
		{"http.bad_chunk", DropIncomplete, "chunked HTTP bodies had a malformed chunk-size line: their connection's messages were missed until one started a segment"},
		{"http.joined_midstream", DropNoted, "HTTP connections were first seen in the middle of a message (they began before the window): followed from their next message"},
		{"http.upgraded", DropNoted, "HTTP connections switched protocols (101 Switching Protocols) and were no longer read as HTTP/1.x"},
		{"http.response_end_unknown", DropIncomplete, "HTTP responses' last byte was not seen (the window ended inside the body, or framing was lost): in the time-to-first-byte figures, not in the end-to-end ones"},
		{"http.no_response", DropIncomplete, "HTTP requests had no response before the window ended"},
		{"http.response_without_request", DropIncomplete, "HTTP responses had no request in the window (connection began earlier); not counted as requests"},
		{"http.unparsed", DropIncomplete, "HTTP-looking messages could not be parsed"},
		{"http.truncated_path", DropIncomplete, "HTTP paths were longer than the captured bytes and are cut"},
		{"http.unattributed", DropIncomplete, "HTTP requests could not be attributed to a process (no message seen in the owner's context); a targeted capture leaves them out"},
		{"http.coalesced", DropIncomplete, "TCP segments carried more than one HTTP message; only the first of each was seen, so pairing on those connections may be off (recorders before format 2)"},
		{"http.retransmitted", DropNoted, "TCP segments of HTTP connections were seen again (retransmissions) and framed once (not lost)"},
		{"http.pipeline_overflow", DropLost, "HTTP requests were dropped from pairing: more than 64 waited for responses on one connection"},
		{"http.state_evicted", DropIncomplete, "HTTP connections' user-space state was evicted (too many open connections); their later messages may be unpaired"},
		{"http.h2_bad_frame", DropIncomplete, "HTTP/2 frame headers made no sense where one was due (framing lost): the direction's frames were missed until a segment started with frames"},
		{"http.h2_frames_overflow", DropIncomplete, "TCP segments held more HTTP/2 frames than the kernel walks (256): the direction's frames were missed until a segment started with frames"},
		{"http.h2_block_cut", DropIncomplete, "HTTP/2 header blocks were longer than the kernel copies per segment (4 KiB): their stream's fields may be unknown, and the direction's HPACK decoder started afresh"},
		{"http.h2_streams_full", DropIncomplete, "HTTP/2 streams sent DATA while 16 others of the same direction were open: their byte counts are too low"},
		{"http.h2_joined", DropNoted, "HTTP/2 connections were recognised by their frames rather than their preface (they began before the window, or their server spoke first) and followed from there"},
		{"http.h2_upgraded", DropNoted, "HTTP/1.1 connections were upgraded to HTTP/2 (h2c) and followed as HTTP/2"},
		{"http.h2_block_broken", DropIncomplete, "HTTP/2 header blocks were seen incomplete (framing lost inside them): their stream's fields are unknown"},
		{"http.h2_decoder_reset", DropNoted, "HTTP/2 header blocks referred to HPACK table entries from before the window (or were incomplete): the direction's decoder started afresh; fields it could not decode are left unknown, never guessed"},
		{"http.h2_streams_overflow", DropLost, "HTTP/2 streams were not followed: more than 4096 were open on one connection"},
		{"http.h2_name_unknown", DropIncomplete, "HTTP/2 requests whose path could not be decoded (HPACK state from before the window) and that no Go uprobe named: counted under the route [h2 name unknown]"},
		{"http.h2_status_unknown", DropIncomplete, "HTTP/2 responses or trailers whose :status or grpc-status could not be decoded: not counted as errors"},
		{"http.tls_state_full", DropLost, "TLS connections were not followed: the kernel's table of TLS connections (16384) was full"},
		{"http.tls_read_fault", DropLost, "TLS plaintext could not be read from the application's memory: those bytes were not framed"},
		{"http.tls_undecoded", DropIncomplete, "TCP connections carried TLS that no TLS probe decoded (a TLS library bpfsnap does not cover: statically linked BoringSSL, Java's JSSE, rustls...): their requests are not in the archive"},
		{"http.tls_idle", DropNoted, "TCP connections carried TLS for a process whose TLS library is probed but were never written to in a TLS call: handshakes only, or idle in the window"},
		{"http.tls_unbound", DropNoted, "TLS connections whose socket was never seen written during a TLS call: their rows have no addresses"},
		{"mem.ringbuf_full", DropLost, "allocator events were lost: the ring buffer was full"},
		{"mem.inflight_full", DropLost, "allocations were lost: the kernel's table of calls in progress was full"},
		{"mem.stack_failed", DropIncomplete, "allocations have no stack (the walk failed)"},
		{"mem.sampled_set_full", DropLost, "sampled allocations were dropped: the kernel's set of live sampled blocks was full"},
		{"mem.user_regs_missing", DropIncomplete, "allocations had no user registers (no user stack copied)"},
		{"growth.ringbuf_full", DropLost, "memory growth events were lost: the ring buffer was full (growth_totals still counts their bytes)"},
		{"growth.kernel_stack_failed", DropIncomplete, "memory growth events have no kernel stack (the kernel could not walk it)"},
		{"growth.user_regs_missing", DropIncomplete, "memory growth events had no user registers (no user stack)"},
		{"growth.unmeasured", DropNoted, "resident-set changes came before the recorder had a reading of the process's counters on their CPU: each was counted as one page"},
		{"growth.totals_full", DropLost, "processes had no exact growth total: the kernel's table of processes was full (their sampled events are still recorded)"},
		{"offcpu.ringbuf_full", DropLost, "off-CPU intervals were lost: the ring buffer was full"},
		{"offcpu.stack_ringbuf_full", DropIncomplete, "off-CPU stacks could not be sent (ring buffer full); each is sent again at its next use, intervals before that have no stack"},
		{"offcpu.thread_state_failed", DropLost, "threads were not followed off CPU: the kernel could not allocate their state"},
		{"offcpu.kernel_stack_failed", DropIncomplete, "off-CPU intervals have no kernel stack (the kernel could not walk it)"},
		{"offcpu.stack_missing", DropIncomplete, "off-CPU intervals have no stack: the stack's record was lost"},
		{"offcpu.cgroup_unreadable", DropIncomplete, "cgroups' CPU throttling counters (cpu.stat) could not be read at the start or the end"},
	}
	for _, u := range unwindStops {
		list = append(list,
			DropReason{"cpu.unwind_" + u.reason, DropIncomplete, "user stacks " + u.meaning},
			DropReason{"mem.unwind_" + u.reason, DropIncomplete, "allocation stacks " + u.meaning},
			DropReason{"growth.unwind_" + u.reason, DropIncomplete, "memory growth stacks " + u.meaning},
			DropReason{"offcpu.unwind_" + u.reason, DropIncomplete, "off-CPU stacks " + u.meaning})
	}
	m := make(map[string]DropReason, len(list))
	for _, r := range list {
		if _, dup := m[r.Name]; dup {
			panic("formats: drop reason listed twice: " + r.Name)
		}
		m[r.Name] = r
	}
	return m
}()

// LookupDrop returns the catalog entry of a counter. A name the catalog does
// not know (an archive written by a newer recorder) is taken as events lost,
// the cautious reading, with no meaning.
func LookupDrop(name string) (DropReason, bool) {
	if r, ok := dropCatalog[name]; ok {
		return r, true
	}
	return DropReason{Name: name, Class: DropLost}, false
}

// DropReasons lists the catalog, sorted by name (for docs and tests).
func DropReasons() []DropReason {
	out := make([]DropReason, 0, len(dropCatalog))
	for _, r := range dropCatalog {
		out = append(out, r)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// DropNames returns the catalog names of a probe set's kernel counters in
// the order of its C enum: prefix "cpu" and reasons "ringbuf_full",
// "kernel_stack_failed" give "cpu.ringbuf_full", "cpu.kernel_stack_failed".
// It panics on a name the catalog lacks, so a counter added to a C enum
// without a meaning fails the probe set's first test.
func DropNames(prefix string, reasons ...string) []string {
	out := make([]string, len(reasons))
	for i, r := range reasons {
		name := prefix + "." + r
		if _, ok := dropCatalog[name]; !ok {
			panic("formats: drop reason not in the catalog: " + name)
		}
		out[i] = name
	}
	return out
}
