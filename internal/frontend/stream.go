package frontend

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/mcpgate/mcpgate/internal/core"
	"github.com/mcpgate/mcpgate/internal/sse"
)

var errStreamGone = errors.New("client stream gone")

// History bound for a resumable stream, in events; bytes are bounded by
// the session's and the gateway's historyBudget.
const (
	maxHistoryEvents = 256
)

// stream is one client-facing response: a POST's JSON body or SSE stream,
// or the session's GET stream. It starts as a plain response and becomes
// an SSE stream on the first message that is not the final response, or
// when the response is slow (so keep-alives can flow).
//
// Producers never write to the client. What they produce (events,
// keep-alives, the final response) goes on the stream's bounded outbound
// queue under mu, which is only ever held briefly; one writer at a time
// takes the whole queue and writes it outside mu, with one write deadline
// per batch. The writer is whichever goroutine may block on this client:
// the handler's own (finish, attach) or a keep-alive timer's inline, else
// one started on demand (send, from the session's dispatcher) that exits
// when the queue is empty, so a quiet stream costs no goroutine. A client
// that stops reading loses its stream when a write times out or when the
// queue overflows (maxQueuedEvents, maxQueuedBytes) — a resumable stream
// keeps its history and stays reachable with Last-Event-ID — instead of
// blocking the upstream's reader, the session's dispatcher or other
// streams.
type stream struct {
	mu       sync.Mutex
	w        http.ResponseWriter // nil while detached
	id       string              // stream id within the session; "" for unresumable streams
	seq      int
	sse      bool
	finished bool          // final message produced (or stream closed)
	lost     bool          // the client missed events: a write failed or it left before the end
	released chan struct{} // closed when the handler owning w may return
	opts     *Options
	budget   *historyBudget // nil for streams that keep no history

	// out is what waits for the writer, outBytes its size; gen counts
	// attachments and detachments of w, so a writer knows whether the w it
	// wrote to is still the stream's.
	out      []chunk
	outArr   [1]chunk // out's first array: a plain response needs no other
	outBytes int
	gen      int
	// writing is set while a writer owns the queue; busy while it writes
	// to w outside mu. A w detached while busy is released (releasing
	// closed) by the writer when its write returns, never before: the
	// handler must not return while its ResponseWriter is in use.
	writing   bool
	busy      bool
	releasing chan struct{}
	// spare is the previous batch's slice, reused for the next queue.
	spare []chunk

	// rel tracks the server messages of this stream's request; nil until
	// the first arrives (most responses have none).
	rel *relatedState

	// resumable streams keep recent events for Last-Event-ID.
	resumable    bool
	history      []event
	historyBytes int
	truncated    int // highest seq dropped from history

	// timer switches a quiet response to SSE and sends keep-alives; for a
	// request's stream (req set) the session's clock does the switch and
	// the timer is made only then, for the keep-alives.
	timer *time.Timer
	// req is the request this stream is part of; nil for the streams that
	// stand alone (GET, batch, initialize).
	req *request
}

// Bounds of a stream's outbound queue: a client that falls this far behind
// loses its stream (a resumable one can resume from its history). At least
// twice the session's backlog (Options.ServerRequestBacklog messages,
// Options.ResumeSessionBytes), so a new GET stream takes the whole backlog
// at once. Streams are bounded by connections (server.max_connections),
// so the queues are too; a resumable stream's queued events are the ones
// in its history (shared bytes, counted in the history budget), a plain
// one's are its own.
const (
	maxQueuedEvents = 512
	maxQueuedBytes  = 2 << 20
)

// queueBounds is the outbound queue's bound in events and bytes.
func (o *Options) queueBounds() (events, bytes int) {
	return max(maxQueuedEvents, 2*o.ServerRequestBacklog), max(maxQueuedBytes, 2*int(o.ResumeSessionBytes))
}

type event struct {
	seq  int
	data []byte // encoded SSE event
}

// chunk is one queued write. A buffer from eventPool is the stream's own
// (not shared with history or a constant) and goes back once written.
type chunk struct {
	b    []byte
	pool *[]byte // b's buffer, from eventPool; nil for others
}

// eventPool recycles the event buffers of streams that keep no history.
var eventPool = sync.Pool{New: func() any { return new([]byte) }}

