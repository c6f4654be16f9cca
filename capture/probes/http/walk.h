// The framing functions that read the bytes. http.bpf.c includes this file
// once per source, with:
//   SRC_T  the type of the first argument (struct __sk_buff for the wire,
//          struct pt_regs for a TLS library's plaintext),
//   FN(x)  the name of this source's copy of function x,
//   LOAD(src, sc, off, dst, n)  n bytes at payload offset off into dst.
// The global functions (__noinline, not static) are verified once each,
// whatever their callers' states; the loops run in bpf_loop callbacks.

struct FN(frame_ctx) {
	SRC_T *src;
	struct http_sock *st;
	struct scratch *sc;
};

// load_head copies up to HEAD_MAX bytes from the walk position into
// sc->head after the k bytes already there (a direction's stash); it
// returns how many bytes the head then holds, 0 on failure.
static __always_inline __u32 FN(load_head)(SRC_T *src, struct scratch *sc, __u32 k)
{
	__u32 pos = sc->ws.pos;
	k &= 15;
	if (pos >= sc->ws.len)
		return 0;
	__u32 n = sc->ws.len - pos;
	if (n > HEAD_MAX - k)
		n = HEAD_MAX - k;
	// n is 1..HEAD_MAX; the mask, opaque to the compiler, makes the
	// verifier see those bounds on the very register passed as the size.
	n -= 1;
	asm volatile("%[n] &= 0x7ff" : [n] "+r"(n));
	n += 1;
	if (LOAD(src, sc, pos, sc->head + k, n))
		return 0;
	return k + n;
}

// ---- HTTP/2 recognition ----------------------------------------------------------

// chain_step checks one frame header of a chain starting at the walk
// position.
static long FN(chain_step)(__u32 i, void *ctx)
{
	struct FN(frame_ctx) *f = ctx;
	struct walk_state *ws = &f->sc->ws;
	__u32 p = ws->chain_pos;
	if (p >= ws->len) {
		// The chain ends with the segment, or its last frame goes on in
		// the next one.
		ws->chain_ok = p == ws->len ? ws->chain_n >= 1 : ws->chain_n >= 2;
		return 1;
	}
	if (p + 9 > ws->len) {
		ws->chain_ok = ws->chain_n >= 2;
		return 1;
	}
	__u32 len;
	if (LOAD(f->src, f->sc, p, ws->hb, 9) || !h2_header_ok(ws->hb, &len)) {
		ws->chain_ok = 0;
		return 1;
	}
	ws->chain_n++;
	ws->chain_pos = p + 9 + len;
	if (i == H2_CHAIN_MAX - 1)
		ws->chain_ok = 1; // that many valid headers in a row
	return 0;
}

// h2_chain tells (in ws.chain_ok) whether the bytes from the walk position
// are a chain of HTTP/2 frames: how a connection that began before the
// window is recognised (RFC 9113's rules on each frame type's stream,
// length and flags make random bytes fail within a header or two).
__noinline int FN(h2_chain)(SRC_T *src, struct scratch *sc)
{
	if (!src || !sc)
		return 0;
	struct FN(frame_ctx) f = {.src = src, .sc = sc};
	sc->ws.chain_pos = sc->ws.pos;
	sc->ws.chain_n = 0;
	sc->ws.chain_ok = 0;
	bpf_loop(H2_CHAIN_MAX, FN(chain_step), &f, 0);
	return 0;
}

// preface_at tells whether the client connection preface is at payload
// offset at (it is then copied in ws.hb).
static __always_inline int FN(preface_at)(SRC_T *src, struct scratch *sc, __u32 at)
{
	struct walk_state *ws = &sc->ws;
	char first[4];
	return ws->len >= at + H2_PREFACE_LEN && !LOAD(src, sc, at, first, 4) && first[0] == 'P' && first[1] == 'R' &&
	       first[2] == 'I' && !LOAD(src, sc, at, ws->hb, H2_PREFACE_LEN) && is_preface((const __u64 *)ws->hb);
}

// ---- HTTP/1.x messages ------------------------------------------------------------

