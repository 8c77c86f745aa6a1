package gateway

import (
	"context"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mcpgate/mcpgate/internal/auth"
	"github.com/mcpgate/mcpgate/internal/core"
	"github.com/mcpgate/mcpgate/internal/interceptors/logging"
	"github.com/mcpgate/mcpgate/internal/interceptors/ratelimit"
	"github.com/mcpgate/mcpgate/internal/metrics"
	"github.com/mcpgate/mcpgate/internal/pipeline"
	"github.com/mcpgate/mcpgate/internal/upstream"
)

// stages builds a route's pipeline stages from the configuration. Their
// order is pipeline.Order's, not this list's; a stage that is configured
// off is left out of the chain (it costs nothing).
func (g *Gateway) stages(env pipeline.Env, rep *pipeline.Reporter, authn *auth.Authenticator) []pipeline.Stage {
	stages := []pipeline.Stage{
		{Name: "logging", Interceptor: logging.New(g.log)},
		authn.Stage(env.Route),
		{Name: "limits", ClientToServer: ratelimit.New(g.rates.requestLimiter())},
	}
	if g.trail != nil {
		stages = append(stages, g.trail.Stage(env.Route))
	}
	// What a stage reports (Env.Report) reaches the observers of the
	// stages of this same list.
	rep.Bind(stages)
	return stages
}

// stageEnv is what the stages of one route are built with; without a
// metrics registry, collectors go to a private one nobody scrapes. Its
// Report hands events to the observers of the stages built with it,
// once they are bound (Reporter.Bind).
func stageEnv(route string, log *slog.Logger, reg *metrics.Registry) (pipeline.Env, *pipeline.Reporter) {
	rep := pipeline.NewReporter(route)
	env := pipeline.Env{Route: route, Logger: log.With("route", route), Metrics: prometheus.NewRegistry(), Report: rep.Report}
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
