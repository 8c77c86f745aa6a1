package gateway

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/mcpgate/mcpgate/internal/config"
	"github.com/mcpgate/mcpgate/internal/core"

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

var _ session.Recounter = sharedCaps{}

// Admit admits once the store can be trusted: after Redis lost its data,
// not before every replica has had the time to count its sessions back
// in (redisstore.Store.Settle), or the new sessions would be admitted
// beside the old ones.
func (c sharedCaps) Admit(ctx context.Context, id, holder string, scopes []session.ScopeCap, idle time.Duration) ([]string, error) {
	if err := c.st.Settle(ctx); err != nil {
		return nil, err
	}
	cs := make([]redisstore.CapScope, len(scopes))
	for i, sc := range scopes {
		cs[i] = redisstore.CapScope{Key: scopeKey(sc), Max: sc.Cap.Max, Policy: string(sc.Cap.Policy)}
	}
	evicted, err := c.st.Admit(ctx, id, holder, cs, idle)
	var full *redisstore.CapFullError
	if errors.As(err, &full) && full.Index >= 0 && full.Index < len(scopes) {
		sc := scopes[full.Index]
		return nil, &session.CapError{Scope: sc.Scope, Key: sc.Key, Max: sc.Cap.Max, RetryAfter: full.RetryAfter}
	}
	return evicted, err
}

func (c sharedCaps) Release(ctx context.Context, id string) error { return c.st.Release(ctx, id) }

// Recount puts a live session back under the shared caps after Redis lost
// its data (the replica holding it writes its record back first).
func (c sharedCaps) Recount(ctx context.Context, id, holder string, scopes []session.ScopeCap, idle time.Duration, created time.Time) error {
	keys := make([]string, len(scopes))
	for i, sc := range scopes {
		keys[i] = scopeKey(sc)
	}
	return c.st.Recount(ctx, id, holder, keys, idle, created)
}

// hopKeys derives the keys of the internal hop from the session id keys
// every replica shares, so a cluster needs no second secret; rotating id
// keys rotates them too (any verifies, the first signs).
func hopKeys(keys []config.IDKey) [][]byte {
	out := make([][]byte, len(keys))
	for i, k := range keys {
		out[i] = derive(k, "mcpgate cluster hop v1")
	}
	return out
}

// stateKey derives the key that protects the requestState the bridge
// mints from the first session id key; nil (a random key per process)
// without id keys.
func stateKey(keys []config.IDKey) []byte {
	if len(keys) == 0 {
		return nil
	}
	return derive(keys[0], "mcpgate request state v1")
}

func derive(k config.IDKey, label string) []byte {
	m := hmac.New(sha256.New, []byte(k.Secret.Reveal()))
	m.Write([]byte(label))
	return m.Sum(nil)
}

// startHop listens on the cluster's internal address, serves the requests
// other replicas forward, and announces this replica until ctx ends. It
// returns the server, for shutdown with the others.
func (g *Gateway) startHop(ctx context.Context) (*http.Server, error) {
	cl := g.cfg.Cluster
	if cl.Listen == "" {
		return nil, nil
	}
	ln, err := net.Listen("tcp", cl.Listen)
	if err != nil {
		return nil, fmt.Errorf("cluster.listen %s: %w", cl.Listen, err)
	}
	adv := cl.Advertise
	if adv == "" {
		adv = ln.Addr().String()
	}
	srv := &http.Server{
		Handler:           g.front.InternalHandler(),
		ReadHeaderTimeout: g.cfg.Server.ReadHeaderTimeout,
		ReadTimeout:       g.cfg.Server.ReadTimeout,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(g.log.Handler(), slog.LevelWarn),
	}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			g.log.Error("serve_failed", "address", ln.Addr().String(), "error", err)
		}
	}()
	go g.front.Announce(ctx, adv)
	g.log.Info("cluster_listening", "address", ln.Addr().String(), "advertise", adv, "replica", g.front.ReplicaID())
	return srv, nil
}

// upstreamEra maps a route's upstream.era to the bridge's pin.
func upstreamEra(era string) core.Era {
	switch era {
	case config.EraLegacy:
		return core.EraLegacy
	case config.EraModern:
		return core.EraModern
	}
	return core.EraUnknown
}
