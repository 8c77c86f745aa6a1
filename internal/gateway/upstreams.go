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
	if len(c.Headers) > 0 {
		o.Headers = make(map[string]string, len(c.Headers))
		for k, v := range c.Headers {
			o.Headers[k] = v.Reveal()
		}
	}
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
	if len(c.Env) > 0 {
		o.Env = make(map[string]string, len(c.Env))
		for k, v := range c.Env {
			o.Env[k] = v.Reveal()
		}
	}
	return o
}
