package sessiontools

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bmatcuk/doublestar/v4"

	"github.com/mcpgate/mcpgate/internal/catalog"
	"github.com/mcpgate/mcpgate/internal/core"
	"github.com/mcpgate/mcpgate/internal/interceptors/quota"
	"github.com/mcpgate/mcpgate/internal/pipeline"
)

// StageName is the stage's name in pipeline.Order.
const StageName = "session_tools"

// The names are the interface.
const (
	ToolStatus  = "mcpgate_session_status"
	ToolTighten = "mcpgate_session_tighten"
	ToolEnd     = "mcpgate_session_end"
	URISession  = "mcpgate://session"
	URIHealth   = "mcpgate://health"

	toolPrefix = "mcpgate_"
	uriPrefix  = "mcpgate://"
)

// Options are what a route's stage is built with.
type Options struct {
	// Route is the route's name.
	Route string
	// Quota is the route's quota stage (nil: no quota applies).
	Quota *quota.Stage
	// Limits reads the session's idle timeout and TTL (TTL 0: none);
	// Shorten lowers them (never raising either). Nil: not shown, not
	// shortened.
	Limits  func(info *core.SessionInfo) (idle, ttl time.Duration, ok bool)
	Shorten func(info *core.SessionInfo, idle, ttl time.Duration)
	// End ends the session (mcpgate_session_end).
	End func(info *core.SessionInfo)
	// Readiness is the gateway's readiness (gateway.Readiness), shown in
	// mcpgate://health.
	Readiness func() any
	// Health is the route's upstream health, kept by the gateway across
	// reloads that keep the upstream; nil: a new one.
	Health *Health
	Logger *slog.Logger
	// Every is how often subscribed resources are looked at besides after
	// each request of their session; zero: a second.
	Every time.Duration
}

// Stage is one route's session tools.
type Stage struct {
	opts   Options
	log    *slog.Logger
	health *Health
	warned sync.Map // upstream names hidden, logged once

	mu      sync.Mutex
	subs    map[*state]struct{} // sessions with subscriptions
	wake    chan struct{}
	done    chan struct{}
	running bool
	closed  bool
}

// New builds the stage of a route with session_tools.
func New(opts Options) *Stage {
	s := &Stage{opts: opts, log: opts.Logger, health: opts.Health, subs: map[*state]struct{}{},
		wake: make(chan struct{}, 1), done: make(chan struct{})}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.health == nil {
		s.health = NewHealth()
	}
	if s.opts.Every <= 0 {
		s.opts.Every = time.Second
	}
	return s
}

// Health is the route's upstream health tracker the stage reads.
func (s *Stage) Health() *Health { return s.health }

// Stage is the pipeline stage.
func (s *Stage) Stage() pipeline.Stage {
	return pipeline.Stage{
		Name:           StageName,
		ClientToServer: s.clientToServer,
		ServerToClient: s.serverToClient,
		Session:        s.session,
		End:            s.end,
		Close:          s.close,
	}
}

// state is one session's: what it denied itself, its subscriptions.
type state struct {
	info *core.SessionInfo
	// deny are the globs of the tools the session denied itself; read
	// lock-free on every tools/call and list.
	deny atomic.Pointer[[]string]
	// ended is set once mcpgate_session_end's response is delivered.
	ended atomic.Bool

	// notifier is the session's own stream (legacy), from the first
	// request that offers it.
	notifier atomic.Pointer[notifierBox]

	mu sync.Mutex
	// subs are legacy subscriptions (resources/subscribe) by URI.
	subs map[string]bool
	// listens are modern subscriptions/listen streams naming our URIs.
	listens map[core.ID]*listen
	// last is each subscribed URI's digest when last notified or read.
	last map[string][32]byte
}

type notifierBox struct{ core.SessionNotifier }

type listen struct {
	ctx   context.Context
	id    core.ID
	uris  []string // ours it asked for
	tools bool     // it asked for toolsListChanged
	acked atomic.Bool
}

func (s *Stage) session(info *core.SessionInfo, prev any) any {
	if old, ok := prev.(*state); ok && old != nil {
		// A reload: the session keeps what it denied and subscribed to.
		if old.subscribed() {
			s.watch(old)
		}
		return old
	}
	return &state{info: info, subs: map[string]bool{}, listens: map[core.ID]*listen{}, last: map[string][32]byte{}}
}

func (s *Stage) end(_ *core.SessionInfo, v any, _ string) {
	st, _ := v.(*state)
	if st == nil {
		return
	}
	s.mu.Lock()
	delete(s.subs, st)
	s.mu.Unlock()
}

func (s *Stage) close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.closed {
		s.closed = true
		close(s.done)
	}
	return nil
}

