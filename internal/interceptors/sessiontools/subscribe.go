package sessiontools

import (
	"bytes"
	"context"
	"encoding/json"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/mcpgate/mcpgate/internal/core"
	"github.com/mcpgate/mcpgate/internal/pipeline"
)

// subscribe answers a legacy resources/subscribe or unsubscribe of one of
// our URIs.
func (s *Stage) subscribe(ctx context.Context, st *state, m *core.Message) *core.Message {
	if m.Name != URISession && m.Name != URIHealth {
		return notFound(m)
	}
	if m.Method == "resources/unsubscribe" {
		st.mu.Lock()
		delete(st.subs, m.Name)
		delete(st.last, m.Name)
		st.mu.Unlock()
		return answer(m, []byte(`{}`))
	}
	d := s.digestOf(ctx, st, m.Name)
	st.mu.Lock()
	st.subs[m.Name] = true
	st.last[m.Name] = d
	st.mu.Unlock()
	s.watch(st)
	return answer(m, []byte(`{}`))
}

// digestOf is what uri shows now, as subscribers compare it.
func (s *Stage) digestOf(ctx context.Context, st *state, uri string) [32]byte {
	if uri == URIHealth {
		return digest(healthChanging(s.healthStatus()))
	}
	v, _ := s.status(ctx, st)
	return digest(changing(v))
}

// listen serves a modern subscriptions/listen: our URIs are taken out of
// what goes upstream, remembered for this stream, and added to its
// acknowledgement (serverToClient); updates of them go on the stream.
func (s *Stage) listen(ctx context.Context, st *state, m *core.Message, next core.Handler) (*core.Message, error) {
	var p map[string]json.RawMessage
	if json.Unmarshal(m.Params, &p) != nil {
		return next(ctx, m)
	}
	var n map[string]json.RawMessage
	if json.Unmarshal(p["notifications"], &n) != nil || n == nil {
		return next(ctx, m)
	}
	var want struct {
		Tools bool     `json:"toolsListChanged"`
		URIs  []string `json:"resourceSubscriptions"`
	}
	raw, _ := json.Marshal(n)
	if json.Unmarshal(raw, &want) != nil {
		return next(ctx, m)
	}
	var ours, theirs []string
	for _, u := range want.URIs {
		if strings.HasPrefix(u, uriPrefix) {
			if (u == URISession || u == URIHealth) && !slices.Contains(ours, u) {
				ours = append(ours, u)
			}
			continue
		}
		theirs = append(theirs, u)
	}
	fwd := m
	if len(theirs) != len(want.URIs) {
		if len(theirs) == 0 {
			delete(n, "resourceSubscriptions")
		} else {
			n["resourceSubscriptions"], _ = json.Marshal(theirs)
		}
		p["notifications"], _ = json.Marshal(n)
		params, _ := json.Marshal(p)
		var err error
		if fwd, err = rebuild(m, params); err != nil {
			return next(ctx, m)
		}
	}
	if len(ours) == 0 && !want.Tools {
		return next(ctx, fwd)
	}
	// The stream is remembered for the updates of our resources and for
	// the list change a denial makes.
	l := &listen{ctx: ctx, id: m.ID, uris: ours, tools: want.Tools}
	st.mu.Lock()
	st.listens[m.ID] = l
	st.mu.Unlock()
	for _, u := range ours {
		d := s.digestOf(ctx, st, u)
		st.mu.Lock()
		st.last[u] = d
		st.mu.Unlock()
	}
	if len(ours) > 0 {
		s.watch(st)
	}
	defer func() {
		st.mu.Lock()
		if st.listens[m.ID] == l {
			delete(st.listens, m.ID)
		}
		st.mu.Unlock()
	}()
	return next(ctx, fwd)
}

// listChanged tells the session's client that the tools it may see
// changed: on the request's stream (legacy), on each listen stream that
// asked for tool list changes (modern).
func (s *Stage) listChanged(ctx context.Context, st *state, m *core.Message) {
	if m.Era == core.EraLegacy {
		if n, err := core.Notification("notifications/tools/list_changed", nil); err == nil {
			n.Era = m.Era
			core.NotifyClient(ctx, n)
		}
		return
	}
	st.mu.Lock()
	var ls []*listen
	for _, l := range st.listens {
		if l.tools && l.acked.Load() {
			ls = append(ls, l)
		}
	}
	st.mu.Unlock()
	for _, l := range ls {
		params := `{"_meta":{"` + core.MetaSubscriptionID + `":` + string(l.id) + `}}`
		if n, err := core.Notification("notifications/tools/list_changed", []byte(params)); err == nil {
			n.Era, n.Session = core.EraModern, st.info
			core.NotifyClient(l.ctx, n)
		}
	}
}

