package gateway

import (
	"context"
	"errors"
	"time"

	"github.com/mcpgate/mcpgate/internal/session"
	redisstore "github.com/mcpgate/mcpgate/internal/store/redis"
)

// sharedCaps makes the session caps cluster-wide: admission runs as one
// script in the Redis every replica shares (see redisstore.Store.Admit),
// so no cap is exceeded across the cluster, not even for an instant.
type sharedCaps struct{ st *redisstore.Store }

var _ session.Admitter = sharedCaps{}

// scopeKey names a scope in the shared store.
func scopeKey(sc session.ScopeCap) string {
	if sc.Scope == session.ScopeGlobal {
		return "global"
	}
	return string(sc.Scope) + ":" + sc.Key
}

func (c sharedCaps) Admit(ctx context.Context, id string, scopes []session.ScopeCap, idle time.Duration) ([]string, error) {
	cs := make([]redisstore.CapScope, len(scopes))
	for i, sc := range scopes {
		cs[i] = redisstore.CapScope{Key: scopeKey(sc), Max: sc.Cap.Max, Policy: string(sc.Cap.Policy)}
	}
	evicted, err := c.st.Admit(ctx, id, cs, idle)
	var full *redisstore.CapFullError
	if errors.As(err, &full) && full.Index >= 0 && full.Index < len(scopes) {
		sc := scopes[full.Index]
		return nil, &session.CapError{Scope: sc.Scope, Key: sc.Key, Max: sc.Cap.Max, RetryAfter: full.RetryAfter}
	}
	return evicted, err
}

func (c sharedCaps) Release(ctx context.Context, id string) error { return c.st.Release(ctx, id) }