// Header values set on every stream, shared instead of allocated per
// response (net/http only reads them).
var (
	hdrEventStream = []string{"text/event-stream"}
	hdrNoCache     = []string{"no-cache, no-transform"}
	hdrNo          = []string{"no"}
	hdrJSON        = []string{"application/json"}
)

func newStream(w http.ResponseWriter, opts *Options, id string, resumable bool) *stream {
	s := new(stream)
	initStream(s, w, opts, id, resumable)
	return s
}

// initStream sets up a stream in place (a request's is part of it).
func initStream(s *stream, w http.ResponseWriter, opts *Options, id string, resumable bool) {
	s.w, s.id, s.opts = w, id, opts
	s.resumable, s.released = resumable, make(chan struct{})
	s.out = s.outArr[:0]
}

// slow is the session clock's StreamAfter event for a request's stream:
// a response still not finished turns to SSE, written by a writer of its
// own (the clock serves the whole session and never waits on a client),
// and gets its keep-alive timer.
func (s *stream) slow() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.finished || s.w == nil {
		return
	}
	if !s.sse {
		s.startSSELocked(-1)
	}
	if s.timer == nil {
		s.timer = time.AfterFunc(s.opts.KeepAlive, s.tick)
	}
	s.kickLocked()
}

// armKeepAlive starts the timer that switches a quiet response to SSE and
// then keeps it alive.
func (s *stream) armKeepAlive(first time.Duration) {
	s.mu.Lock()
	if !s.finished && s.timer == nil {
		s.timer = time.AfterFunc(first, s.tick)
	}
	s.mu.Unlock()
}

// tick runs on the timer's own goroutine, which may block on this client:
// it writes inline.
func (s *stream) tick() {
	s.mu.Lock()
	if s.finished && s.w == nil {
		s.mu.Unlock()
		return
	}
	if s.w != nil {
		switch {
		case !s.sse:
			s.startSSELocked(-1)
		case len(s.out) == 0 && !s.writing:
			// A keep-alive only matters on a quiet stream.
			s.queueLocked(chunk{b: sse.KeepAlive})
		}
	}
	if !s.finished || s.w != nil {
		s.timer.Reset(s.opts.KeepAlive)
	}
	inline := s.takeWriterLocked()
	s.mu.Unlock()
	if inline {
		s.drain()
	}
}

// startLocked turns the response into an SSE stream and has its start
// written.
func (s *stream) startLocked() {
	s.startSSELocked(-1)
	s.kickLocked()
}

// retryHint passes on the reconnection delay the upstream named for this
// stream's request (SSE polling, see upstream.WithRetryHint): the stream
// turns SSE now, primed with the hint, or sends the hint in an event of
// its own. A client whose stream is then cut knows when to come back for
// the rest with Last-Event-ID. Only resumable streams take hints.
func (s *stream) retryHint(ms int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case !s.resumable || s.w == nil || s.finished:
		return
	case !s.sse:
		s.startSSELocked(ms)
	default:
		s.queueLocked(chunk{b: sse.AppendRetry(nil, ms)})
	}
	s.kickLocked()
}

// RetryHint implements upstream.RetryHinter (see retryHint).
func (s *stream) RetryHint(ms int) { s.retryHint(ms) }

// setSSEHeaders sets the headers of an SSE response.
func setSSEHeaders(h http.Header) {
	h["Content-Type"] = hdrEventStream
	h["Cache-Control"] = hdrNoCache
	h["X-Accel-Buffering"] = hdrNo
}

// startSSELocked turns the response into an SSE stream whose priming
// event carries the reconnection delay retry (ms; -1 for none), and
// queues its start; the caller has it written. Nothing has been written
// to w before (the response was plain), so no writer is using it.
func (s *stream) startSSELocked(retry int) {
	setSSEHeaders(s.w.Header())
	s.w.WriteHeader(http.StatusOK)
	s.sse = true
	if s.resumable {
		s.queueLocked(chunk{b: sse.AppendPriming(nil, s.eventID(0), retry)})
	} else {
		s.queueLocked(chunk{}) // headers only: a flush
	}
}

func (s *stream) eventID(seq int) string {
	return s.id + "_" + strconv.Itoa(seq)
}

