package gateway

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mcpgate/mcpgate/internal/auth"
	"github.com/mcpgate/mcpgate/internal/config"
	"github.com/mcpgate/mcpgate/internal/core"
	"github.com/mcpgate/mcpgate/internal/interceptors/logging"
	"github.com/mcpgate/mcpgate/internal/interceptors/quota"
	"github.com/mcpgate/mcpgate/internal/interceptors/ratelimit"
	"github.com/mcpgate/mcpgate/internal/interceptors/sessiontools"
	"github.com/mcpgate/mcpgate/internal/metrics"
	"github.com/mcpgate/mcpgate/internal/pipeline"
	"github.com/mcpgate/mcpgate/internal/policy"
	"github.com/mcpgate/mcpgate/internal/session"
	"github.com/mcpgate/mcpgate/internal/upstream"
)

// stages builds a route's pipeline stages from the configuration. Their
// order is pipeline.Order's, not this list's; a stage that is configured
// off is left out of the chain (it costs nothing): a route no policy can
// match has no policy stage, one no quota matches no quota interceptor.
//
// It also returns the route's quota stage, which reads a session's usage.
func (g *Gateway) stages(cfg *config.Config, env pipeline.Env, rep *pipeline.Reporter, authn *auth.Authenticator) ([]pipeline.Stage, *quota.Stage, error) {
	pols, err := policy.New(env.Route, cfg.RoutePolicies(env.Route), env.Logger.With("component", "policy"))
	if err != nil {
		return nil, nil, err
	}
	q, err := quota.New(quota.Options{
		Route: env.Route, Quotas: cfg.Quotas, Meters: g.meters, Logger: env.Logger.With("component", "quota"), Metrics: env.Metrics,
		End: func(info *core.SessionInfo, reason string) {
			if g.sessions != nil {
				_ = g.sessions.End(context.Background(), info.ID, session.Reason(reason))
			}
		},
		Observe: func(ctx context.Context, info *core.SessionInfo, ev *pipeline.Event) {
			if f := g.observed.Load(); f != nil {
				f.Observe(ctx, info, ev)
			}
		},
	})
	if err != nil {
		return nil, nil, fmt.Errorf("quotas: %w", err)
	}
	// One stage, limits: the request rate first (it refuses without
	// counting anything), then the quotas.
	limits := q.Stage()
	rate := ratelimit.New(g.rates.requestLimiter())
	rc := routeNamed(cfg, env.Route)
	sessionTools := rc != nil && rc.SessionTools
	if !sessionTools {
		limits.ClientToServer = both(rate, limits.ClientToServer)
	}
	stages := []pipeline.Stage{
		{Name: "logging", Interceptor: logging.New(g.log.With("component", "pipeline"))},
		g.health.traffic.Stage(env.Route),
		authn.Stage(env.Route),
		limits,
		pols.Stage(),
	}
	if sessionTools {
		h := g.routeHealth(env.Route)
		st := sessiontools.New(sessiontools.Options{Route: env.Route, Quota: q, Health: h, Logger: env.Logger,
			Limits: func(info *core.SessionInfo) (time.Duration, time.Duration, bool) {
				if g.sessions == nil {
					return 0, 0, false
				}
				s, err := g.sessions.Get(info.ID)
				if err != nil {
					return 0, 0, false
				}
				l := s.Limits()
				return l.IdleTimeout, l.TTL, true
			},
			Shorten: func(info *core.SessionInfo, idle, ttl time.Duration) {
				if g.sessions == nil {
					return
				}
				if s, err := g.sessions.Get(info.ID); err == nil {
					s.Shorten(session.Limits{IdleTimeout: idle, TTL: ttl})
				}
			},
			End: func(info *core.SessionInfo) {
				if g.sessions != nil {
					_ = g.sessions.End(context.Background(), info.ID, session.ReasonSessionTool)
				}
			},
			Readiness: func() any { return g.Readiness() },
		})
		// The request rate binds the session's own tools too: it moves
		// in front of them, still counted once per request.
		tools := st.Stage()
		tools.ClientToServer = both(rate, tools.ClientToServer)
		stages = append(stages, tools, h.Stage())
	}
	if g.extraStages != nil {
		stages = append(stages, g.extraStages(env.Route)...)
	}
	if g.trail != nil {
		stages = append(stages, g.trail.Stage(env.Route))
	}
	stages = append(stages, g.tracer.Stages(env.Route)...)
	// What a stage reports (Env.Report) reaches the observers of the
	// stages of this same list.
	rep.Bind(stages)
	return stages, q, nil
}

// both is outer wrapping inner; either may be nil (off).
func both(outer, inner core.Interceptor) core.Interceptor {
	switch {
	case outer == nil:
		return inner
	case inner == nil:
		return outer
	}
	return func(next core.Handler) core.Handler { return outer(inner(next)) }
}

// stageEnv is what the stages of one route are built with; without a
// metrics registry, collectors go to a private one nobody scrapes. Its
// Report hands events to the observers of the stages built with it,
// once they are bound (Reporter.Bind).
func stageEnv(route string, log *slog.Logger, reg *metrics.Registry) (pipeline.Env, *pipeline.Reporter) {
	rep := pipeline.NewReporter(route)
	env := pipeline.Env{Route: route, Logger: log.With("component", "pipeline", "route", route), Metrics: prometheus.NewRegistry(), Report: rep.Report}
	if reg != nil {
		env.Metrics = reg
	}
	return env, rep
}

// tap is the upstream.Tap of one upstream layer (origin "upstream" for the
// HTTP and stdio upstreams, "bridge" for the era bridge): what it sends on
// its own reaches the observers of the session's route as an Originated
// event (pipeline.Event), so an audit stage sees what the server really
// received.
func (g *Gateway) tap(origin string) upstream.Tap {
	return func(ctx context.Context, s *core.SessionInfo, m *core.Message) {
		if f := g.observed.Load(); f != nil && s != nil {
			f.Originated(ctx, s, m, origin)
		}
	}
}

// routeHealth is the route's upstream health tracker, one per route name
// for the gateway's life (a reload keeps what its sessions saw).
func (g *Gateway) routeHealth(route string) *sessiontools.Health {
	g.upHealthMu.Lock()
	defer g.upHealthMu.Unlock()
	if g.upHealth == nil {
		g.upHealth = map[string]*sessiontools.Health{}
	}
	h := g.upHealth[route]
	if h == nil {
		h = sessiontools.NewHealth()
		g.upHealth[route] = h
	}
	return h
}

// routeNamed is the configuration of the named route; nil if none.
func routeNamed(cfg *config.Config, name string) *config.Route {
	for i := range cfg.Routes {
		if cfg.Routes[i].Name == name {
			return &cfg.Routes[i]
		}
	}
	return nil
}