// begin_message frames the message whose head starts at the walk
// position; it returns 0 when the walk goes on in this segment. The HTTP/2
// preface, or frames where a direction's first message was due, make the
// direction HTTP/2 (the walk then goes on in walk_h2).
__noinline int FN(begin_message)(SRC_T *src, struct http_sock *st, struct scratch *sc)
{
	if (!src || !st || !sc)
		return 1;
	struct walk_state *ws = &sc->ws;
	struct http_dir *d = DIR(st, sc);
	if (ws->pos >= ws->len)
		return 1;
	__u32 avail = ws->len - ws->pos;
	__u32 stash = d->stash_n & 15;
	if (avail == 9 && !stash && ws->pos == 0 && (d->mode == MODE_NEW || d->mode == MODE_LOST)) {
		// Exactly one HTTP/2 frame header: how Go's framer reads a
		// connection (header, then payload), here one that began before
		// the window, through a TLS library.
		__u32 l;
		if (!LOAD(src, sc, 0, ws->hb, 9) && h2_header_ok(ws->hb, &l)) {
			struct http_dir *peer = d == &st->dir[0] ? &st->dir[1] : &st->dir[0];
			if (peer->mode < MODE_H2)
				counted(st, HTTP_DROP_H2_JOINED);
			h2_start(st, d, ws->seq);
			return 1;
		}
	}
	if (stash + avail < 16) {
		// Too few bytes to tell what they start: kept for the next
		// segment (or read).
		if (!stash)
			d->stash_ns = ws->now;
		__u32 k = avail - 1; // 1..15
		asm volatile("%[k] &= 0xf" : [k] "+r"(k));
		k += 1;
		if (LOAD(src, sc, ws->pos, d->stash + stash, k))
			return lost(st, d, HTTP_DROP_HEAD_SPLIT);
		d->stash_n = stash + avail;
		ws->pos = ws->len;
		return 1;
	}
	__u64 t = ws->now;
	if (stash) {
		__builtin_memcpy(sc->head, d->stash, 16);
		t = d->stash_ns;
	}
	d->stash_n = 0;
	__u32 n = FN(load_head)(src, sc, stash);
	if (n < 16)
		return lost(st, d, HTTP_DROP_HEAD_SPLIT);
	const char *first = sc->head;
	if (first[0] == 'P' && first[1] == 'R' && first[2] == 'I' && first[3] == ' ' && n >= H2_PREFACE_LEN &&
	    is_preface((const __u64 *)sc->head)) {
		__u32 used = H2_PREFACE_LEN - stash;
		h2_start(st, d, ws->seq + ws->pos + used);
		d->h2_preface = 1;
		ws->pos += used;
		return 1; // walk_h2 goes on
	}
	__u8 kind = classify(first);
	if (!kind) {
		if ((d->mode == MODE_NEW || d->mode == MODE_LOST) && ws->pos == 0 && !stash) {
			FN(h2_chain)(src, sc);
			if (ws->chain_ok) {
				struct http_dir *peer = d == &st->dir[0] ? &st->dir[1] : &st->dir[0];
				if (peer->mode < MODE_H2)
					counted(st, HTTP_DROP_H2_JOINED);
				h2_start(st, d, ws->seq);
				return 1;
			}
		}
		if (d->mode == MODE_NEW)
			counted(st, HTTP_DROP_JOINED);
		else if (d->mode != MODE_LOST)
			counted(st, HTTP_DROP_UNEXPECTED);
		d->mode = MODE_LOST;
		return 1;
	}
	struct head_scan *hs = &sc->hs;
	__builtin_memset(hs, 0, sizeof(*hs));
	hs->n = n;
	scan_head(sc, CARRY_MID_LINE);
	__s64 clen = -1;
	__u8 chunked = 0, no_body = 0;
	if (hs->end && head_framing(sc, &clen, &chunked))
		return lost(st, d, HTTP_DROP_HEAD_SPLIT);
	d->msg_ns = t;
	d->written_ns = ws->owner ? ws->wrote_ns : 0;
	d->writer_tid = ws->owner ? (__u32)bpf_get_current_pid_tgid() : 0;
	d->ctx = 0;
	d->is_response = 0;
	if (kind == HTTP_REQUEST) {
		on_request(st, sc, clen, t);
	} else {
		__u16 status = 0;
		if (n >= 12) {
			char c0 = sc->head[9], c1 = sc->head[10], c2 = sc->head[11];
			if (c0 >= '1' && c0 <= '9' && c1 >= '0' && c1 <= '9' && c2 >= '0' && c2 <= '9')
				status = (c0 - '0') * 100 + (c1 - '0') * 10 + (c2 - '0');
		}
		d->status = status;
		if (status == 101) {
			// Switching protocols: HTTP/1.x ends here. An h2c upgrade
			// goes on with the client's preface and the server's
			// frames (its answer to the upgraded request is stream 1);
			// anything else (WebSocket) is never taken for frames.
			counted(st, HTTP_DROP_UPGRADED);
			if (st->held && !st->pipelined && st->mark != SOCK_OTHER) {
				struct http_event *e = new_event(sc, HTTP_REQUEST);
				fill_req(e, &st->req);
				send(e);
				st->held = 0;
			}
			st->dir[0].mode = MODE_H2_LOST;
			st->dir[1].mode = MODE_H2_LOST;
			if (hs->end && hs->end < n) {
				ws->pos += hs->end - stash;
				FN(h2_chain)(src, sc);
				if (ws->chain_ok) {
					counted(st, HTTP_DROP_UPGRADED_H2);
					d->mode = MODE_H2;
					d->body_end = ws->seq + ws->pos;
					d->h2_in_frame = 0;
					d->h2_hn = 0;
				}
			}
			return 1;
		}
		if (status >= 200 || status == 0) {
			// A final response answers the oldest outstanding request.
			d->is_response = 1;
			__u8 was_head = st->head_fifo & 1;
			if (st->head_n) {
				st->head_fifo >>= 1;
				st->head_n--;
			}
			if (ws->egress || ws->proc)
				set_ctx(&d->ctx_cgroup, &d->ctx_pid, &d->ctx_tid, &d->ctx);
			no_body = was_head || status == 204 || status == 304;
		} else {
			no_body = 1; // 1xx interim: the final response follows
		}
	}
	if (!hs->end) {
		if (n >= HEAD_MAX)
			return lost(st, d, HTTP_DROP_HEAD_TOO_LONG);
		if (head_framing(sc, &clen, &chunked))
			return lost(st, d, HTTP_DROP_HEAD_SPLIT);
		// The head goes on in the next segment.
		d->mode = MODE_HEAD;
		d->carry = hs->carry;
		d->head_clen = clen;
		d->head_chunked = chunked;
		d->no_body = no_body;
		return 1;
	}
	ws->pos += hs->end - stash;
	if (no_body)
		return start_body(st, sc, 0, 0);
	return start_body(st, sc, clen, chunked);
}