func stateOf(m *core.Message) *state {
	st, _ := pipeline.StateOf(m, StageName).(*state)
	return st
}

func (st *state) subscribed() bool {
	st.mu.Lock()
	defer st.mu.Unlock()
	if len(st.subs) > 0 {
		return true
	}
	for _, l := range st.listens {
		if len(l.uris) > 0 {
			return true
		}
	}
	return false
}

// denied is the glob of the session's denials that name matches, "" for none.
func (st *state) denied(name string) string {
	p := st.deny.Load()
	if p == nil || strings.HasPrefix(name, toolPrefix) {
		return ""
	}
	for _, g := range *p {
		if ok, _ := doublestar.Match(g, name); ok {
			return g
		}
	}
	return ""
}

func (s *Stage) clientToServer(next core.Handler) core.Handler {
	return func(ctx context.Context, m *core.Message) (*core.Message, error) {
		st := stateOf(m)
		if st == nil || m.Kind != core.KindRequest {
			return next(ctx, m)
		}
		if st.ended.Load() {
			return nil, core.NewError(core.CodeSessionNotFound, "session not found: it ended itself with "+ToolEnd).WithStatus(http.StatusNotFound)
		}
		if m.Era == core.EraLegacy && st.notifier.Load() == nil {
			if n := core.SessionNotifierOf(ctx); n != nil {
				st.notifier.CompareAndSwap(nil, &notifierBox{n})
			}
		}
		switch m.Method {
		case "initialize", "server/discover":
			resp, err := next(ctx, m)
			return announce(resp), err
		case "tools/list":
			resp, err := next(ctx, m)
			return s.mergeList(ctx, st, m, resp, err, listTools)
		case "resources/list":
			resp, err := next(ctx, m)
			return s.mergeList(ctx, st, m, resp, err, listResources)
		case "tools/call":
			if strings.HasPrefix(m.Name, toolPrefix) {
				return s.call(ctx, st, m), nil
			}
			if g := st.denied(m.Name); g != "" {
				return toolResult(m, "tool "+quote(m.Name)+" is denied for this session: it denied itself tools matching "+quote(g)+" with "+ToolTighten, nil, true), nil
			}
		case "resources/read":
			if strings.HasPrefix(m.Name, uriPrefix) {
				return s.read(ctx, st, m), nil
			}
		case "resources/subscribe", "resources/unsubscribe":
			if strings.HasPrefix(m.Name, uriPrefix) && m.Era == core.EraLegacy {
				return s.subscribe(ctx, st, m), nil
			}
		case "subscriptions/listen":
			if m.Era == core.EraModern {
				return s.listen(ctx, st, m, next)
			}
		}
		resp, err := next(ctx, m)
		if st.subscribed() {
			s.poke()
		}
		return resp, err
	}
}

// serverToClient adds our URIs to the acknowledgement of a modern
// subscriptions/listen that asked for them.
func (s *Stage) serverToClient(next core.Handler) core.Handler {
	return func(ctx context.Context, m *core.Message) (*core.Message, error) {
		if m.Kind != core.KindNotification || m.Method != "notifications/subscriptions/acknowledged" {
			return next(ctx, m)
		}
		st := stateOf(m)
		if st == nil {
			return next(ctx, m)
		}
		id := subscriptionID(m.Params)
		st.mu.Lock()
		l := st.listens[id]
		st.mu.Unlock()
		if l == nil || l.acked.Load() {
			return next(ctx, m)
		}
		out, err := addSubscriptions(m.Params, l.uris, l.tools)
		l.acked.Store(true)
		if err != nil {
			return next(ctx, m)
		}
		n, err := core.Notification(m.Method, out)
		if err != nil {
			return next(ctx, m)
		}
		n.Direction, n.Era, n.Session, n.Header, n.Received = m.Direction, m.Era, m.Session, m.Header, m.Received
		return next(ctx, n)
	}
}

// digest of a resource's content, without the fields that change with
// time alone.
func digest(v any) [32]byte {
	b, _ := json.Marshal(v)
	return sha256.Sum256(b)
}

