package callctx

import (
	"context"
	"sync"
)

// Listener is told when a call ends (see End.Watch). A pointer type
// implementing it is stored as it is: watching allocates nothing.
type Listener interface {
	CallEnded(err error)
}

// Watcher is a context that tells listeners of its end without a closure
// or a goroutine: the frontend's per-call context is one, and an upstream
// that derives a context of its own from it watches it this way.
type Watcher interface {
	context.Context
	// Watch has l told of the end; false when it has ended already (l is
	// then not told).
	Watch(l Listener) bool
	// Unwatch forgets l.
	Unwatch(l Listener)
}

// End is the ending half of a per-call context type, for embedding: the
// Done channel, made on first use (a call nobody waits on costs none),
// the error, and what runs at the end — functions registered with
// AfterFunc (which contexts derived with context.WithCancel use, instead
// of a goroutine) and listeners. The zero value is a context that has not
// ended; Cancel ends it.
type End struct {
	mu        sync.Mutex
	done      chan struct{}
	err       error
	afters    []afterEntry
	afArr     [1]afterEntry
	seq       uint64
	listeners []Listener
	lArr      [2]Listener
}

type afterEntry struct {
	id uint64
	f  func()
}

var closedChan = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

// Done is context.Context's.
func (e *End) Done() <-chan struct{} {
	e.mu.Lock()
	if e.done == nil {
		e.done = make(chan struct{})
	}
	d := e.done
	e.mu.Unlock()
	return d
}

// Err is context.Context's.
func (e *End) Err() error {
	e.mu.Lock()
	err := e.err
	e.mu.Unlock()
	return err
}

// AfterFunc arranges for f to run (on its own goroutine when the end has
// already come) at the end, like context.AfterFunc; stop reports whether
// it kept f from running.
func (e *End) AfterFunc(f func()) (stop func() bool) {
	e.mu.Lock()
	if e.err != nil {
		e.mu.Unlock()
		go f()
		return func() bool { return false }
	}
	if e.afters == nil {
		e.afters = e.afArr[:0]
	}
	e.seq++
	id := e.seq
	e.afters = append(e.afters, afterEntry{id: id, f: f})
	e.mu.Unlock()
	return func() bool {
		e.mu.Lock()
		defer e.mu.Unlock()
		for i, a := range e.afters {
			if a.id == id {
				n := len(e.afters) - 1
				copy(e.afters[i:], e.afters[i+1:])
				e.afters[n] = afterEntry{}
				e.afters = e.afters[:n]
				return true
			}
		}
		return false
	}
}

// Watch implements Watcher.
func (e *End) Watch(l Listener) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.err != nil {
		return false
	}
	if e.listeners == nil {
		e.listeners = e.lArr[:0]
	}
	e.listeners = append(e.listeners, l)
	return true
}

// Unwatch implements Watcher.
func (e *End) Unwatch(l Listener) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for i, x := range e.listeners {
		if x == l {
			n := len(e.listeners) - 1
			copy(e.listeners[i:], e.listeners[i+1:])
			e.listeners[n] = nil
			e.listeners = e.listeners[:n]
			return
		}
	}
}

// Cancel ends the context with err (context.Canceled or
// context.DeadlineExceeded), running what waits for the end; only the
// first call counts, and it reports true.
func (e *End) Cancel(err error) bool {
	e.mu.Lock()
	if e.err != nil {
		e.mu.Unlock()
		return false
	}
	e.err = err
	if e.done == nil {
		e.done = closedChan
	} else {
		close(e.done)
	}
	afters, listeners := e.afters, e.listeners
	e.afters, e.listeners = nil, nil
	e.mu.Unlock()
	for i := range afters {
		afters[i].f()
		afters[i] = afterEntry{}
	}
	for i, l := range listeners {
		l.CallEnded(err)
		listeners[i] = nil
	}
	return true
}
