package admin

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpgate/mcpgate/internal/gateway"
	"github.com/mcpgate/mcpgate/internal/session"
)

// The resources' URIs are the control plane's interface.
const (
	uriConfig   = "mcpgate://config"
	uriHistory  = "mcpgate://config/history"
	uriSessions = "mcpgate://sessions"
	uriSession  = "mcpgate://sessions/{id}"
	uriHealth   = "mcpgate://health"
	uriRoute    = "mcpgate://health/{route}"
	uriMetrics  = "mcpgate://metrics"
)

func addResources(srv *mcp.Server, s *Server) {
	g := s.opts.Gateway
	text := func(uri, mime string, body func() (string, error)) mcp.ResourceHandler {
		return func(_ context.Context, r *mcp.ReadResourceRequest) (*mcp.ReadResourceResult, error) {
			b, err := body()
			if err != nil {
				return nil, err
			}
			return &mcp.ReadResourceResult{Contents: []*mcp.ResourceContents{{URI: r.Params.URI, MIMEType: mime, Text: b}}}, nil
		}
	}
	srv.AddResource(&mcp.Resource{URI: uriConfig, Name: "config", MIMEType: "application/yaml",
		Description: "The configuration in force, secrets redacted; updated when a new version is applied."},
		text(uriConfig, "application/yaml", func() (string, error) {
			t, v := g.ConfigText()
			if v == 0 {
				return "", fmt.Errorf("this gateway was built from a configuration in code: there is no text to show")
			}
			return t, nil
		}))
	srv.AddResource(&mcp.Resource{URI: uriHistory, Name: "config-history", MIMEType: "application/json",
		Description: "The configuration versions applied, newest last."},
		text(uriHistory, "application/json", func() (string, error) { return jsonText(g.History()) }))
	srv.AddResource(&mcp.Resource{URI: uriSessions, Name: "sessions", MIMEType: "application/json",
		Description: "The live sessions of this gateway (at most 500, oldest first; sessions_list pages through all)."},
		text(uriSessions, "application/json", func() (string, error) {
			all := matching(g.Sessions().List(), func(*sessionT) bool { return true })
			now := time.Now()
			out := sessionsListOut{Total: len(all), Sessions: []SessionEntry{}}
			for i := 0; i < len(all) && i < pageMax; i++ {
				out.Sessions = append(out.Sessions, entryOf(all[i], now))
			}
			return jsonText(out)
		}))
	srv.AddResourceTemplate(&mcp.ResourceTemplate{URITemplate: uriSession, Name: "session", MIMEType: "application/json",
		Description: "One live session."},
		func(_ context.Context, r *mcp.ReadResourceRequest) (*mcp.ReadResourceResult, error) {
			id := strings.TrimPrefix(r.Params.URI, "mcpgate://sessions/")
			sess, err := g.Sessions().Get(id)
			if err != nil {
				return nil, mcp.ResourceNotFoundError(r.Params.URI)
			}
			b, err := jsonText(entryOf(sess, time.Now()))
			if err != nil {
				return nil, err
			}
			return &mcp.ReadResourceResult{Contents: []*mcp.ResourceContents{{URI: r.Params.URI, MIMEType: "application/json", Text: b}}}, nil
		})
	srv.AddResource(&mcp.Resource{URI: uriHealth, Name: "health", MIMEType: "application/json",
		Description: "The gateway's readiness: listeners, store and each route's upstream; updated when it changes."},
		text(uriHealth, "application/json", func() (string, error) { return jsonText(g.Readiness()) }))
	srv.AddResourceTemplate(&mcp.ResourceTemplate{URITemplate: uriRoute, Name: "route-health", MIMEType: "application/json",
		Description: "One route's upstream state: up or down (routes[].health; a route without checks is up)."},
		func(_ context.Context, r *mcp.ReadResourceRequest) (*mcp.ReadResourceResult, error) {
			b, ok := routeHealth(g, r.Params.URI)
			if !ok {
				return nil, mcp.ResourceNotFoundError(r.Params.URI)
			}
			return &mcp.ReadResourceResult{Contents: []*mcp.ResourceContents{{URI: r.Params.URI, MIMEType: "application/json", Text: b}}}, nil
		})
	srv.AddResource(&mcp.Resource{URI: uriMetrics, Name: "metrics", MIMEType: "application/json",
		Description: "A summary: live sessions per route and era, the configuration version."},
		text(uriMetrics, "application/json", func() (string, error) { return jsonText(summary(s)) }))
}

// routeHealthOut is mcpgate://health/{route}.
type routeHealthOut struct {
	Route  string `json:"route"`
	Status string `json:"status"`
}

// routeHealth is the text of mcpgate://health/{route}; false for a route
// the gateway does not have.
func routeHealth(g *gateway.Gateway, uri string) (string, bool) {
	name := strings.TrimPrefix(uri, "mcpgate://health/")
	st, ok := g.RouteHealth()[name]
	if !ok {
		return "", false
	}
	b, err := jsonText(routeHealthOut{Route: name, Status: st})
	return b, err == nil
}

