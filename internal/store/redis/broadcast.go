package redisstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/mcpgate/mcpgate/internal/store"
)

const (
	// pingEvery is how long a subscription may be silent before it is
	// probed with PING; a second silent period means the connection is
	// dead (a network partition that closes nothing) and it is replaced.
	pingEvery = 15 * time.Second
	// Reconnection backoff: doubled after each failed attempt, with
	// jitter, reset once a subscription is confirmed.
	minBackoff = 100 * time.Millisecond
	maxBackoff = 5 * time.Second
)

// Publish sends ev, JSON-encoded, to every replica subscribed to the
// store's channel (<prefix>events), this one included: one round trip
// (PUBLISH). When it returns, every subscriber connected at that moment has
// the event in its connection's buffer; one that is disconnected misses it
// (Redis pub/sub keeps nothing).
func (s *Store) Publish(ctx context.Context, ev store.Event) error {
	end, err := s.begin(ctx)
	if err != nil {
		return err
	}
	defer end()
	v, err := json.Marshal(ev)
	if err != nil {
		return fmt.Errorf("store/redis: encode event: %w", err)
	}
	return s.wrap(s.rdb.Publish(ctx, s.channel, v).Err(), "publish", "")
}

// Subscribe calls fn for each event published on the store's channel, by
// any replica, until ctx ends (it then returns ctx.Err()) or the store is
// closed (store.ErrClosed). It holds one dedicated connection; after any
// error it reconnects and resubscribes, with exponential backoff (100ms to
// 5s, jittered), for as long as ctx lasts. Events published while it is
// disconnected are lost: a replica must not rely on seeing every event
// (the records in the store stay authoritative). fn is called from one
// goroutine, in order; while it runs, events queue in Redis's output
// buffer for the connection, which Redis closes if it overflows
// (client-output-buffer-limit pubsub), so fn should not block for long.
// An event that is not valid JSON is logged and skipped.
func (s *Store) Subscribe(ctx context.Context, fn func(store.Event)) error {
	if err := s.check(ctx); err != nil {
		return err
	}
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		return store.ErrClosed
	}
	s.subs.Add(1)
	s.mu.Unlock()
	defer s.subs.Done()

	parent := ctx
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-s.stop:
			cancel()
		case <-ctx.Done():
		}
	}()

	backoff := minBackoff
	failures := 0
	for {
		confirmed, err := s.subscribeOnce(ctx, fn, func() {
			if failures > 0 {
				s.log.Info("store_subscribe_recovered", "addr", s.addr, "channel", s.channel, "failed_attempts", failures)
			}
			failures = 0
		})
		if err := parent.Err(); err != nil {
			return err
		}
		if ctx.Err() != nil {
			return store.ErrClosed
		}
		if confirmed {
			backoff = minBackoff
		}
		failures++
		wait := jitter(backoff)
		if failures == 1 {
			s.log.Warn("store_subscribe_failed", "addr", s.addr, "channel", s.channel, "error", err, "retry_in", wait)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			continue // reports why, above
		case <-t.C:
		}
		backoff = min(2*backoff, maxBackoff)
	}
}

// subscribeOnce subscribes on a new connection and delivers events until
// the connection fails or ctx ends. confirmed reports whether Redis
// acknowledged the subscription (onConfirm is then called once).
func (s *Store) subscribeOnce(ctx context.Context, fn func(store.Event), onConfirm func()) (confirmed bool, err error) {
	ps := s.rdb.Subscribe(ctx, s.channel)
	// Closing the connection is what interrupts a blocked read when ctx
	// ends.
	stop := context.AfterFunc(ctx, func() { _ = ps.Close() })
	defer func() {
		stop()
		_ = ps.Close()
	}()
	probed := false
	for {
		msg, err := ps.ReceiveTimeout(ctx, pingEvery)
		if err != nil {
			if ctx.Err() != nil {
				return confirmed, ctx.Err()
			}
			if ne := net.Error(nil); errors.As(err, &ne) && ne.Timeout() && !probed {
				probed = true
				if err := ps.Ping(ctx); err != nil {
					return confirmed, err
				}
				continue
			}
			return confirmed, err
		}
		probed = false
		switch m := msg.(type) {
		case *redis.Subscription:
			if m.Kind == "subscribe" && m.Channel == s.channel && !confirmed {
				confirmed = true
				onConfirm()
			}
		case *redis.Message:
			var ev store.Event
			if err := json.Unmarshal([]byte(m.Payload), &ev); err != nil {
				s.log.Warn("store_event_undecodable", "addr", s.addr, "channel", s.channel, "error", err)
				continue
			}
			fn(ev)
		case *redis.Pong:
		}
	}
}

// jitter spreads d over [0.8d, 1.2d) so that replicas that lost Redis
// together do not reconnect in lockstep.
func jitter(d time.Duration) time.Duration {
	return d*4/5 + rand.N(d*2/5+1)
}
