package frontend

import (
	"context"
	"time"
)

// The session's clock: one timer per session serves the deadlines of its
// requests and the moment their responses turn to SSE (Options.StreamAfter),
// instead of a context.WithTimeout and a time.AfterFunc per request.
//
// Live requests are kept in a list in the order they started, under g.mu.
// The timer is armed for the earliest pending event of any of them and,
// when it fires, handles what is due and rearms for the next. As every
// request of a route gets the same timeout and StreamAfter, the earliest
// event is almost always the oldest request's, so starting a request
// touches the timer only when the clock is idle; a timer left armed for a
// request that ended fires once, finds nothing due and rearms (or not) —
// at most once per StreamAfter per busy session. Handling is non-blocking:
// a deadline cancels the request's context (its exchange then answers the
// client); a slow response is switched to SSE by a writer of its own, and
// its keep-alives come from a timer of the stream's, made only then.

// clockAddLocked puts r on the clock.
func (g *gwSession) clockAddLocked(r *request) {
	r.onClock = true
	r.prev, r.next = g.clockTail, nil
	if g.clockTail != nil {
		g.clockTail.next = r
	} else {
		g.clockHead = r
	}
	g.clockTail = r
	if at := r.nextEvent(); !at.IsZero() && (g.clockAt.IsZero() || at.Before(g.clockAt)) {
		g.armClockLocked(at)
	}
}

// clockRemoveLocked takes r off the clock. The timer stays armed: when it
// fires it finds what is due then.
func (g *gwSession) clockRemoveLocked(r *request) {
	if !r.onClock {
		return
	}
	r.onClock = false
	if r.prev != nil {
		r.prev.next = r.next
	} else {
		g.clockHead = r.next
	}
	if r.next != nil {
		r.next.prev = r.prev
	} else {
		g.clockTail = r.prev
	}
	r.prev, r.next = nil, nil
}

// nextEvent is r's earliest pending event; zero for none.
func (r *request) nextEvent() time.Time {
	switch {
	case r.sseAt.IsZero():
		return r.deadline
	case r.deadline.IsZero() || r.sseAt.Before(r.deadline):
		return r.sseAt
	}
	return r.deadline
}

func (g *gwSession) armClockLocked(at time.Time) {
	g.clockAt = at
	d := time.Until(at)
	if g.clockTimer == nil {
		g.clockTimer = time.AfterFunc(d, g.clockFire)
		return
	}
	g.clockTimer.Reset(d)
}

// clockFire handles the events due and rearms the timer for the next.
func (g *gwSession) clockFire() {
	now := time.Now()
	var slow, late []*request
	g.mu.Lock()
	g.clockAt = time.Time{}
	if g.ending {
		g.mu.Unlock()
		return
	}
	var next time.Time
	for r := g.clockHead; r != nil; r = r.next {
		if !r.sseAt.IsZero() && !now.Before(r.sseAt) {
			r.sseAt = time.Time{}
			slow = append(slow, r)
		}
		if !r.deadline.IsZero() && !now.Before(r.deadline) {
			r.deadline = time.Time{}
			late = append(late, r)
		}
		if at := r.nextEvent(); !at.IsZero() && (next.IsZero() || at.Before(next)) {
			next = at
		}
	}
	if !next.IsZero() {
		g.armClockLocked(next)
	}
	g.mu.Unlock()
	for _, r := range slow {
		r.st.slow()
	}
	for _, r := range late {
		r.cancel(context.DeadlineExceeded)
	}
}

// stopClock ends the clock of an ending session and returns its live
// requests, for teardown to end.
func (g *gwSession) stopClockLocked() []*request {
	g.ending = true
	if g.clockTimer != nil {
		g.clockTimer.Stop()
	}
	g.clockAt = time.Time{}
	var live []*request
	for r := g.clockHead; r != nil; r = r.next {
		live = append(live, r)
	}
	return live
}