// continue_head goes on scanning a head begun in an earlier segment.
__noinline int FN(continue_head)(SRC_T *src, struct http_sock *st, struct scratch *sc)
{
	if (!src || !st || !sc)
		return 1;
	struct http_dir *d = DIR(st, sc);
	__u32 n = FN(load_head)(src, sc, 0);
	if (!n)
		return lost(st, d, HTTP_DROP_HEAD_SPLIT);
	struct head_scan *hs = &sc->hs;
	__builtin_memset(hs, 0, sizeof(*hs));
	hs->n = n;
	hs->first_lf = 1; // the start line was in the first segment
	scan_head(sc, d->carry);
	__s64 clen = d->head_clen;
	__u8 chunked = d->head_chunked;
	if ((!hs->end && n == HEAD_MAX) || head_framing(sc, &clen, &chunked))
		return lost(st, d, HTTP_DROP_HEAD_SPLIT);
	if (!hs->end) {
		d->carry = hs->carry;
		d->head_clen = clen;
		d->head_chunked = chunked;
		return 1;
	}
	sc->ws.pos += hs->end;
	if (d->no_body)
		return start_body(st, sc, 0, 0);
	return start_body(st, sc, clen, chunked);
}

// chunk_step reads one byte of a chunked body's framing (size lines,
// trailers), or skips a chunk's data; it stops the loop when the segment
// is consumed (ws.done 0), the message ended (2) or a line is malformed (3).
static long FN(chunk_step)(__u32 i, void *ctx)
{
	struct FN(frame_ctx) *f = ctx;
	struct http_sock *st = f->st;
	struct scratch *sc = f->sc;
	struct walk_state *ws = &sc->ws;
	struct http_dir *d = DIR(st, sc);
	if (d->chunk_state == CH_DATA) {
		__s32 rel = (__s32)(d->body_end - ws->seq);
		if (rel < 0 || (__u32)rel >= ws->len) {
			ws->pos = ws->len;
			return 1;
		}
		ws->pos = rel;
		d->chunk_state = CH_SIZE;
		d->chunk_size = 0;
	}
	if (ws->pos >= ws->len)
		return 1;
	__u32 at = ws->pos - ws->cb_pos;
	if (ws->pos < ws->cb_pos || at >= ws->cb_n) {
		__u32 k = ws->len - ws->pos;
		if (k > 16)
			k = 16;
		k -= 1; // 1..16, as the verifier must see it
		asm volatile("%[k] &= 0xf" : [k] "+r"(k));
		k += 1;
		if (LOAD(f->src, sc, ws->pos, ws->cb, k)) {
			ws->done = 3;
			return 1;
		}
		ws->cb_pos = ws->pos;
		ws->cb_n = k;
		at = 0;
	}
	char c = ws->cb[at & 15];
	ws->pos++;
	switch (d->chunk_state) {
	case CH_SIZE: {
		int v = hexval(c);
		if (v >= 0 && d->chunk_size < (1ULL << 40)) {
			d->chunk_size = d->chunk_size * 16 + v;
			return 0;
		}
		if (c == ';' || c == ' ' || c == '\t') {
			d->chunk_state = CH_EXT;
			return 0;
		}
		if (c == '\r') {
			d->chunk_state = CH_LF;
			return 0;
		}
		if (c == '\n')
			break;
		ws->done = 3;
		return 1;
	}
	case CH_EXT:
		if (c == '\n')
			break;
		return 0;
	case CH_LF:
		if (c == '\n')
			break;
		ws->done = 3;
		return 1;
	case CH_TRAILER_LINE:
		if (c == '\r') {
			d->chunk_state = CH_END_LF;
			return 0;
		}
		if (c == '\n') {
			ws->done = 2;
			return 1;
		}
		d->chunk_state = CH_TRAILER;
		return 0;
	case CH_TRAILER:
		if (c == '\n')
			d->chunk_state = CH_TRAILER_LINE;
		return 0;
	case CH_END_LF:
		if (c == '\n') {
			ws->done = 2;
			return 1;
		}
		d->chunk_state = CH_TRAILER;
		return 0;
	default:
		ws->done = 3;
		return 1;
	}
	// A size line ended: the last chunk (0) is followed by trailers and
	// a blank line; any other by its data and CRLF.
	if (d->chunk_size == 0) {
		d->chunk_state = CH_TRAILER_LINE;
		return 0;
	}
	d->body += d->chunk_size;
	d->body_end = ws->seq + ws->pos + (__u32)d->chunk_size + 2;
	d->chunk_state = CH_DATA;
	return 0;
}