// quote is a name in a sentence.
func quote(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// mergeList edits a tools/list or resources/list answer: the upstream's
// entries named as ours are hidden, the tools the session denied itself
// removed, and ours appended to the page without nextCursor. An upstream
// without the list (-32601) gets ours alone.
func (s *Stage) mergeList(_ context.Context, st *state, req, resp *core.Message, err error, kind listKind) (*core.Message, error) {
	if err != nil || resp == nil {
		return resp, err
	}
	var result []byte
	switch {
	case resp.Kind == core.KindError && resp.ErrorCode() == core.CodeMethodNotFound:
		result = []byte(`{}`)
		if req.Era == core.EraModern {
			// A 2026-07-28 list result carries cache hints; ours change
			// with the session: not cached.
			result = []byte(`{"ttlMs":0,"cacheScope":"private"}`)
		}
	case resp.Kind == core.KindResponse:
		result = resp.Result
	default:
		return resp, err
	}
	out, ok := s.edit(st, result, kind, req.Era)
	if !ok {
		return resp, nil
	}
	return keep(resp, core.ResultResponse(req.ID, out)), nil
}

type listKind int

const (
	listTools listKind = iota
	listResources
)

func (k listKind) key() (key, field, prefix string) {
	if k == listTools {
		return "tools", "name", toolPrefix
	}
	return "resources", "uri", uriPrefix
}

// edit rewrites one list page; ok false when the result is not an object.
func (s *Stage) edit(st *state, result []byte, kind listKind, era core.Era) ([]byte, bool) {
	key, field, prefix := kind.key()
	var rest []byte
	var entries []json.RawMessage
	last := true
	hasResultType := false
	err := catalog.Members(result, func(k string, v json.RawMessage) {
		if strings.EqualFold(k, key) {
			var list []json.RawMessage
			if json.Unmarshal(v, &list) != nil {
				return
			}
			for _, e := range list {
				names, _ := catalog.Values(e, field)
				if hidden := s.hide(st, names, prefix, kind); hidden {
					continue
				}
				entries = append(entries, e)
			}
			return
		}
		if k == "nextCursor" {
			var c *string
			if json.Unmarshal(v, &c) == nil && c != nil && *c != "" {
				last = false
			}
		}
		if k == "resultType" {
			hasResultType = true
		}
		if len(rest) > 0 {
			rest = append(rest, ',')
		}
		kq, _ := json.Marshal(k)
		rest = append(append(append(rest, kq...), ':'), v...)
	})
	if err != nil {
		return nil, false
	}
	if last {
		if kind == listTools {
			entries = append(entries, toolDefs...)
		} else {
			entries = append(entries, resourceDefs...)
		}
	}
	if era == core.EraModern && !hasResultType {
		if len(rest) > 0 {
			rest = append(rest, ',')
		}
		rest = append(rest, `"resultType":"complete"`...)
	}
	out := append([]byte{'{'}, rest...)
	if len(rest) > 0 {
		out = append(out, ',')
	}
	out = append(out, '"')
	out = append(out, key...)
	out = append(out, `":[`...)
	for i, e := range entries {
		if i > 0 {
			out = append(out, ',')
		}
		out = append(out, e...)
	}
	return append(out, "]}"...), true
}

// hide reports whether a list entry is kept from the client: named as
// ours (logged once per route and name), or a tool the session denied
// itself.
func (s *Stage) hide(st *state, names []string, prefix string, kind listKind) bool {
	for _, n := range names {
		if strings.HasPrefix(strings.ToLower(n), prefix) {
			if _, seen := s.warned.LoadOrStore(n, true); !seen {
				s.log.Warn("session_tools_upstream_name_hidden", "name", n,
					"why", "the "+prefix+" names are mcpgate's own inside sessions of a route with session_tools")
			}
			return true
		}
		if kind == listTools && st.denied(n) != "" {
			return true
		}
	}
	return false
}

// keep gives a replacement response the routing fields of the original.
func keep(orig, m *core.Message) *core.Message {
	m.Direction, m.Era, m.Session, m.Header, m.Received, m.Status = orig.Direction, orig.Era, orig.Session, orig.Header, orig.Received, 0
	return m
}

// announce makes an initialize or server/discover result declare tools
// and resources (subscribable), so that a client lists ours even when the
// upstream has none.
func announce(resp *core.Message) *core.Message {
	if resp == nil || resp.Kind != core.KindResponse {
		return resp
	}
	var r map[string]json.RawMessage
	if json.Unmarshal(resp.Result, &r) != nil || r == nil {
		return resp
	}
	var caps map[string]json.RawMessage
	if c, ok := r["capabilities"]; ok && json.Unmarshal(c, &caps) != nil {
		return resp
	}
	if caps == nil {
		caps = map[string]json.RawMessage{}
	}
	if _, ok := caps["tools"]; !ok {
		caps["tools"] = json.RawMessage(`{}`)
	}
	res := map[string]json.RawMessage{}
	if c, ok := caps["resources"]; ok && json.Unmarshal(c, &res) != nil {
		return resp
	}
	if res == nil {
		res = map[string]json.RawMessage{}
	}
	res["subscribe"] = json.RawMessage(`true`)
	caps["resources"], _ = json.Marshal(res)
	r["capabilities"], _ = json.Marshal(caps)
	out, err := json.Marshal(r)
	if err != nil {
		return resp
	}
	return keep(resp, core.ResultResponse(resp.ID, out))
}
