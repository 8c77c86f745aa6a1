package gateway

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/mcpgate/mcpgate/internal/auth"
	"github.com/mcpgate/mcpgate/internal/config"
	"github.com/mcpgate/mcpgate/internal/interceptors/quota"
)

// The control plane: what the admin server (and Watch) ask of a running
// gateway, in terms of configuration texts and live sessions.

// ConfigSource says where the gateway's configuration came from, so that
// a text can be turned into a configuration as the gateway was started
// (command-line overrides applied), recorded and shown.
type ConfigSource struct {
	// Text is the configuration as written, recorded as the first version.
	// Nil: nothing is recorded at start.
	Text []byte
	// Parse turns a text into a configuration; prev is the configuration
	// in force, whose secrets a text holding config.Redacted keeps
	// (config.LoadBytesOver). Nil: config.LoadBytesOver.
	Parse func(text []byte, prev *config.Config) (*config.Config, error)
}

// ApplyReport is what applying a text did, or would do (dry run).
type ApplyReport struct {
	// Outcome is one of the Reload* outcomes.
	Outcome string `json:"outcome"`
	// Changes summarise the difference from the configuration in force.
	Changes []string `json:"changes"`
	// SessionsAffected counts, per route removed or given another
	// upstream, the live sessions that would end.
	SessionsAffected map[string]int `json:"sessions_affected,omitempty"`
	// RestartRequired names the settings only a restart can change.
	RestartRequired []string `json:"restart_required,omitempty"`
	// Problems are the reasons the text was refused, each with its path.
	Problems []string `json:"problems,omitempty"`
	// Version is the version recorded (not for a dry run or a refusal).
	Version int  `json:"version,omitempty"`
	DryRun  bool `json:"dry_run,omitempty"`
}

// Apply turns text into a configuration and puts it in force (Reload),
// recording it as a new version by who through source, unless dryRun,
// which only reports what would change. A refused text returns a report
// saying why and Reload's error.
func (g *Gateway) Apply(ctx context.Context, text []byte, who, source string, dryRun bool) (*ApplyReport, error) {
	return g.apply(ctx, text, who, source, 0, dryRun)
}

func (g *Gateway) apply(ctx context.Context, text []byte, who, source string, rollbackOf int, dryRun bool) (*ApplyReport, error) {
	prev := g.config()
	rep := &ApplyReport{DryRun: dryRun}
	next, err := g.parseConfig(text, prev)
	if err != nil {
		if !dryRun {
			g.reloadRefused(source, ReloadInvalid, err)
		}
		rep.Outcome, rep.Problems = ReloadInvalid, problemsOf(err)
		return rep, err
	}
	rep.Changes = configChanges(prev, next)
	rep.SessionsAffected = g.sessionsAffected(prev, next)
	if paths := g.restartPaths(prev, next); len(paths) > 0 {
		rep.Outcome, rep.RestartRequired = ReloadRestartRequired, paths
		err := &RestartRequired{Paths: paths}
		if !dryRun {
			g.reloadRefused(source, ReloadRestartRequired, err)
		}
		return rep, err
	}
	if len(rep.Changes) == 0 {
		rep.Outcome = ReloadUnchanged
		if !dryRun {
			g.reloads.WithLabelValues(ReloadUnchanged).Inc()
			g.log.Info("config_unchanged", "trigger", source)
		}
		return rep, nil
	}
	if dryRun {
		rep.Outcome = ReloadApplied
		return rep, nil
	}
	if err := g.Reload(ctx, next); err != nil {
		rep.Outcome, rep.Problems = reloadOutcome(err), problemsOf(err)
		g.log.Warn("config_reload_refused", "trigger", source, "outcome", rep.Outcome, "error", err)
		return rep, err
	}
	rep.Outcome = ReloadApplied
	v, err := g.history.record(ctx, ConfigVersion{Time: time.Now().UTC(), Who: who, Source: source, RollbackOf: rollbackOf,
		Changes: rep.Changes, Text: string(config.RedactText(text, next.Secrets()))})
	if err != nil {
		g.log.Warn("config_history_save_failed", "error", err)
	}
	rep.Version = v.Version
	g.applied.Store(int64(v.Version))
	g.log.Info("config_version", "version", v.Version, "who", who, "source", source, "changes", len(rep.Changes))
	return rep, nil
}

// followEvery is how often a replica whose history is shared looks for
// a version another replica recorded: one small read of the head.
const followEvery = 500 * time.Millisecond

// followConfig puts in force here the versions other replicas record,
// within followEvery of their recording, until ctx ends.
func (g *Gateway) followConfig(ctx context.Context) {
	go func() {
		tick := time.NewTicker(followEvery)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			if n, err := g.history.head(ctx); err == nil && int64(n) > g.applied.Load() {
				g.adoptLatest(ctx)
			}
		}
	}()
}

// adoptLatest reads the shared history and puts its last version in
// force here if it is newer than the one in force. Its text's REDACTED
// secrets take this replica's values.
func (g *Gateway) adoptLatest(ctx context.Context) {
	if err := g.history.refresh(ctx); err != nil {
		g.log.Warn("config_history_load_failed", "error", err)
		return
	}
	v, ok := g.history.current()
	if !ok || int64(v.Version) <= g.applied.Load() {
		return
	}
	next, err := g.parseConfig([]byte(v.Text), g.config())
	if err == nil {
		err = g.Reload(ctx, next)
	}
	if err != nil {
		g.log.Warn("config_version_not_adopted", "version", v.Version, "who", v.Who, "error", err)
		return
	}
	g.applied.Store(int64(v.Version))
	g.log.Info("config_version_adopted", "version", v.Version, "who", v.Who, "source", v.Source)
}

