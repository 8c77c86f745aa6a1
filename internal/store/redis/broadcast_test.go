package redisstore

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/internal/store"
)

// subscriber runs Subscribe on s in the background and collects events.
type subscriber struct {
	name   string
	events chan store.Event
	cancel context.CancelFunc
	done   chan error
}

func subscribe(t *testing.T, name string, s *Store) *subscriber {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	sub := &subscriber{name: name, events: make(chan store.Event, 1024), cancel: cancel, done: make(chan error, 1)}
	go func() {
		sub.done <- s.Subscribe(ctx, func(ev store.Event) {
			select {
			case sub.events <- ev:
			default:
				t.Errorf("%s: event buffer full, dropped %+v", name, ev)
			}
		})
	}()
	t.Cleanup(func() { sub.stop(t) })
	return sub
}

// stop ends the subscription and returns what Subscribe returned.
func (sub *subscriber) stop(t *testing.T) error {
	t.Helper()
	sub.cancel()
	select {
	case err, ok := <-sub.done:
		if ok {
			close(sub.done)
		}
		return err
	case <-time.After(5 * time.Second):
		t.Fatalf("%s: Subscribe did not return within 5s of its context ending", sub.name)
		return nil
	}
}

// ready publishes probes through pub until sub receives one: the
// subscription is then live (Redis pub/sub drops what is published before
// it is).
func (sub *subscriber) ready(t *testing.T, pub *Store) {
	t.Helper()
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	probe := fmt.Sprintf("probe-%x", b)
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		_ = pub.Publish(t.Context(), store.Event{Kind: "probe", SessionID: probe})
		wait := time.After(100 * time.Millisecond)
	drain:
		for {
			select {
			case ev := <-sub.events:
				if ev.SessionID == probe {
					sub.drain()
					return
				}
			case <-wait:
				break drain
			}
		}
	}
	t.Fatalf("%s: subscription not live within 15s", sub.name)
}

// drain discards what is buffered, after a short wait for stragglers.
func (sub *subscriber) drain() {
	time.Sleep(20 * time.Millisecond)
	for {
		select {
		case <-sub.events:
		default:
			return
		}
	}
}

// expect waits for the events want, in order, skipping probes.
func (sub *subscriber) expect(t *testing.T, want ...store.Event) {
	t.Helper()
	timeout := time.After(5 * time.Second)
	for _, w := range want {
		for {
			select {
			case ev := <-sub.events:
				if ev.Kind == "probe" {
					continue
				}
				if ev.Kind != w.Kind || ev.SessionID != w.SessionID || ev.Reason != w.Reason || ev.Origin != w.Origin || string(ev.Data) != string(w.Data) {
					t.Fatalf("%s received %+v; want %+v", sub.name, ev, w)
				}
			case <-timeout:
				t.Fatalf("%s: no event %+v within 5s", sub.name, w)
			}
			break
		}
	}
}

