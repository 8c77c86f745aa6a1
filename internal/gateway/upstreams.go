package gateway

import (
	"log/slog"
	"strings"

	"github.com/mcpgate/mcpgate/internal/catalog"
	"github.com/mcpgate/mcpgate/internal/config"
	"github.com/mcpgate/mcpgate/internal/upstream/credentials"
	"github.com/mcpgate/mcpgate/internal/upstream/httpup"
	"github.com/mcpgate/mcpgate/internal/upstream/resilient"
	"github.com/mcpgate/mcpgate/internal/upstream/stdio"
)

// The upstream packages know nothing of the configuration file: the
// gateway translates a route's upstream section into their own options,
// revealing secrets here, at the one place that hands them over.

// httpOptions translates an HTTP upstream's configuration.
func httpOptions(c *config.HTTPUpstream) httpup.Options {
	o := httpup.Options{
		URL:                   c.URL,
		ConnectTimeout:        c.ConnectTimeout,
		ResponseHeaderTimeout: c.ResponseHeaderTimeout,
		MaxIdleConns:          c.MaxIdleConns,
	}
	o.Headers = reveal(c.Headers)
	if t := c.TLS; t != nil {
		o.TLS = &httpup.TLSOptions{
			CAFile: t.CAFile, CertFile: t.CertFile, KeyFile: t.KeyFile,
			ServerName: t.ServerName, InsecureSkipVerify: t.InsecureSkipVerify,
		}
	}
	return o
}

// stdioOptions translates a stdio upstream's configuration.
func stdioOptions(c *config.StdioUpstream) stdio.Options {
	o := stdio.Options{
		Command:         c.Command,
		Args:            c.Args,
		InheritEnv:      c.InheritEnv,
		Dir:             c.Dir,
		ShutdownGrace:   c.ShutdownGrace,
		MaxMessageBytes: int64(c.MaxMessageBytes),
	}
	o.Env = reveal(c.Env)
	o.Sandbox = sandboxOptions(c.Sandbox, c.Dir)
	return o
}

// sandboxOptions translates a stdio upstream's sandbox (validated: the
// user resolves), its paths made absolute from dir, where the process
// starts.
func sandboxOptions(c *config.Sandbox, dir string) *stdio.Sandbox {
	if c == nil {
		return nil
	}
	r := c.Rlimits
	sb := &stdio.Sandbox{
		NoNewPrivs:   c.NoNewPrivsOn(),
		AddressSpace: int64(r.AddressSpace), CPUSeconds: r.CPUSeconds, OpenFiles: r.OpenFiles, Processes: r.Processes,
		Memory: int64(c.Memory), CPU: c.CPU,
	}
	if c.User != "" {
		if u, err := config.ResolveUser(c.User); err == nil {
			sb.User = &stdio.User{UID: u.UID, GID: u.GID}
		}
	}
	if c.Filesystem != nil {
		fs := c.Filesystem.Resolved(dir)
		sb.Filesystem = &stdio.Filesystem{Read: fs.Read, Write: fs.Write, Exec: fs.Exec, Require: fs.Require}
	}
	return sb
}

// reveal is the plain text of configured secrets; nil for none.
func reveal(m map[string]config.Secret) map[string]string {
	if len(m) == 0 {
		return nil
	}
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v.Reveal()
	}
	return out
}

// credentialSource builds a route's per-principal credentials; nil when
// it has none. The static value of the same header or variable is the
// fallback only when the configuration says so (fallback: static).
func credentialSource(rc config.Route, log *slog.Logger) (*credentials.Source, error) {
	c := rc.Upstream.Credentials
	if c == nil {
		return nil, nil
	}
	o := credentials.Options{Route: rc.Name, Name: c.Target(), Env: rc.Upstream.Stdio != nil}
	switch {
	case c.PerPrincipal != nil:
		o.PerPrincipal = &credentials.PerPrincipal{File: c.PerPrincipal.File, Format: c.PerPrincipal.Format}
	case c.TokenExchange != nil:
		te := c.TokenExchange
		o.TokenExchange = &credentials.TokenExchange{
			TokenURL: te.TokenURL, ClientID: te.ClientID, ClientSecret: te.ClientSecret.Reveal(),
			Audience: te.Audience, Scope: te.Scope, Format: te.Format,
		}
	case c.Forward != nil:
		o.Forward = c.Forward.From
	}
	if c.Fallback == config.FallbackStatic {
		var static map[string]config.Secret
		if h := rc.Upstream.HTTP; h != nil {
			static = h.Headers
		} else if st := rc.Upstream.Stdio; st != nil {
			static = st.Env
		}
		for k, v := range static {
			if k == o.Name || !o.Env && strings.EqualFold(k, o.Name) {
				s := v.Reveal()
				o.Static = &s
			}
		}
	}
	return credentials.New(o, log)
}

// resilientOptions translates a route's retry and breaker blocks; ok is
// false when it has neither (no wrapper, no cost).
func resilientOptions(rc config.Route, log *slog.Logger, m *resilient.Metrics) (resilient.Options, bool) {
	u := rc.Upstream
	if u.Retry == nil && u.Breaker == nil {
		return resilient.Options{}, false
	}
	o := resilient.Options{
		Route: rc.Name, Logger: log.With("route", rc.Name), Metrics: m,
		Repeat: catalog.Repeat{Tools: rc.RetryTools, TrustAnnotations: rc.TrustAnnotations},
	}
	if r := u.Retry; r != nil {
		o.Retry = &resilient.Retry{Attempts: r.Attempts, Backoff: r.Backoff, MaxBackoff: r.MaxBackoff,
			Jitter: r.Jitter == config.JitterFull, Budget: r.Budget}
		for _, s := range r.On {
			if c, ok := resilient.ParseClass(s); ok { // Validate refused the others
				o.Retry.On |= resilient.Of(c)
			}
		}
	}
	if b := u.Breaker; b != nil {
		o.Breaker = &resilient.Breaker{FailureRatio: b.FailureRatio, MinRequests: b.MinRequests,
			Window: b.Window, OpenFor: b.OpenFor, HalfOpenRequests: b.HalfOpenRequests}
	}
	return o, true
}