// rebuild is request m with other params.
func rebuild(m *core.Message, params []byte) (*core.Message, error) {
	var b bytes.Buffer
	b.WriteString(`{"jsonrpc":"2.0","id":`)
	b.WriteString(string(m.ID))
	b.WriteString(`,"method":`)
	q, _ := json.Marshal(m.Method)
	b.Write(q)
	b.WriteString(`,"params":`)
	b.Write(params)
	b.WriteByte('}')
	out, err := core.Decode(b.Bytes())
	if err != nil {
		return nil, err
	}
	out.Direction, out.Era, out.Session, out.Header, out.Received = m.Direction, m.Era, m.Session, m.Header, m.Received
	return out, nil
}

// subscriptionID is the _meta subscriptionId of a listen stream's
// message, as a core.ID.
func subscriptionID(params []byte) core.ID {
	var p struct {
		Meta map[string]json.RawMessage `json:"_meta"`
	}
	if json.Unmarshal(params, &p) != nil {
		return ""
	}
	return core.ID(bytes.TrimSpace(p.Meta[core.MetaSubscriptionID]))
}

// addSubscriptions adds uris to an acknowledgement's
// notifications.resourceSubscriptions, and agrees to toolsListChanged
// when tools (the session's denials change its list whatever the
// upstream's does).
func addSubscriptions(params []byte, uris []string, tools bool) ([]byte, error) {
	var p map[string]json.RawMessage
	if err := json.Unmarshal(params, &p); err != nil {
		return nil, err
	}
	var n map[string]json.RawMessage
	if raw, ok := p["notifications"]; ok {
		if err := json.Unmarshal(raw, &n); err != nil {
			return nil, err
		}
	}
	if n == nil {
		n = map[string]json.RawMessage{}
	}
	var have []string
	if raw, ok := n["resourceSubscriptions"]; ok {
		if err := json.Unmarshal(raw, &have); err != nil {
			return nil, err
		}
	}
	for _, u := range uris {
		if !slices.Contains(have, u) {
			have = append(have, u)
		}
	}
	if len(have) > 0 {
		n["resourceSubscriptions"], _ = json.Marshal(have)
	}
	if tools {
		n["toolsListChanged"] = json.RawMessage(`true`)
	}
	p["notifications"], _ = json.Marshal(n)
	return json.Marshal(p)
}

// watch makes the route's watcher look at st's subscriptions.
func (s *Stage) watch(st *state) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	s.subs[st] = struct{}{}
	if !s.running {
		s.running = true
		go s.run()
	}
}

// poke makes the watcher look now.
func (s *Stage) poke() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// run looks at the subscribed resources every opts.Every and when poked
// (after a request of a subscribed session), until the chain is retired
// or no session of this chain is subscribed any more (sessions leave a
// chain a reload superseded as they move to the new one; watch starts the
// watcher again for the next subscriber).
func (s *Stage) run() {
	t := time.NewTicker(s.opts.Every)
	defer t.Stop()
	for {
		select {
		case <-s.done:
			return
		case <-t.C:
		case <-s.wake:
		}
		if !s.look() {
			return
		}
	}
}

// look notifies each subscribed session of the resources that changed;
// with none left, it stops the watcher (false).
func (s *Stage) look() bool {
	s.mu.Lock()
	if len(s.subs) == 0 {
		s.running = false
		s.mu.Unlock()
		return false
	}
	sts := make([]*state, 0, len(s.subs))
	for st := range s.subs {
		sts = append(sts, st)
	}
	s.mu.Unlock()
	var health *[32]byte
	for _, st := range sts {
		if !st.subscribed() {
			s.mu.Lock()
			delete(s.subs, st)
			s.mu.Unlock()
			continue
		}
		for _, uri := range st.uris() {
			var d [32]byte
			if uri == URIHealth {
				if health == nil {
					h := s.digestOf(context.Background(), st, URIHealth)
					health = &h
				}
				d = *health
			} else {
				d = s.digestOf(context.Background(), st, uri)
			}
			st.mu.Lock()
			prev, ok := st.last[uri]
			st.last[uri] = d
			st.mu.Unlock()
			if ok && prev != d {
				s.updated(st, uri)
			}
		}
	}
	return true
}

