package inproc

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpgate/mcpgate/internal/core"
	"github.com/mcpgate/mcpgate/internal/upstream"
)

// Options configure an in-process upstream.
type Options struct {
	// Server returns the server of one gateway session; s is nil for the
	// era probe. ctx is the context the session is opened under (the
	// creating request's, for a new session). Returning nil refuses the
	// session (503 to the client).
	Server func(ctx context.Context, s *core.SessionInfo) *mcp.Server
	// Tap sees what this package sends the server on its own (the probe,
	// notifications/cancelled).
	Tap upstream.Tap
	// ProbeTimeout bounds the era probe; no answer in time means legacy.
	// Default 5s.
	ProbeTimeout time.Duration
}

// Upstream is one embedded server, connected once per gateway session.
type Upstream struct {
	o      Options
	route  string
	log    *slog.Logger
	closed atomic.Bool

	probeMu sync.Mutex // held by the one probe in flight
	info    atomic.Pointer[upstream.Info]
}

// New returns the upstream of route.
func New(o Options, route string, log *slog.Logger) (*Upstream, error) {
	if o.Server == nil {
		return nil, errors.New("inproc: no server factory")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if o.ProbeTimeout <= 0 {
		o.ProbeTimeout = 5 * time.Second
	}
	return &Upstream{o: o, route: route, log: log}, nil
}

// SessionKey is the context key under which the server session's context
// (and so every handler's) carries the gateway session's *core.SessionInfo.
type SessionKey struct{}

// SessionOf returns the gateway session a handler's ctx serves, or nil.
func SessionOf(ctx context.Context) *core.SessionInfo {
	s, _ := ctx.Value(SessionKey{}).(*core.SessionInfo)
	return s
}

// Open connects a new server session for one gateway session. ctx bounds
// the connection only; the session lives until Conn.Close.
func (u *Upstream) Open(ctx context.Context, p upstream.OpenParams, sink upstream.Sink) (upstream.Conn, error) {
	if u.closed.Load() {
		return nil, fmt.Errorf("inproc: open: %w", upstream.ErrClosed)
	}
	if sink == nil {
		sink = discard{}
	}
	return u.connect(ctx, p.Session, p.Era, sink)
}

func (u *Upstream) connect(ctx context.Context, s *core.SessionInfo, era core.Era, sink upstream.Sink) (*Conn, error) {
	srv := u.o.Server(ctx, s)
	if srv == nil {
		return nil, core.NewError(core.CodeInternalError, "the server refused the session").WithStatus(503)
	}
	sid := "probe"
	if s != nil {
		sid = s.ID
	}
	c := newConn(u, s, era, sink, u.log.With("route", u.route, "session", core.Fingerprint(sid)))
	// The server session's context carries no cancellation of the opening
	// request: it lives as long as the gateway session. Its values are
	// the handlers' (SessionOf).
	sctx := context.WithValue(context.WithoutCancel(ctx), SessionKey{}, s)
	ss, err := srv.Connect(sctx, (*transport)(c), nil)
	if err != nil {
		c.end(err)
		return nil, fmt.Errorf("inproc: connect: %w", err)
	}
	c.ss = ss
	return c, nil
}

// Close refuses further sessions. Open Conns belong to their sessions.
func (u *Upstream) Close() error {
	u.closed.Store(true)
	return nil
}

// Probe finds out once which era the server speaks, with server/discover
// on a server session of its own. Concurrent callers wait for the one
// probe; no answer within the probe timeout means legacy.
func (u *Upstream) Probe(ctx context.Context) (upstream.Info, error) {
	if i := u.info.Load(); i != nil {
		return clone(*i), nil
	}
	u.probeMu.Lock()
	defer u.probeMu.Unlock()
	if i := u.info.Load(); i != nil {
		return clone(*i), nil
	}
	if u.closed.Load() {
		return upstream.Info{}, fmt.Errorf("inproc: probe: %w", upstream.ErrClosed)
	}
	c, err := u.connect(ctx, nil, core.EraModern, discard{})
	if err != nil {
		return upstream.Info{}, err
	}
	defer func() { _ = c.Close(context.WithoutCancel(ctx)) }()
	pctx, cancel := context.WithTimeout(ctx, u.o.ProbeTimeout)
	defer cancel()
	req, err := core.Decode(discoverRequest)
	if err != nil {
		return upstream.Info{}, err
	}
	req.Direction = core.ClientToServer
	u.o.Tap.Emit(ctx, nil, req)
	resp, err := c.call(pctx, req, nil, true)
	var info upstream.Info
	switch {
	case err == nil:
		u.o.Tap.Emit(ctx, nil, resp)
		info = discoverOutcome(resp)
	case ctx.Err() != nil:
		return upstream.Info{}, fmt.Errorf("inproc: probe: %w", ctx.Err())
	case errors.Is(err, context.DeadlineExceeded):
		info = upstream.Info{Era: core.EraLegacy}
	default:
		return upstream.Info{}, fmt.Errorf("inproc: probe: %w", err)
	}
	u.log.Info("inproc_probe", "route", u.route, "era", info.Era.String(), "modern_versions", info.ModernVersions, "modern_only", info.ModernOnly)
	u.info.Store(&info)
	return clone(info), nil
}

func clone(i upstream.Info) upstream.Info {
	i.ModernVersions = slices.Clone(i.ModernVersions)
	return i
}

// discoverRequest is the probe: the modern version mcpgate prefers, no
// client capabilities.
var discoverRequest = func() []byte {
	b, err := json.Marshal(map[string]any{"jsonrpc": "2.0", "id": "mcpgate-discover", "method": "server/discover",
		"params": map[string]any{"_meta": map[string]any{
			core.MetaProtocolVersion:    core.Version20260728,
			core.MetaClientCapabilities: map[string]any{},
			core.MetaClientInfo:         map[string]string{"name": "mcpgate", "version": "embedded"},
		}}})
	if err != nil {
		panic(err)
	}
	return b
}()

// discoverOutcome reads the answer to server/discover as httpup does: modern
// when it lists a modern revision (modern only when it lists no legacy
// one), or refuses the version naming modern ones; legacy otherwise.
func discoverOutcome(m *core.Message) upstream.Info {
	var versions []string
	switch m.Kind {
	case core.KindResponse:
		var r struct {
			SupportedVersions []string `json:"supportedVersions"`
		}
		_ = json.Unmarshal(m.Result, &r)
		versions = r.SupportedVersions
	case core.KindError:
		var e struct {
			Code int `json:"code"`
			Data struct {
				Supported []string `json:"supported"`
			} `json:"data"`
		}
		if json.Unmarshal(m.Error, &e) != nil || e.Code != core.CodeUnsupportedProtocolVersion {
			return upstream.Info{Era: core.EraLegacy}
		}
		versions = e.Data.Supported
	}
	var modern []string
	legacy := false
	for _, v := range versions {
		switch core.EraOf(v) {
		case core.EraModern:
			if !slices.Contains(modern, v) {
				modern = append(modern, v)
			}
		case core.EraLegacy:
			legacy = true
		}
	}
	if len(modern) == 0 {
		return upstream.Info{Era: core.EraLegacy}
	}
	return upstream.Info{Era: core.EraModern, ModernVersions: modern, ModernOnly: !legacy}
}

type discard struct{}

func (discard) Deliver(*core.Message) {}
func (discard) Closed(error)          {}
