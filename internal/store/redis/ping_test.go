package redisstore

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/internal/store"
)

// TestPing: one round trip when Redis answers; a prompt error, not a
// hang, when it refuses or stalls; success again once it is back, on the
// same store; store.ErrClosed after Close.
func TestPing(t *testing.T) {
	t.Parallel()
	px := newProxy(t, redisAddr)
	const timeout = 200 * time.Millisecond
	s := openStore(t, Options{Addr: px.Addr(), DialTimeout: timeout, ReadTimeout: timeout, WriteTimeout: timeout})
	ctx := t.Context()

	if err := s.Ping(ctx); err != nil {
		t.Fatalf("Ping = %v", err)
	}
	// Counted on a connection already open: a new one adds its handshake.
	rt := countRoundTrips(s)
	if err := s.Ping(ctx); err != nil {
		t.Fatalf("Ping = %v", err)
	}
	if n := rt.n.Load(); n != 1 {
		t.Errorf("Ping cost %d round trips; want 1", n)
	}

	for _, tt := range []struct {
		name string
		down func()
	}{
		{"refused", px.Cut},
		{"stalled", px.Stall},
	} {
		t.Run(tt.name, func(t *testing.T) {
			tt.down()
			for range 3 {
				start := time.Now()
				err := s.Ping(ctx)
				if err == nil || errors.Is(err, store.ErrClosed) {
					t.Fatalf("Ping with Redis %s = %v; want a connection error", tt.name, err)
				}
				if d := time.Since(start); d > 2*time.Second {
					t.Errorf("Ping with Redis %s took %v to fail", tt.name, d)
				}
			}
			px.Restore()
			eventually(t, 10*time.Second, "Ping succeeding again", func() error { return s.Ping(ctx) })
		})
	}

	short, cancel := context.WithTimeout(ctx, time.Nanosecond)
	defer cancel()
	<-short.Done()
	if err := s.Ping(short); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Ping past its deadline = %v; want context.DeadlineExceeded", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Ping(ctx); !errors.Is(err, store.ErrClosed) {
		t.Errorf("Ping after Close = %v; want store.ErrClosed", err)
	}
}