// metricsSummary is mcpgate://metrics.
type metricsSummary struct {
	Sessions      int                       `json:"sessions"`
	PerRoute      map[string]map[string]int `json:"sessions_per_route"`
	ConfigVersion int                       `json:"config_version"`
	Ready         bool                      `json:"ready"`
}

func summary(s *Server) metricsSummary {
	g := s.opts.Gateway
	out := metricsSummary{PerRoute: map[string]map[string]int{}}
	for _, sess := range g.Sessions().List() {
		info := sess.Info()
		if out.PerRoute[info.Route] == nil {
			out.PerRoute[info.Route] = map[string]int{}
		}
		out.PerRoute[info.Route][info.Era.String()]++
		out.Sessions++
	}
	_, out.ConfigVersion = g.ConfigText()
	out.Ready = g.Readiness().Status == "ready"
	return out
}

func jsonText(v any) (string, error) {
	b, err := json.MarshalIndent(v, "", "  ")
	return string(b), err
}

// watcher notifies the subscribers of the resources that change — the
// configuration and its history, the sessions, health, the summary —
// within a second of the change: while anyone is subscribed it looks at
// them once a second (and at once after an apply) and sends
// notifications/resources/updated for each that differs from the last
// look.
type watcher struct {
	s      *Server
	mu     sync.Mutex
	subs   map[string]int // subscriptions per URI
	last   map[string][32]byte
	wake   chan struct{}
	done   chan struct{}
	closed sync.Once
}

func newWatcher(s *Server) *watcher {
	w := &watcher{s: s, subs: map[string]int{}, last: map[string][32]byte{}, wake: make(chan struct{}, 1), done: make(chan struct{})}
	go w.run()
	return w
}

var watchable = map[string]bool{uriConfig: true, uriHistory: true, uriSessions: true, uriHealth: true, uriMetrics: true}

func (w *watcher) subscribe(uri string) error {
	if !watchable[uri] && !strings.HasPrefix(uri, "mcpgate://sessions/") && !strings.HasPrefix(uri, "mcpgate://health/") {
		return mcp.ResourceNotFoundError(uri)
	}
	// The state now is what later looks compare with: a change from the
	// moment the subscription is answered is notified.
	sum, ok := w.state(uri)
	w.mu.Lock()
	if w.subs[uri]++; w.subs[uri] == 1 && ok {
		w.last[uri] = sum
	}
	w.mu.Unlock()
	return nil
}

func (w *watcher) unsubscribe(uri string) {
	w.mu.Lock()
	if w.subs[uri]--; w.subs[uri] <= 0 {
		delete(w.subs, uri)
		delete(w.last, uri)
	}
	w.mu.Unlock()
}

// poke makes the watcher look now.
func (w *watcher) poke() {
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

func (w *watcher) stop() { w.closed.Do(func() { close(w.done) }) }

func (w *watcher) run() {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-w.done:
			return
		case <-tick.C:
		case <-w.wake:
		}
		w.look()
	}
}

// look compares each subscribed resource with the last look.
func (w *watcher) look() {
	w.mu.Lock()
	uris := make([]string, 0, len(w.subs))
	for u := range w.subs {
		uris = append(uris, u)
	}
	w.mu.Unlock()
	for _, uri := range uris {
		sum, ok := w.state(uri)
		if !ok {
			continue
		}
		w.mu.Lock()
		prev, seen := w.last[uri]
		w.last[uri] = sum
		w.mu.Unlock()
		if seen && prev != sum {
			w.s.each(func(srv *mcp.Server) {
				_ = srv.ResourceUpdated(context.Background(), &mcp.ResourceUpdatedNotificationParams{URI: uri})
			})
		}
	}
}

// state is a digest of what uri shows now (the parts that change; the
// sessions' idle times do not count).
func (w *watcher) state(uri string) ([32]byte, bool) {
	g := w.s.opts.Gateway
	var v any
	switch {
	case uri == uriConfig || uri == uriHistory:
		_, n := g.ConfigText()
		v = n
	case uri == uriSessions || uri == uriMetrics:
		ids := []string{}
		for _, sess := range g.Sessions().List() {
			ids = append(ids, sess.ID())
		}
		v = []any{len(ids), sortedJoin(ids), g.Readiness()}
	case uri == uriHealth:
		v = g.Readiness()
	case strings.HasPrefix(uri, "mcpgate://health/"):
		v, _ = routeHealth(g, uri)
	case strings.HasPrefix(uri, "mcpgate://sessions/"):
		_, err := g.Sessions().Get(strings.TrimPrefix(uri, "mcpgate://sessions/"))
		v = err == nil
	default:
		return [32]byte{}, false
	}
	b, _ := json.Marshal(v)
	return sha256.Sum256(b), true
}

type sessionT = session.Session

func sortedJoin(ids []string) string {
	slices.Sort(ids)
	return strings.Join(ids, ",")
}