// TestBroadcast runs two replicas on one Redis, one of them through a
// proxy that is cut and restored: each sees the other's events and its
// own, before the cut and after.
func TestBroadcast(t *testing.T) {
	t.Parallel()
	px := newProxy(t, redisAddr)
	prefix := testPrefix(t)
	const timeout = 200 * time.Millisecond
	a := openStore(t, Options{Addr: px.Addr(), Prefix: prefix, DialTimeout: timeout, ReadTimeout: timeout, WriteTimeout: timeout})
	b := openStore(t, Options{Prefix: prefix})
	ctx := t.Context()
	subA, subB := subscribe(t, "a", a), subscribe(t, "b", b)
	subA.ready(t, b)
	subB.ready(t, a)

	exchange := func(t *testing.T, round string) {
		t.Helper()
		var evs []store.Event
		for i := range 3 {
			ev := store.Event{Kind: "ended", SessionID: fmt.Sprintf("%s-a%d", round, i), Reason: "deleted", Origin: "a"}
			if err := a.Publish(ctx, ev); err != nil {
				t.Fatal(err)
			}
			evs = append(evs, ev)
		}
		subA.expect(t, evs...)
		subB.expect(t, evs...)
		evB := store.Event{Kind: "ended", SessionID: round + "-b", Reason: "revoked", Origin: "b"}
		if err := b.Publish(ctx, evB); err != nil {
			t.Fatal(err)
		}
		subA.expect(t, evB)
		subB.expect(t, evB)
	}
	exchange(t, "before")

	px.Cut()
	if err := a.Publish(ctx, store.Event{Kind: "ended", SessionID: "lost", Origin: "a"}); err == nil {
		t.Error("Publish through a cut connection succeeded")
	}
	// b's event reaches b; a is not connected and misses it.
	missed := store.Event{Kind: "ended", SessionID: "missed", Origin: "b"}
	if err := b.Publish(ctx, missed); err != nil {
		t.Fatal(err)
	}
	subB.expect(t, missed)
	time.Sleep(300 * time.Millisecond) // a few failed reconnections
	px.Restore()
	subA.ready(t, b)
	subB.ready(t, a)
	exchange(t, "after")

	// A second outage, longer: the backoff grows but resets on success.
	px.Cut()
	time.Sleep(time.Second)
	px.Restore()
	subA.ready(t, b)
	exchange(t, "again")

	if err := subA.stop(t); !errors.Is(err, context.Canceled) {
		t.Errorf("Subscribe after its context ended = %v; want context.Canceled", err)
	}
}

// TestSubscribeClose checks that closing the store ends its subscriptions
// with ErrClosed, and that Subscribe on a closed store fails at once.
func TestSubscribeClose(t *testing.T) {
	s := openStore(t, Options{})
	sub := subscribe(t, "s", s)
	sub.ready(t, s)
	closed := make(chan error, 1)
	go func() { closed <- s.Close() }()
	select {
	case err := <-closed:
		if err != nil {
			t.Fatalf("Close = %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not return with a subscription running")
	}
	select {
	case err := <-sub.done:
		close(sub.done)
		if !errors.Is(err, store.ErrClosed) {
			t.Errorf("Subscribe after Close = %v; want ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Subscribe did not return after Close")
	}
	if err := s.Subscribe(t.Context(), func(store.Event) {}); !errors.Is(err, store.ErrClosed) {
		t.Errorf("Subscribe on a closed store = %v; want ErrClosed", err)
	}
	if err := s.Publish(t.Context(), store.Event{}); !errors.Is(err, store.ErrClosed) {
		t.Errorf("Publish on a closed store = %v; want ErrClosed", err)
	}
}

// TestSubscribeSkipsGarbage publishes what is not an event on the channel:
// it is skipped, and the next event arrives.
func TestSubscribeSkipsGarbage(t *testing.T) {
	s := openStore(t, Options{})
	raw := rawClient(t)
	sub := subscribe(t, "s", s)
	sub.ready(t, s)
	for _, v := range []string{"not json", `["x"]`, ""} {
		if err := raw.Publish(t.Context(), s.channel, v).Err(); err != nil {
			t.Fatal(err)
		}
	}
	ev := store.Event{Kind: "ended", SessionID: "s1", Origin: "x"}
	if err := s.Publish(t.Context(), ev); err != nil {
		t.Fatal(err)
	}
	sub.expect(t, ev)
}

// TestSubscribeContextDone returns at once for a context already done.
func TestSubscribeContextDone(t *testing.T) {
	s := openStore(t, Options{})
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := s.Subscribe(ctx, func(ev store.Event) { t.Errorf("fn called with %+v", ev) }); !errors.Is(err, context.Canceled) {
		t.Errorf("Subscribe with a cancelled context = %v; want context.Canceled", err)
	}
	if err := s.Publish(ctx, store.Event{}); !errors.Is(err, context.Canceled) {
		t.Errorf("Publish with a cancelled context = %v; want context.Canceled", err)
	}
}