// queueLocked adds c to the outbound queue. A queue past its bounds means
// the client has stopped keeping up: the stream is closed (lost; a
// resumable one keeps its history for Last-Event-ID), and queueLocked
// reports false. c is not queued then.
func (s *stream) queueLocked(c chunk) bool {
	if s.w == nil {
		putChunk(c)
		return false
	}
	// One message alone always fits: the bound is on how far behind the
	// client is, not on how large a message may be.
	maxEvents, maxBytes := s.opts.queueBounds()
	if len(s.out) > 0 && (len(s.out) >= maxEvents || s.outBytes+len(c.b) > maxBytes) {
		putChunk(c)
		if s.opts.Logger != nil {
			s.opts.Logger.Debug("client_stream_overflow", "stream", s.id, "queued", len(s.out), "queued_bytes", s.outBytes)
		}
		s.lost = true
		s.detachLocked()
		return false
	}
	s.out = append(s.out, c)
	s.outBytes += len(c.b)
	return true
}

// maxPooledEvent is the largest event buffer kept for reuse.
const maxPooledEvent = 64 << 10

func putChunk(c chunk) {
	if c.pool != nil && cap(c.b) <= maxPooledEvent {
		*c.pool = c.b[:0]
		eventPool.Put(c.pool)
	}
}

// kickLocked has the queue written by a writer started for it, unless one
// is already writing: for producers that must not block on this client.
func (s *stream) kickLocked() {
	if s.takeWriterLocked() {
		go s.drain()
	}
}

// takeWriterLocked makes the caller the writer if there is something to
// write and no writer; the caller then calls drain after unlocking.
func (s *stream) takeWriterLocked() bool {
	if s.writing || s.w == nil || len(s.out) == 0 {
		return false
	}
	s.writing = true
	return true
}

// drain writes the queue until it is empty, batch by batch, outside mu.
// It releases the handler when the final message has been written, and
// closes the stream when a write fails.
func (s *stream) drain() {
	s.mu.Lock()
	for s.w != nil && len(s.out) > 0 {
		w, gen := s.w, s.gen
		batch := s.out
		s.out, s.spare, s.outBytes = s.spare[:0], nil, 0
		s.busy = true
		s.mu.Unlock()
		err := writeBatch(w, batch, s.opts.WriteTimeout)
		s.mu.Lock()
		s.busy = false
		if s.releasing != nil {
			// w was detached while being written to: its handler may go.
			close(s.releasing)
			s.releasing = nil
		}
		if err != nil && s.gen == gen {
			s.lost = true
			s.detachLocked()
		}
		for i, c := range batch {
			putChunk(c)
			batch[i] = chunk{}
		}
		if s.spare == nil && cap(batch) <= 64 {
			s.spare = batch[:0]
		}
	}
	s.writing = false
	if s.finished && s.w != nil {
		s.detachLocked() // all written: the handler may return
	}
	s.mu.Unlock()
}

// writeBatch writes chunks to w under one deadline and flushes once.
func writeBatch(w http.ResponseWriter, batch []chunk, timeout time.Duration) error {
	rc := http.NewResponseController(w)
	if timeout > 0 {
		_ = rc.SetWriteDeadline(time.Now().Add(timeout))
	}
	for _, c := range batch {
		if len(c.b) == 0 {
			continue
		}
		if _, err := w.Write(c.b); err != nil {
			return err
		}
	}
	return rc.Flush()
}

// detachLocked forgets the writer (the client went away, the stream is
// done or replaced) and lets the handler return, at once or, while a
// write to w is under way, when it returns. What was queued for w is
// dropped; a resumable stream has it in its history and keeps collecting
// events.
func (s *stream) detachLocked() {
	if s.w == nil {
		return
	}
	s.w = nil
	s.gen++
	for i, c := range s.out {
		putChunk(c)
		s.out[i] = chunk{}
	}
	s.out, s.outBytes = s.out[:0], 0
	if s.busy {
		s.releasing = s.released
	} else {
		close(s.released)
	}
}

// send queues a message that is not the stream's final message: a server
// message, or one response of a batch. A response waits until the
// dispatcher has placed the related messages that arrived before it, so
// they reach the client first; the session's dispatcher itself uses
// place, which never waits. Neither blocks on the client: a writer started
// on demand writes what they queue.
func (s *stream) send(m *core.Message) error {
	if m.Kind == core.KindResponse || m.Kind == core.KindError {
		s.mu.Lock()
		s.awaitRelatedLocked()
		s.mu.Unlock()
	}
	return s.place(m)
}