// walk_chunks frames a chunked body from the walk position; it returns 0
// when the message ended and the walk goes on in this segment.
__noinline int FN(walk_chunks)(SRC_T *src, struct http_sock *st, struct scratch *sc)
{
	if (!src || !st || !sc)
		return 1;
	struct http_dir *d = DIR(st, sc);
	struct FN(frame_ctx) f = {.src = src, .st = st, .sc = sc};
	sc->ws.done = 0;
	sc->ws.cb_n = 0;
	bpf_loop(MAX_CHUNK_STEPS, FN(chunk_step), &f, 0);
	__u8 done = sc->ws.done;
	sc->ws.done = 0;
	if (done == 2) {
		d->mode = MODE_IDLE;
		if (d->is_response)
			response_end(st, sc, sc->ws.now);
		return 0;
	}
	if (done == 3)
		return lost(st, d, HTTP_DROP_BAD_CHUNK);
	if (sc->ws.pos < sc->ws.len)
		return lost(st, d, HTTP_DROP_CHUNKS_OVERFLOW);
	return 1;
}

// frame_step frames from the walk position to the end of the next message
// (or of the segment); it stops the loop when the segment is consumed.
static long FN(frame_step)(__u32 i, void *ctx)
{
	struct FN(frame_ctx) *f = ctx;
	struct http_sock *st = f->st;
	struct scratch *sc = f->sc;
	struct walk_state *ws = &sc->ws;
	struct http_dir *d = DIR(st, sc);
	int stop = 0;
	if (ws->pos >= ws->len) {
		ws->done = 1;
		return 1;
	}
	switch (d->mode) {
	case MODE_BODY: {
		__u32 rel = d->body_end - ws->seq; // the body's end in this segment
		if ((__s32)rel < 0 || rel > ws->len) {
			stop = 1;
			break;
		}
		ws->pos = rel;
		d->mode = MODE_IDLE;
		if (d->is_response)
			response_end(st, sc, ws->now);
		break;
	}
	case MODE_CHUNKED:
		stop = FN(walk_chunks)(f->src, st, sc);
		break;
	case MODE_CLOSE:
		d->body += ws->len - ws->pos;
		d->last_ns = ws->now;
		stop = 1;
		break;
	case MODE_HEAD:
		stop = FN(continue_head)(f->src, st, sc);
		break;
	case MODE_LOST:
		// Only a segment that starts like a message resynchronizes.
		if (ws->pos != 0) {
			stop = 1;
			break;
		}
		stop = FN(begin_message)(f->src, st, sc);
		break;
	case MODE_NEW:
	case MODE_IDLE:
		stop = FN(begin_message)(f->src, st, sc);
		break;
	default: // not HTTP/1.x: MODE_OFF, MODE_TLS, HTTP/2 (walk_h2 goes on)
		stop = 1;
	}
	if (stop) {
		ws->done = 1;
		return 1;
	}
	return 0;
}

