package redisstore

import (
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/internal/store"
)

// TestFlushFailureReported: every failed background flush of touches is
// reported as op "touch" (only the first of a run is logged), so that the
// gateway counts it.
func TestFlushFailureReported(t *testing.T) {
	t.Parallel()
	px := newProxy(t, redisAddr)
	const timeout = 200 * time.Millisecond
	s := openStore(t, Options{Addr: px.Addr(), FlushInterval: 10 * time.Millisecond, DialTimeout: timeout, ReadTimeout: timeout, WriteTimeout: timeout})
	reported := make(chan string, 64)
	s.ReportErrors(func(op string) {
		select {
		case reported <- op:
		default:
		}
	})
	ctx := t.Context()
	if err := s.Put(ctx, &store.Record{ID: "s1", Created: time.Now(), LastActive: time.Now(), IdleTimeout: time.Hour}); err != nil {
		t.Fatal(err)
	}
	px.Cut()
	if err := s.Touch(ctx, "s1", time.Now()); err != nil {
		t.Fatal(err)
	}
	for range 2 { // the first failure and the next: each one counts
		select {
		case op := <-reported:
			if op != "touch" {
				t.Errorf("reported op %q; want touch", op)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("a failed flush was not reported")
		}
	}
	px.Restore()
}