// uris are the URIs st subscribes to, either way.
func (st *state) uris() []string {
	st.mu.Lock()
	defer st.mu.Unlock()
	var out []string
	for u := range st.subs {
		out = append(out, u)
	}
	for _, l := range st.listens {
		for _, u := range l.uris {
			if !slices.Contains(out, u) {
				out = append(out, u)
			}
		}
	}
	return out
}

// updated sends notifications/resources/updated for uri to st's client:
// on the session's own stream (legacy), on each listen stream that asked
// for it (modern).
func (s *Stage) updated(st *state, uri string) {
	q, _ := json.Marshal(uri)
	st.mu.Lock()
	legacy := st.subs[uri]
	var ls []*listen
	for _, l := range st.listens {
		if slices.Contains(l.uris, uri) && l.acked.Load() {
			ls = append(ls, l)
		}
	}
	st.mu.Unlock()
	if nb := st.notifier.Load(); legacy && nb != nil {
		notifier := nb.SessionNotifier
		if n, err := core.Notification("notifications/resources/updated", []byte(`{"uri":`+string(q)+`}`)); err == nil {
			n.Era, n.Session = core.EraLegacy, st.info
			notifier.Deliver(n)
		}
	}
	for _, l := range ls {
		params := `{"uri":` + string(q) + `,"_meta":{"` + core.MetaSubscriptionID + `":` + string(l.id) + `}}`
		if n, err := core.Notification("notifications/resources/updated", []byte(params)); err == nil {
			n.Era, n.Session = core.EraModern, st.info
			core.NotifyClient(l.ctx, n)
		}
	}
}

// HealthStageName is the upstream health stage's name in pipeline.Order:
// nearest the server, so it sees what the upstream itself answered.
const HealthStageName = "upstream_health"

// Health is a route's upstream health as its sessions' requests found it:
// up after an answer, down after a failure to reach or talk to it.
type Health struct {
	mu       sync.Mutex
	h        UpstreamHealth
	onChange func()
}

// UpstreamHealth is what mcpgate://health says of the upstream.
type UpstreamHealth struct {
	// Status is "unknown" (nothing asked yet), "up" or "down".
	Status string `json:"status"`
	// LastAnswer and LastFailure are when the upstream last answered and
	// last failed; LastError says how it failed.
	LastAnswer          *time.Time `json:"last_answer,omitempty"`
	LastFailure         *time.Time `json:"last_failure,omitempty"`
	LastError           string     `json:"last_error,omitempty"`
	ConsecutiveFailures int        `json:"consecutive_failures"`
}

// NewHealth is a tracker with nothing seen.
func NewHealth() *Health { return &Health{h: UpstreamHealth{Status: "unknown"}} }

// Read is the health now.
func (h *Health) Read() UpstreamHealth {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.h
}

// Record notes an outcome: err nil for an answer.
func (h *Health) Record(err error) {
	now := time.Now().UTC()
	h.mu.Lock()
	defer h.mu.Unlock()
	if err == nil {
		if h.h.Status == "up" && h.h.LastAnswer != nil && now.Sub(*h.h.LastAnswer) < 100*time.Millisecond {
			return // a burst of answers: one write per tenth of a second
		}
		h.h.Status, h.h.LastAnswer, h.h.ConsecutiveFailures = "up", &now, 0
		return
	}
	h.h.Status, h.h.LastFailure, h.h.LastError = "down", &now, err.Error()
	h.h.ConsecutiveFailures++
}

// Stage is the upstream_health stage: it records what each request
// forwarded upstream came back with.
func (h *Health) Stage() pipeline.Stage {
	return pipeline.Stage{Name: HealthStageName, ClientToServer: func(next core.Handler) core.Handler {
		return func(ctx context.Context, m *core.Message) (*core.Message, error) {
			resp, err := next(ctx, m)
			if m.Kind != core.KindRequest {
				return resp, err
			}
			switch {
			case err == nil && resp != nil && resp.Kind == core.KindError && resp.ErrorCode() == core.CodeUpstreamError:
				// The era bridge answers a failed upstream call so.
				h.Record(healthError("upstream error: " + errorMessage(resp)))
			case err == nil && resp != nil:
				h.Record(nil)
			case err != nil:
				if e := core.AsError(err); e.Code == core.CodeUpstreamError {
					msg := e.Message
					if e.Err != nil {
						msg += ": " + e.Err.Error()
					}
					h.Record(healthError(msg))
				}
			}
			return resp, err
		}
	}}
}

type healthError string

func (e healthError) Error() string { return string(e) }

// errorMessage is an error response's message.
func errorMessage(m *core.Message) string {
	var e struct {
		Message string `json:"message"`
	}
	_ = json.Unmarshal(m.Error, &e)
	return e.Message
}