// ---- HTTP/2 frames ------------------------------------------------------------

// h2_fragment sends the header block bytes of the frame in progress from
// the walk position to stop_at (ends: the frame's last byte is there).
__noinline int FN(h2_fragment)(SRC_T *src, struct http_sock *st, struct scratch *sc, __u32 stop_at, __u8 ends)
{
	if (!src || !st || !sc)
		return 0;
	struct walk_state *ws = &sc->ws;
	struct http_dir *d = DIR(st, sc);
	if (st->mark == SOCK_OTHER)
		return 0;
	__u32 n = stop_at > ws->pos ? stop_at - ws->pos : 0;
	if (!n && !ends)
		return 0; // the header only (a TLS read may end there): its bytes come next
	struct h2_event *e = h2_record(sc, d, HTTP_H2_FRAME);
	e->frag_off = ws->seq + ws->pos - (d->body_end - d->h2_len);
	e->last = ends;
	if (n > H2_FRAG_MAX) {
		n = H2_FRAG_MAX;
		e->cut = 1;
		counted(st, HTTP_DROP_H2_BLOCK_CUT);
	}
	if (n > 0) {
		__u32 m = n - 1;
		asm volatile("%[m] &= 0xfff" : [m] "+r"(m));
		m += 1;
		if (LOAD(src, sc, ws->pos, e->data, m)) {
			e->cut = 1;
			n = 0;
			counted(st, HTTP_DROP_H2_BLOCK_CUT);
		}
	}
	e->n = n;
	if (ends && d->h2_type == H2_HEADERS && (d->h2_flags & H2_END_STREAM))
		e->data_bytes = h2_stream_sum(st, d, d->h2_stream, -1);
	h2_send(e);
	return 0;
}

// h2_reset sends a RST_STREAM whose last byte is at stop_at.
static __always_inline void FN(h2_reset)(SRC_T *src, struct http_sock *st, struct scratch *sc, __u32 stop_at)
{
	struct http_dir *d = DIR(st, sc);
	if (st->mark == SOCK_OTHER)
		return;
	struct h2_event *e = h2_record(sc, d, HTTP_H2_FRAME);
	e->rst_code = 0xffffffff; // unknown: the code began in an earlier segment
	__u8 code[4];
	if (d->h2_len == 4 && stop_at >= 4 && (__s32)(d->body_end - sc->ws.seq) == (__s32)stop_at &&
	    !LOAD(src, sc, stop_at - 4, code, 4))
		e->rst_code = ((__u32)code[0] << 24) | ((__u32)code[1] << 16) | ((__u32)code[2] << 8) | code[3];
	e->data_bytes = h2_stream_sum(st, d, d->h2_stream, -1);
	e->last = 1;
	h2_send(e);
}

