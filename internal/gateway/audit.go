package gateway

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"regexp"

	"github.com/mcpgate/mcpgate/internal/audit"
	"github.com/mcpgate/mcpgate/internal/config"
	"github.com/mcpgate/mcpgate/internal/metrics"
	"github.com/mcpgate/mcpgate/internal/redact"
)

// auditDetector is the implementation of a detector set that
// audit.redact.detectors may name (audit.Detectors lists the names the
// configuration accepts): the policies' built-in set of that name, as a
// Scrubber. A name the configuration accepts but redact lacks stops the
// gateway at build time (New, and so validate) rather than recording
// payloads the operator asked to be scrubbed.
func auditDetector(name string) (audit.Scrubber, error) {
	rules, ok := redact.Lookup(name)
	if !ok {
		return nil, fmt.Errorf("the %q detector set is not built into this gateway", name)
	}
	r, err := redact.Compile(rules)
	if err != nil {
		return nil, err
	}
	return audit.ScrubberFunc(func(payload []byte) []byte {
		if out, _, changed := r.JSON(payload); changed {
			return out
		}
		return payload
	}), nil
}

// newTrail makes the audit trail the configuration describes, not yet
// open (Run opens it, so validate writes nothing); nil without an audit
// block.
func newTrail(cfg *config.Config, g *Gateway, reg *metrics.Registry) (*audit.Trail, error) {
	a := cfg.Audit
	if a == nil {
		return nil, nil
	}
	var scrubbers []audit.Scrubber
	var res []*regexp.Regexp
	for i, p := range a.Redact.Patterns {
		re, err := regexp.Compile(p)
		if err != nil {
			return nil, fmt.Errorf("audit.redact.patterns[%d]: %w", i, err)
		}
		res = append(res, re)
	}
	if s := audit.Patterns(res...); s != nil {
		scrubbers = append(scrubbers, s)
	}
	for i, name := range a.Redact.Detectors {
		sc, err := auditDetector(name)
		if err != nil {
			return nil, fmt.Errorf("audit.redact.detectors[%d]: %w", i, err)
		}
		scrubbers = append(scrubbers, sc)
	}
	opts := audit.Options{
		Payloads: a.Payloads, MaxPayloadBytes: int(a.MaxPayloadBytes), RedactPaths: a.Redact.Paths, Scrubbers: scrubbers,
		Buffer: a.Buffer, SpoolDir: a.SpoolDir, Logger: g.log.With("component", "audit"),
	}
	if reg != nil {
		opts.Metrics = reg
	}
	return audit.New(opts)
}

// auditSinks opens the configured sinks (Run).
func auditSinks(a *config.Audit) ([]audit.SinkOptions, error) {
	var out []audit.SinkOptions
	fail := func(err error) ([]audit.SinkOptions, error) {
		for _, s := range out {
			_ = s.Sink.Close()
		}
		return nil, err
	}
	for i, sc := range a.Sinks {
		switch {
		case sc.File != nil:
			fs, err := audit.NewFileSink(audit.FileOptions{Path: sc.File.Path, MaxSize: int64(sc.File.MaxSize), MaxFiles: sc.File.MaxFiles, Fsync: a.Fsync})
			if err != nil {
				return fail(fmt.Errorf("audit.sinks[%d]: %w", i, err))
			}
			out = append(out, audit.SinkOptions{Sink: fs})
		case sc.Stdout != nil:
			out = append(out, audit.SinkOptions{Sink: audit.NewWriterSink("stdout", os.Stdout)})
		case sc.HTTP != nil:
			h := http.Header{}
			for k, v := range sc.HTTP.Headers {
				h.Set(k, v.Reveal()) // the one place these secrets leave the configuration
			}
			hs := audit.NewHTTPSink(audit.HTTPOptions{URL: sc.HTTP.URL, Header: h, Batch: sc.HTTP.Batch, Flush: sc.HTTP.Flush})
			out = append(out, audit.SinkOptions{Sink: hs, Batch: sc.HTTP.Batch, Flush: sc.HTTP.Flush})
		}
	}
	return out, nil
}

// openTrail opens the trail's sinks; nothing is recorded before.
func (g *Gateway) openTrail() error {
	if g.trail == nil {
		return nil
	}
	sinks, err := auditSinks(g.cfg.Audit)
	if err != nil {
		return err
	}
	if err := g.trail.Open(sinks); err != nil {
		return err
	}
	return nil
}

// closeTrail delivers what the sinks take within a budget of its own
// (server.shutdown_timeout, whatever the drain used of it); the rest stays
// in the spools for the next start.
func (g *Gateway) closeTrail() {
	if g.trail == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), g.cfg.Server.ShutdownTimeout)
	defer cancel()
	if err := g.trail.Close(ctx); err != nil {
		g.log.Error("audit_close_failed", "error", err)
	}
}
