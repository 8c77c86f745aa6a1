package gateway

import (
	"github.com/mcpgate/mcpgate/internal/config"
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
	return o
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