// h2_header reads the frame header at the walk position, or the part of
// it in this segment; it returns 1 when the walk stops.
__noinline int FN(h2_header)(SRC_T *src, struct http_sock *st, struct scratch *sc)
{
	if (!src || !st || !sc)
		return 1;
	struct walk_state *ws = &sc->ws;
	struct http_dir *d = DIR(st, sc);
	__u32 hn = d->h2_hn;
	if (hn > 8)
		return h2_lost(st, d, HTTP_DROP_H2_BAD_FRAME);
	__u32 need = 9 - hn;
	__u32 avail = ws->len - ws->pos;
	__builtin_memcpy(ws->hb, d->h2_hdr, 16);
	if (hn == 0)
		d->h2_frame_ns = ws->now;
	if (avail < need) {
		// The header goes on in the next segment.
		__u32 k = avail - 1; // 1..8
		asm volatile("%[k] &= 0x7" : [k] "+r"(k));
		k += 1;
		if (LOAD(src, sc, ws->pos, d->h2_hdr + (hn & 7), k))
			return h2_lost(st, d, HTTP_DROP_H2_BAD_FRAME);
		d->h2_hn = hn + avail;
		d->body_end = ws->seq + ws->len;
		ws->pos = ws->len;
		return 1;
	}
	__u32 k = need - 1; // 1..9
	asm volatile("%[k] &= 0xf" : [k] "+r"(k));
	k += 1;
	if (LOAD(src, sc, ws->pos, ws->hb + (hn & 15), k))
		return h2_lost(st, d, HTTP_DROP_H2_BAD_FRAME);
	const __u8 *b = ws->hb;
	__u32 len = ((__u32)b[0] << 16) | ((__u32)b[1] << 8) | b[2];
	__u8 type = b[3];
	__u32 sid = (((__u32)b[5] << 24) | ((__u32)b[6] << 16) | ((__u32)b[7] << 8) | b[8]) & 0x7fffffff;
	if (type >= H2_TYPE_MAX || (sid == 0 && (type == H2_DATA || type == H2_HEADERS || type == H2_CONTINUATION ||
						 type == H2_RST_STREAM)))
		return h2_lost(st, d, HTTP_DROP_H2_BAD_FRAME);
	d->h2_hn = 0;
	d->h2_type = type;
	d->h2_flags = b[4];
	d->h2_stream = sid;
	d->h2_len = len;
	d->h2_in_frame = 1;
	ws->pos += need;
	d->body_end = ws->seq + ws->pos + len;
	if (type == H2_DATA && st->mark != SOCK_OTHER) {
		__s64 bytes = len;
		if ((d->h2_flags & H2_PADDED) && len > 0) {
			__u8 pad = 0;
			if (ws->pos < ws->len && !LOAD(src, sc, ws->pos, &pad, 1) && pad < len)
				bytes = len - 1 - pad;
		}
		h2_stream_sum(st, d, sid, bytes);
	}
	return 0;
}