// Rollback applies recorded version n again, as a new version.
func (g *Gateway) Rollback(ctx context.Context, n int, who string, dryRun bool) (*ApplyReport, error) {
	v, ok := g.history.get(n)
	if !ok {
		return nil, fmt.Errorf("gateway: no configuration version %d (see the history)", n)
	}
	return g.apply(ctx, []byte(v.Text), who, "rollback", n, dryRun)
}

// Config is the configuration in force (the last one applied). Callers
// must not modify it.
func (g *Gateway) Config() *config.Config { return g.config() }

// History lists the recorded versions, oldest first.
func (g *Gateway) History() []ConfigVersion { return g.history.list() }

// ConfigText is the text of the version in force, secrets redacted, and
// its number (0 when none was recorded: a gateway built from a
// configuration in code).
func (g *Gateway) ConfigText() (string, int) {
	v, ok := g.history.current()
	if !ok {
		return "", 0
	}
	return v.Text, v.Version
}

// ValidateText checks a text as Apply would, changing nothing: the
// problems, or nil when it would load.
func (g *Gateway) ValidateText(text []byte) []string {
	_, err := g.parseConfig(text, g.config())
	return problemsOf(err)
}

func (g *Gateway) parseConfig(text []byte, prev *config.Config) (*config.Config, error) {
	if g.source.Parse != nil {
		return g.source.Parse(text, prev)
	}
	return config.LoadBytesOver(text, prev)
}

// restartPaths are the settings next changes that need a restart.
func (g *Gateway) restartPaths(prev, next *config.Config) []string {
	paths := restartRequired(prev, next)
	if !g.customAuth && auth.Configured(prev) != auth.Configured(next) {
		paths = append(paths, "auth")
	}
	return paths
}

// problemsOf lists an error's problems, one line each.
func problemsOf(err error) []string {
	if err == nil {
		return nil
	}
	var cfgErr *config.Error
	if errors.As(err, &cfgErr) {
		out := make([]string, len(cfgErr.Problems))
		for i, p := range cfgErr.Problems {
			out[i] = p.Error()
		}
		return out
	}
	return []string{err.Error()}
}

// configChanges summarises how next differs from prev: a line per route
// added, removed or changed (naming what changed in it), and per other
// top-level section changed.
func configChanges(prev, next *config.Config) []string {
	var out []string
	for _, r := range next.Routes {
		i := slices.IndexFunc(prev.Routes, func(p config.Route) bool { return p.Name == r.Name })
		if i < 0 {
			out = append(out, "routes: added "+r.Name)
			continue
		}
		if parts := diffFields(nil, "", prev.Routes[i], r, nil); len(parts) > 0 {
			for j := range parts {
				parts[j] = strings.TrimPrefix(parts[j], ".")
			}
			out = append(out, "routes: changed "+r.Name+" ("+strings.Join(parts, ", ")+")")
		}
	}
	for _, p := range prev.Routes {
		if !slices.ContainsFunc(next.Routes, func(r config.Route) bool { return r.Name == p.Name }) {
			out = append(out, "routes: removed "+p.Name)
		}
	}
	va, vb := reflect.ValueOf(prev).Elem(), reflect.ValueOf(next).Elem()
	for i := range va.NumField() {
		f := va.Type().Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "routes" || name == "" || name == "-" || !f.IsExported() {
			continue
		}
		if !reflect.DeepEqual(va.Field(i).Interface(), vb.Field(i).Interface()) {
			out = append(out, name+": changed")
		}
	}
	return out
}

// sessionsAffected counts, per route that next removes or gives another
// upstream, the live sessions that would end.
func (g *Gateway) sessionsAffected(prev, next *config.Config) map[string]int {
	ending := map[string]bool{}
	for _, p := range prev.Routes {
		i := slices.IndexFunc(next.Routes, func(r config.Route) bool { return r.Name == p.Name })
		if i < 0 || !sameUpstream(p, next.Routes[i]) {
			ending[p.Name] = true
		}
	}
	if len(ending) == 0 || g.sessions == nil {
		return nil
	}
	out := map[string]int{}
	for _, s := range g.sessions.List() {
		if r := s.Info().Route; ending[r] {
			out[r]++
		}
	}
	return out
}

// QuotaUsage is the usage of every quota limit that applies to the live
// session id (nil when none does, or before its first request).
func (g *Gateway) QuotaUsage(ctx context.Context, id string) ([]quota.Usage, error) {
	s, err := g.sessions.Get(id)
	if err != nil {
		return nil, err
	}
	info := s.Info()
	g.reloadMu.Lock()
	b := g.live.routes.named(info.Route)
	g.reloadMu.Unlock()
	if b == nil || b.quota == nil {
		return nil, nil
	}
	return b.quota.Usage(ctx, info)
}

// AuditAdmin records an operator's action in the audit trail, when there
// is one (see audit.Trail.Admin).
func (g *Gateway) AuditAdmin(principal, tool, outcome, reason string) {
	if g.trail != nil {
		g.trail.Admin(principal, tool, outcome, reason)
	}
}
