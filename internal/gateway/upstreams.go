package gateway

import (
	"log/slog"
	"strings"

	"github.com/mcpgate/mcpgate/internal/config"
	"github.com/mcpgate/mcpgate/internal/upstream/credentials"
	"github.com/mcpgate/mcpgate/internal/upstream/httpup"
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