// h2_step walks one HTTP/2 frame, or the part of it in this segment.
static long FN(h2_step)(__u32 i, void *ctx)
{
	struct FN(frame_ctx) *f = ctx;
	struct http_sock *st = f->st;
	struct scratch *sc = f->sc;
	struct walk_state *ws = &sc->ws;
	struct http_dir *d = DIR(st, sc);
	__s32 rel = (__s32)(d->body_end - ws->seq); // the next frame header, in this segment's offsets
	if (d->h2_in_frame) {
		__u8 ends = rel <= (__s32)ws->len;
		__u32 stop_at = ends ? (rel > (__s32)ws->pos ? (__u32)rel : ws->pos) : ws->len;
		if (d->h2_type == H2_HEADERS || d->h2_type == H2_CONTINUATION)
			FN(h2_fragment)(f->src, st, sc, stop_at, ends);
		else if (d->h2_type == H2_RST_STREAM && ends)
			FN(h2_reset)(f->src, st, sc, stop_at);
		ws->pos = stop_at;
		if (!ends) {
			ws->done = 1;
			return 1;
		}
		h2_frame_end(st, sc, d);
		return 0;
	}
	if (ws->pos >= ws->len) {
		ws->done = 1;
		return 1;
	}
	if (rel != (__s32)ws->pos && d->h2_hn == 0) {
		// The next header is not where the walk is: past bytes seen
		// before (a partly retransmitted segment), or framing was lost.
		if (rel > (__s32)ws->pos && rel < (__s32)ws->len) {
			ws->pos = rel;
		} else {
			h2_lost(st, d, HTTP_DROP_H2_BAD_FRAME);
			ws->done = 1;
			return 1;
		}
	}
	if (FN(h2_header)(f->src, st, sc)) {
		ws->done = 1;
		return 1;
	}
	return 0;
}

// walk_h2 walks the HTTP/2 frames of the segment from the walk position.
__noinline int FN(walk_h2)(SRC_T *src, struct http_sock *st, struct scratch *sc)
{
	if (!src || !st || !sc)
		return 0;
	struct walk_state *ws = &sc->ws;
	struct http_dir *d = DIR(st, sc);
	if (d->mode == MODE_H2_SYNC || d->mode == MODE_H2_LOST) {
		// The client's preface may come after the server's first frames
		// (a server speaks first, as grpc-go does), or after an h2c
		// upgrade's 101.
		__u32 at = ws->pos;
		if (FN(preface_at)(src, sc, at)) {
			if (d->mode == MODE_H2_LOST)
				counted(st, HTTP_DROP_UPGRADED_H2);
			d->h2_preface = 1;
			ws->pos = at + H2_PREFACE_LEN;
			d->mode = MODE_H2_SYNC;
		}
	}
	if (d->mode == MODE_H2_SYNC) {
		d->mode = MODE_H2;
		d->body_end = ws->seq + ws->pos;
		d->h2_in_frame = 0;
		d->h2_hn = 0;
	} else if (d->mode == MODE_H2_LOST) {
		// Framing comes back at a segment that starts with frames; header
		// blocks were missed, so user space starts the direction's HPACK
		// state afresh.
		if (ws->pos != 0)
			return 0;
		FN(h2_chain)(src, sc);
		if (!ws->chain_ok)
			return 0;
		d->mode = MODE_H2;
		d->body_end = ws->seq;
		d->h2_in_frame = 0;
		d->h2_hn = 0;
		if (st->mark != SOCK_OTHER)
			h2_send(h2_record(sc, d, HTTP_H2_RESYNC));
	}
	if (d->mode != MODE_H2)
		return 0;
	struct FN(frame_ctx) f = {.src = src, .st = st, .sc = sc};
	ws->done = 0;
	bpf_loop(H2_MAX_FRAMES, FN(h2_step), &f, 0);
	if (!ws->done)
		h2_lost(st, d, HTTP_DROP_H2_FRAMES_OVERFLOW);
	return 0;
}

// walk_segment frames the segment described by sc->ws.
__noinline int FN(walk_segment)(SRC_T *src, struct http_sock *st, struct scratch *sc)
{
	if (!src || !st || !sc)
		return 0;
	struct http_dir *d = DIR(st, sc);
	if (d->mode < MODE_H2) {
		struct FN(frame_ctx) f = {.src = src, .st = st, .sc = sc};
		bpf_loop(MAX_MESSAGES, FN(frame_step), &f, 0);
		if (!sc->ws.done) {
			counted(st, HTTP_DROP_MESSAGES_OVERFLOW);
			d->mode = MODE_LOST;
		}
		if (d->mode == MODE_NEW)
			d->mode = MODE_LOST;
	}
	if (d->mode >= MODE_H2 && d->mode <= MODE_H2_LOST && sc->ws.pos < sc->ws.len)
		FN(walk_h2)(src, st, sc);
	return 0;
}
