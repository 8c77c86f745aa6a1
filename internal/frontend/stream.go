package frontend

import (
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
// All writes happen under mu with a write deadline, from whichever
// goroutine has something to send; a client that stops reading loses its
// stream (resumable with Last-Event-ID) instead of blocking the upstream.
type stream struct {
	mu       sync.Mutex
	w        http.ResponseWriter // nil while detached
	rc       *http.ResponseController
	id       string // stream id within the session; "" for unresumable streams
	seq      int
	sse      bool
	finished bool          // final message produced (or stream closed)
	lost     bool          // the client missed events: a write failed or it left before the end
	released chan struct{} // closed when the handler owning w may return
	opts     *Options
	budget   *historyBudget // nil for streams that keep no history

	// resumable streams keep recent events for Last-Event-ID.
	resumable    bool
	history      []event
	historyBytes int
	truncated    int // highest seq dropped from history

	timer *time.Timer
}

type event struct {
	seq  int
	data []byte // encoded SSE event
}

func newStream(w http.ResponseWriter, opts *Options, id string, resumable bool) *stream {
	return &stream{
		w: w, rc: http.NewResponseController(w), id: id, opts: opts,
		resumable: resumable, released: make(chan struct{}),
	}
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

func (s *stream) tick() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.finished && s.w == nil {
		return
	}
	if s.w != nil {
		if !s.sse {
			s.startLocked()
		} else {
			s.writeLocked(sse.KeepAlive)
		}
	}
	if !s.finished || s.w != nil {
		s.timer.Reset(s.opts.KeepAlive)
	}
}

// startLocked turns the response into an SSE stream.
func (s *stream) startLocked() { s.startRetryLocked(-1) }

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
	case !s.sse:
		s.startRetryLocked(ms)
	default:
		s.writeLocked(sse.AppendRetry(nil, ms))
	}
}

// startRetryLocked turns the response into an SSE stream whose priming
// event carries the reconnection delay retry (ms; -1 for none).
func (s *stream) startRetryLocked(retry int) {
	h := s.w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache, no-transform")
	h.Set("X-Accel-Buffering", "no")
	s.w.WriteHeader(http.StatusOK)
	s.sse = true
	if s.resumable {
		buf := sse.AppendPriming(nil, s.eventID(0), retry)
		s.writeLocked(buf)
	} else {
		s.flushLocked()
	}
}

func (s *stream) eventID(seq int) string {
	return s.id + "_" + strconv.Itoa(seq)
}

func (s *stream) writeLocked(b []byte) {
	if s.w == nil {
		return
	}
	if s.opts.WriteTimeout > 0 {
		_ = s.rc.SetWriteDeadline(time.Now().Add(s.opts.WriteTimeout))
	}
	if _, err := s.w.Write(b); err != nil {
		s.lost = true
		s.detachLocked()
		return
	}
	s.flushLocked()
}

func (s *stream) flushLocked() {
	if s.w == nil {
		return
	}
	if err := s.rc.Flush(); err != nil {
		s.lost = true
		s.detachLocked()
	}
}

// detachLocked forgets the writer (the client went away) and lets the
// handler return. A resumable stream keeps collecting events.
func (s *stream) detachLocked() {
	if s.w == nil {
		return
	}
	s.w, s.rc = nil, nil
	close(s.released)
}

// send writes a message that is not the final response.
func (s *stream) send(m *core.Message) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.finished {
		return errStreamGone
	}
	if s.w != nil && !s.sse {
		s.startLocked()
	}
	if s.w == nil && !s.resumable {
		return errStreamGone
	}
	s.eventLocked(m.Raw)
	return nil
}

func (s *stream) eventLocked(data []byte) {
	s.seq++
	id := ""
	if s.resumable {
		id = s.eventID(s.seq)
	}
	buf := sse.AppendEvent(make([]byte, 0, len(data)+len(id)+16), id, data)
	if s.resumable {
		s.keepLocked(event{seq: s.seq, data: buf})
	}
	s.writeLocked(buf)
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

// finish writes the final response (nil for none) and releases the handler.
// status is used when the response is still a plain JSON body.
func (s *stream) finish(m *core.Message, status int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.finished {
		return
	}
	s.finished = true
	if s.timer != nil {
		s.timer.Stop()
	}
	if s.w == nil {
		if m != nil && s.resumable {
			s.eventLocked(m.Raw)
		}
		return
	}
	switch {
	case s.sse:
		if m != nil {
			s.eventLocked(m.Raw)
		}
	case m != nil:
		h := s.w.Header()
		h.Set("Content-Type", "application/json")
		h.Set("Content-Length", strconv.Itoa(len(m.Raw)))
		if status == 0 {
			status = http.StatusOK
		}
		s.w.WriteHeader(status)
		s.writeLocked(m.Raw)
	default:
		s.w.WriteHeader(http.StatusAccepted)
	}
	s.detachLocked()
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

// close ends a stream that has no final message (the GET stream, or a
// stream abandoned at session end).
func (s *stream) close() { s.finish(nil, 0) }

// attach resumes the stream on a new response after event lastSeq. It
// reports false when events after lastSeq were already dropped.
func (s *stream) attach(w http.ResponseWriter, lastSeq int) (<-chan struct{}, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if lastSeq < s.truncated {
		return nil, false
	}
	if s.w != nil {
		s.detachLocked() // a client reconnecting replaces its half-open stream
	}
	s.w, s.rc, s.released = w, http.NewResponseController(w), make(chan struct{})
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache, no-transform")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	s.sse = true
	for _, ev := range s.history {
		if ev.seq > lastSeq {
			s.writeLocked(ev.data)
		}
	}
	s.flushLocked()
	if s.finished {
		s.detachLocked()
	}
	return s.released, true
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
// context ended) without finishing the stream.
func (s *stream) abandon() {
	s.mu.Lock()
	if !s.finished {
		s.lost = true
	}
	s.detachLocked()
	s.mu.Unlock()
}