// place queues a server message; see send.
func (s *stream) place(m *core.Message) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.finished {
		return errStreamGone
	}
	if s.w != nil && !s.sse {
		s.startSSELocked(-1)
	}
	if s.w == nil && !s.resumable {
		return errStreamGone
	}
	if !s.eventLocked(m.Raw) && !s.resumable {
		return errStreamGone // closed by this message: it was not delivered
	}
	s.kickLocked()
	return nil
}

// eventLocked encodes one event, keeps it in a resumable stream's
// history, and queues it. It reports false when the stream had no writer
// for it, or closed because its queue was full.
func (s *stream) eventLocked(data []byte) bool {
	s.seq++
	if !s.resumable {
		if s.w == nil {
			return false
		}
		bp := eventPool.Get().(*[]byte)
		b := sse.AppendEvent((*bp)[:0], "", data)
		return s.queueLocked(chunk{b: b, pool: bp})
	}
	buf := make([]byte, 0, len(data)+len(s.id)+32)
	buf = append(buf, "id: "...)
	buf = append(buf, s.id...)
	buf = append(buf, '_')
	buf = strconv.AppendInt(buf, int64(s.seq), 10)
	buf = append(buf, '\n')
	buf = sse.AppendEvent(buf, "", data)
	s.keepLocked(event{seq: s.seq, data: buf})
	return s.queueLocked(chunk{b: buf})
}

// keepLocked adds an event to the history within the stream's own bounds
// and the session's and gateway's byte budgets, dropping the stream's
// oldest events first. An event that cannot fit is not kept: a resume from
// before it is then refused rather than replayed with a gap.
func (s *stream) keepLocked(ev event) {
	n := int64(len(ev.data))
	for len(s.history) > 0 && (len(s.history) >= maxHistoryEvents || !s.budget.take(n)) {
		s.dropOldestLocked()
	}
	if len(s.history) == 0 && !s.budget.take(n) {
		s.truncated = ev.seq
		return
	}
	s.history = append(s.history, ev)
	s.historyBytes += len(ev.data)
}

func (s *stream) dropOldestLocked() {
	old := s.history[0]
	s.history[0] = event{}
	s.history = s.history[1:]
	s.historyBytes -= len(old.data)
	s.truncated = old.seq
	s.budget.give(int64(len(old.data)))
}

// release returns the stream's history to the budgets.
func (s *stream) release() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for len(s.history) > 0 {
		s.dropOldestLocked()
	}
}

// relatedState counts the server messages of a stream's request that the
// session's dispatcher has not placed yet; finish waits for them so they
// reach the client before the final response.
type relatedState struct {
	n    int
	zero chan struct{}   // closed when n drops to zero; made by a waiter
	quit <-chan struct{} // the session's end, which ends the wait
	// ctx is the context the chain runs under for these messages, made
	// once (the session's, with the stream as target), not per message.
	ctx context.Context
}

// relatedAdd counts a server message of this stream's request that the
// session's dispatcher is to place, and returns the context its chain
// runs under.
func (s *stream) relatedAdd(g *gwSession) context.Context {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.rel == nil {
		s.rel = &relatedState{quit: g.ctx.Done(), ctx: withTarget(g.ctx, g, s)}
	}
	s.rel.n++
	return s.rel.ctx
}

// relatedDone counts one such message placed (or dropped).
func (s *stream) relatedDone() {
	s.mu.Lock()
	r := s.rel
	r.n--
	if r.n == 0 && r.zero != nil {
		close(r.zero)
		r.zero = nil
	}
	s.mu.Unlock()
}

// awaitRelatedLocked waits, releasing mu meanwhile, until the dispatcher
// has placed every message of the request that arrived before its
// response, or the session ends.
func (s *stream) awaitRelatedLocked() {
	for s.rel != nil && s.rel.n > 0 {
		r := s.rel
		if r.zero == nil {
			r.zero = make(chan struct{})
		}
		zero, quit := r.zero, r.quit
		s.mu.Unlock()
		select {
		case <-zero:
		case <-quit:
		}
		s.mu.Lock()
		select {
		case <-quit:
			return
		default:
		}
	}
}

