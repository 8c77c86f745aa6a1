package ratelimit_test

import (
	"context"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/internal/core"
	"github.com/mcpgate/mcpgate/internal/interceptors/ratelimit"
	"github.com/mcpgate/mcpgate/internal/limits"
)

func msg(t *testing.T, raw string, s *core.SessionInfo) *core.Message {
	t.Helper()
	m, err := core.Decode([]byte(raw))
	if err != nil {
		t.Fatal(err)
	}
	m.Session, m.Direction = s, core.ClientToServer
	return m
}

func TestRateLimit(t *testing.T) {
	calls := 0
	next := func(context.Context, *core.Message) (*core.Message, error) { calls++; return nil, nil }
	h := ratelimit.New(limits.NewBuckets(0.001, 1, limits.BucketOptions{}))(next)
	alice1 := &core.SessionInfo{ID: "1", Principal: "alice", RemoteAddr: "10.0.0.1:1"}
	alice2 := &core.SessionInfo{ID: "2", Principal: "alice", RemoteAddr: "10.0.0.2:2"}
	anonA := &core.SessionInfo{ID: "3", Principal: "anonymous", RemoteAddr: "10.0.0.3:3"}
	anonA2 := &core.SessionInfo{ID: "4", Principal: "anonymous", RemoteAddr: "10.0.0.3:4"}
	req := `{"jsonrpc":"2.0","id":1,"method":"tools/list"}`

	if _, err := h(t.Context(), msg(t, req, alice1)); err != nil {
		t.Fatalf("first request: %v", err)
	}
	// A second session of the same principal shares the bucket.
	_, err := h(t.Context(), msg(t, req, alice2))
	var e *core.Error
	if !errors.As(err, &e) || e.Code != core.CodeRateLimited || e.HTTPStatus() != http.StatusTooManyRequests || e.Header.Get("Retry-After") == "" {
		t.Fatalf("over the rate: %v", err)
	}
	// Notifications and responses are never limited.
	if _, err := h(t.Context(), msg(t, `{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":1}}`, alice1)); err != nil {
		t.Fatalf("notification limited: %v", err)
	}
	// Anonymous clients are keyed by address, not by the shared principal.
	if _, err := h(t.Context(), msg(t, req, anonA)); err != nil {
		t.Fatalf("anonymous client: %v", err)
	}
	if _, err := h(t.Context(), msg(t, req, anonA2)); err == nil {
		t.Fatal("a new session from the same address refilled the bucket")
	}
	if calls != 3 {
		t.Errorf("next called %d times, want 3", calls)
	}
	if ratelimit.New(nil) != nil {
		t.Error("a nil limiter must leave the stage out")
	}
	if ratelimit.New(limits.NewBuckets(0, 0, limits.BucketOptions{})) != nil {
		t.Error("a switched-off bucket must leave the stage out")
	}
}

// A limiter that cannot decide (a shared store out of reach) refuses with
// 503 and a short Retry-After; the request is not forwarded.
func TestRateLimitUnavailable(t *testing.T) {
	down := errors.New("dial tcp 127.0.0.1:6379: connection refused")
	tests := []struct {
		name       string
		retry      time.Duration
		err        error
		wantStatus int
		wantCode   int
		wantRetry  string
	}{
		{"limited", 2500 * time.Millisecond, limits.ErrLimited, http.StatusTooManyRequests, core.CodeRateLimited, "3"},
		{"too many keys", time.Minute, limits.ErrTooManyKeys, http.StatusTooManyRequests, core.CodeRateLimited, "60"},
		{"store unreachable", 0, down, http.StatusServiceUnavailable, core.CodeInternalError, "1"},
		{"deadline", 0, context.DeadlineExceeded, http.StatusServiceUnavailable, core.CodeInternalError, "1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var gotCtx context.Context
			l := limits.LimiterFunc(func(ctx context.Context, key string, _ time.Time) (time.Duration, error) {
				gotCtx = ctx
				return tt.retry, tt.err
			})
			called := false
			h := ratelimit.New(l)(func(context.Context, *core.Message) (*core.Message, error) { called = true; return nil, nil })
			ctx := context.WithValue(t.Context(), ctxKey{}, 1)
			_, err := h(ctx, msg(t, `{"jsonrpc":"2.0","id":1,"method":"tools/list"}`, &core.SessionInfo{ID: "1", Principal: "alice"}))
			var e *core.Error
			if !errors.As(err, &e) || e.HTTPStatus() != tt.wantStatus || e.Code != tt.wantCode || e.Header.Get("Retry-After") != tt.wantRetry {
				t.Fatalf("error %v (status %d, Retry-After %q); want code %d, status %d, Retry-After %q",
					err, e.HTTPStatus(), e.Header.Get("Retry-After"), tt.wantCode, tt.wantStatus, tt.wantRetry)
			}
			if tt.wantStatus == http.StatusServiceUnavailable && !errors.Is(err, tt.err) {
				t.Errorf("the cause %v is not kept", tt.err)
			}
			if called {
				t.Error("request forwarded")
			}
			if gotCtx.Value(ctxKey{}) != 1 {
				t.Error("the limiter did not get the request's context")
			}
		})
	}
}

type ctxKey struct{}

// TestKeyPerTenant: a principal's requests are counted within its tenant;
// anonymous clients by address.
func TestKeyPerTenant(t *testing.T) {
	for _, c := range []struct {
		info core.SessionInfo
		want string
	}{
		{core.SessionInfo{Principal: "bot"}, "principal:bot"},
		{core.SessionInfo{Principal: "bot", Tenant: "acme"}, "principal:acme/bot"},
		{core.SessionInfo{Principal: "bot", Tenant: "globex"}, "principal:globex/bot"},
		{core.SessionInfo{Principal: "anonymous", Tenant: "acme", RemoteAddr: "192.0.2.7:5000"}, "address:192.0.2.7"},
	} {
		if got := ratelimit.Key(&c.info); got != c.want {
			t.Errorf("Key(%+v) = %q, want %q", c.info, got, c.want)
		}
	}
}
