package callctx_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/internal/callctx"
)

type endCtx struct{ callctx.End }

func (*endCtx) Deadline() (time.Time, bool) { return time.Time{}, false }
func (*endCtx) Value(any) any               { return nil }

type listener struct{ got []error }

func (l *listener) CallEnded(err error) { l.got = append(l.got, err) }

// TestEnd: a context built on End ends once, tells its listeners and the
// contexts derived from it, and keeps no unwatched listener or stopped
// function.
func TestEnd(t *testing.T) {
	t.Parallel()
	c := &endCtx{}
	var w callctx.Watcher = c
	l1, l2 := &listener{}, &listener{}
	if !w.Watch(l1) || !w.Watch(l2) {
		t.Fatal("Watch refused before the end")
	}
	w.Unwatch(l2)
	d, cancel := context.WithCancel(c) // derived through AfterFunc, no goroutine
	defer cancel()
	ran := false
	stop := c.AfterFunc(func() { ran = true })
	if !stop() {
		t.Fatal("stop did not stop")
	}
	if c.Err() != nil {
		t.Fatal("ended before Cancel")
	}
	if !c.Cancel(context.DeadlineExceeded) || c.Cancel(context.Canceled) {
		t.Fatal("Cancel: only the first call counts")
	}
	<-c.Done()
	<-d.Done()
	if !errors.Is(c.Err(), context.DeadlineExceeded) || !errors.Is(d.Err(), context.DeadlineExceeded) {
		t.Fatalf("errors %v / %v, want the deadline", c.Err(), d.Err())
	}
	if len(l1.got) != 1 || len(l2.got) != 0 || ran {
		t.Fatalf("told %v and %v, stopped function ran: %v", l1.got, l2.got, ran)
	}
	if w.Watch(&listener{}) {
		t.Fatal("Watch accepted after the end")
	}
	// A Done asked for after the end is closed too.
	e := &endCtx{}
	e.Cancel(context.Canceled)
	<-e.Done()
}