// finish writes the final response (nil for none) after every related
// message, and returns when it has been written or the client is gone:
// the caller (the request's handler, or an ending session) may block on
// this client. status is used when the response is still a plain JSON
// body.
func (s *stream) finish(m *core.Message, status int) {
	s.mu.Lock()
	s.awaitRelatedLocked()
	if s.finished {
		// Finished elsewhere: still, do not return while the caller's
		// ResponseWriter may be written to.
		rel := s.releasing
		if s.w != nil {
			rel = s.released
		}
		s.mu.Unlock()
		if rel != nil {
			<-rel
		}
		return
	}
	s.finished = true
	if s.timer != nil {
		s.timer.Stop()
	}
	switch {
	case s.w == nil:
		if m != nil && s.resumable {
			s.eventLocked(m.Raw)
		}
		s.mu.Unlock()
		return
	case s.sse:
		if m != nil {
			s.eventLocked(m.Raw)
		}
	case m != nil:
		h := s.w.Header()
		h["Content-Type"] = hdrJSON
		s.setContentLength(h, len(m.Raw))
		if status == 0 {
			status = http.StatusOK
		}
		s.w.WriteHeader(status)
		s.queueLocked(chunk{b: m.Raw})
	default:
		s.w.WriteHeader(http.StatusAccepted)
	}
	released := s.released
	if s.w != nil && len(s.out) == 0 && !s.busy {
		s.detachLocked() // nothing left to write
	}
	inline := s.takeWriterLocked()
	s.mu.Unlock()
	if inline {
		s.drain()
	}
	<-released
}

// addHeaders sets response headers (Retry-After, ...) while the response
// has not started.
func (s *stream) addHeaders(h http.Header) {
	if len(h) == 0 {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.w == nil || s.sse {
		return
	}
	for k, v := range h {
		s.w.Header()[k] = v
	}
}

// close ends a stream that has no final message (the GET stream, a batch's
// stream) once what it holds is written; like finish, it may block on the
// client.
func (s *stream) close() { s.finish(nil, 0) }

// shut ends a stream without writing what is still queued and without
// waiting for the client: for a session ending, or a GET stream replaced
// or lost. Its handler is released as soon as no write is under way.
func (s *stream) shut() {
	s.mu.Lock()
	if !s.finished {
		s.finished = true
		if s.timer != nil {
			s.timer.Stop()
		}
	}
	if s.w != nil && !s.sse && !s.busy && len(s.out) == 0 {
		s.w.WriteHeader(http.StatusAccepted)
	}
	s.detachLocked()
	s.mu.Unlock()
}

// attach resumes the stream on a new response after event lastSeq. It
// reports false when events after lastSeq were already dropped. The replay
// is written on the caller's goroutine, the resuming client's handler.
func (s *stream) attach(w http.ResponseWriter, lastSeq int) (<-chan struct{}, bool) {
	s.mu.Lock()
	if lastSeq < s.truncated {
		s.mu.Unlock()
		return nil, false
	}
	if s.w != nil {
		s.detachLocked() // a client reconnecting replaces its half-open stream
	}
	s.w, s.released = w, make(chan struct{})
	s.gen++
	setSSEHeaders(w.Header())
	w.WriteHeader(http.StatusOK)
	s.sse = true
	queued := false
	for _, ev := range s.history {
		if ev.seq > lastSeq {
			// The replay is the history itself: outside the queue's bounds.
			s.out = append(s.out, chunk{b: ev.data})
			queued = true
		}
	}
	if !queued {
		s.out = append(s.out, chunk{}) // headers only: a flush
	}
	released := s.released
	inline := s.takeWriterLocked()
	s.mu.Unlock()
	if inline {
		s.drain()
	}
	return released, true
}

// done reports whether the stream has produced its final message and has
// no writer attached, so it can be forgotten.
func (s *stream) done() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.finished && s.w == nil
}

// attached reports whether a client response is writing the stream.
func (s *stream) attached() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w != nil
}

// missed reports whether the client may lack events of this stream and
// could come back for them with Last-Event-ID.
func (s *stream) missed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lost
}

// releasedCh returns the channel the owning handler waits on.
func (s *stream) releasedCh() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.released
}

// abandon detaches the writer when the handler must return (its request
// context ended) without finishing the stream. It returns once no write
// to the handler's ResponseWriter is under way.
func (s *stream) abandon() {
	s.mu.Lock()
	if !s.finished {
		s.lost = true
	}
	wait := s.releasing // a write to w detached earlier still under way
	if s.w != nil {
		wait = s.released
		s.detachLocked()
	}
	s.mu.Unlock()
	if wait != nil {
		<-wait
	}
}
