package resilient

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/mcpgate/mcpgate/internal/core"
	"github.com/mcpgate/mcpgate/internal/upstream"
	"github.com/mcpgate/mcpgate/internal/upstream/httpup"
)

// failing is an in-process upstream whose Conn fails with an upstream
// 503 while fail is set, for tests of the breaker's and the backoff's
// clocks under testing/synctest (no sockets in a bubble).
type failing struct {
	fail  atomic.Bool
	calls atomic.Int64
	resp  *core.Message
}

func (f *failing) Probe(context.Context) (upstream.Info, error) { return upstream.Info{}, nil }
func (f *failing) Open(context.Context, upstream.OpenParams, upstream.Sink) (upstream.Conn, error) {
	return failingConn{f}, nil
}
func (f *failing) Close() error { return nil }

type failingConn struct{ f *failing }

func (c failingConn) RoundTrip(context.Context, *core.Message, upstream.Related) (*core.Message, error) {
	c.f.calls.Add(1)
	if c.f.fail.Load() {
		return nil, &core.Error{Code: core.CodeUpstreamError, Message: "upstream answered HTTP 503", Err: &httpup.HTTPError{StatusCode: 503, RetryAfter: 7 * time.Second}}
	}
	return c.f.resp, nil
}
func (failingConn) Send(context.Context, *core.Message) error { return nil }
func (failingConn) Listen(context.Context) error              { return nil }
func (failingConn) UpstreamSession() string                   { return "" }
func (failingConn) Close(context.Context) error               { return nil }

// TestCoolDown: on the bubble's clock, an open breaker names the time
// left of open_for and lets a probe through exactly when it is over; a
// 503's Retry-After of 7s is waited for exactly.
func TestCoolDown(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &failing{resp: core.ResultResponse(core.ID("1"), []byte(`{}`))}
		f.fail.Store(true)
		u := New(f, Options{Route: "r", Breaker: &Breaker{FailureRatio: 0.5, MinRequests: 2, Window: time.Minute, OpenFor: 15 * time.Second, HalfOpenRequests: 1},
			Retry: &Retry{Attempts: 2, Backoff: time.Millisecond, MaxBackoff: time.Millisecond, Budget: 30 * time.Second, On: Of(Class503)}})
		c, _ := u.Open(t.Context(), upstream.OpenParams{}, nil)
		list := msg(t, `{"jsonrpc":"2.0","id":1,"method":"tools/list"}`)

		start := time.Now()
		_, _ = c.RoundTrip(t.Context(), list, nil) // 503, 7s (Retry-After), 503: open
		if waited := time.Since(start); waited != 7*time.Second {
			t.Errorf("waited %v between tries, want the 7s Retry-After", waited)
		}
		if u.cb.State().String() != "open" {
			t.Fatalf("breaker %s after two failures", u.cb.State())
		}
		time.Sleep(10 * time.Second)
		_, err := c.RoundTrip(t.Context(), list, nil)
		var ce *core.Error
		if !errors.As(err, &ce) || ce.Code != core.CodeUpstreamUnavailable || ce.Header.Get("Retry-After") != "5" || !strings.Contains(ce.Message, "in 5s") {
			t.Fatalf("10s into open_for 15s: want Retry-After 5, got %v (%v)", err, ce.Header)
		}
		calls := f.calls.Load()
		time.Sleep(5*time.Second - time.Nanosecond)
		if _, err := c.RoundTrip(t.Context(), list, nil); !errors.As(err, &ce) || ce.Code != core.CodeUpstreamUnavailable {
			t.Fatalf("just before open_for ends: want a refusal, got %v", err)
		}
		time.Sleep(2 * time.Nanosecond)
		f.fail.Store(false)
		if resp, err := c.RoundTrip(t.Context(), list, nil); err != nil || resp.Kind != core.KindResponse {
			t.Fatalf("the probe after open_for: %v %v", resp, err)
		}
		if f.calls.Load() != calls+1 {
			t.Errorf("%d calls reached the upstream, want the one probe", f.calls.Load()-calls)
		}
		if u.cb.State().String() != "closed" {
			t.Errorf("breaker %s after its probe succeeded", u.cb.State())
		}
	})
}

// TestGaugeAcrossReload: a reload builds the route's new wrapper before
// it closes the old one; closing the old keeps the new one's series,
// closing the last removes it.
func TestGaugeAcrossReload(t *testing.T) {
	t.Parallel()
	m, reg := newMetrics(t)
	b := &Breaker{FailureRatio: 0.5, MinRequests: 1, Window: time.Second, OpenFor: time.Second, HalfOpenRequests: 1}
	old := New(&failing{}, Options{Route: "r", Breaker: b, Metrics: m})
	cur := New(&failing{}, Options{Route: "r", Breaker: b, Metrics: m})
	fx := &fixture{reg: reg}
	_ = old.Close()
	if v := fx.metric(t, "mcpgate_breaker_state", "route", "r"); v != 0 {
		t.Fatalf("gauge = %v after the old wrapper closed", v)
	}
	fams, _ := metricstestGather(reg)
	if _, ok := fams.Value("mcpgate_breaker_state", "route", "r"); !ok {
		t.Fatal("closing the old wrapper removed the new one's series")
	}
	_ = cur.Close()
	fams, _ = metricstestGather(reg)
	if _, ok := fams.Value("mcpgate_breaker_state", "route", "r"); ok {
		t.Error("the series outlived the route's last wrapper")
	}
}
