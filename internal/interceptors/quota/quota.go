package quota

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/http"
	"reflect"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mcpgate/mcpgate/internal/config"
	"github.com/mcpgate/mcpgate/internal/core"
	"github.com/mcpgate/mcpgate/internal/meter"
	"github.com/mcpgate/mcpgate/internal/pipeline"
	"github.com/mcpgate/mcpgate/internal/tokens"
)

// StageName is the pipeline stage the quotas belong to.
const StageName = "limits"

// Limit names, in refusals, events, metrics and store keys.
const (
	LimitRequests     = "requests"
	LimitToolCalls    = "tool_calls"
	LimitResultTokens = "result_tokens"
	LimitResultBytes  = "result_bytes"
	LimitConcurrent   = "concurrent"
	LimitCallTimeout  = "call_timeout"
	LimitSessionTime  = "session_time"
	toolPrefix        = "tool:"
)

// Options are what a route's quota stage is built with.
type Options struct {
	// Route is the route's name; only the quotas that match it apply.
	Route string
	// Quotas are the configuration's quotas[].
	Quotas []config.Quota
	// Meters keeps the budgets of principals and tenants: one per gateway,
	// shared by every route's stage and kept across reloads.
	Meters *Meters
	// End ends a session (session_time): the gateway's session manager.
	End func(info *core.SessionInfo, reason string)
	// Observe reports a decision to the route's observers.
	Observe func(ctx context.Context, info *core.SessionInfo, ev *pipeline.Event)
	Logger  *slog.Logger
	// Metrics is the gateway's registry.
	Metrics prometheus.Registerer
}

// Stage is the quotas of one route.
type Stage struct {
	route   string
	quotas  []*compiled
	end     func(*core.SessionInfo, string)
	observe func(context.Context, *core.SessionInfo, *pipeline.Event)
	log     *slog.Logger
	m       *metrics
}

// compiled is one quota, ready to count.
type compiled struct {
	cfg    config.Quota
	spec   *meter.Spec
	shared *sharedMeter // per principal or tenant; nil per session
	// session is a per-session quota's budgets in the shared store,
	// when the gateway has one (keyed by session id).
	session *sharedMeter
	// Counter indices in spec, -1 when the limit is off.
	iReq, iCalls, iTokens, iBytes, iConc int
	tools                                map[string]int
	tok                                  tokens.Counter // nil without result_tokens
	// Running estimates of a result's bytes and tokens.
	estBytes, estTokens atomic.Int64
	refusals, warnings  []prometheus.Counter // per counter
	usage               []prometheus.Counter // per counter; nil for gauges
	timeouts, ended     prometheus.Counter
}

// New builds a route's quota stage; nil when no quota applies to the
// route (the stage then costs nothing).
func New(opts Options) (*Stage, error) {
	s := &Stage{route: opts.Route, end: opts.End, observe: opts.Observe, log: opts.Logger}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	var qs []config.Quota
	for _, q := range opts.Quotas {
		if q.MatchesRoute(opts.Route) {
			qs = append(qs, q)
		}
	}
	if len(qs) == 0 {
		return nil, nil
	}
	m, err := newMetrics(opts.Metrics)
	if err != nil {
		return nil, err
	}
	s.m = m
	for _, q := range qs {
		c, err := compile(q)
		if err != nil {
			return nil, err
		}
		switch {
		case len(c.spec.Counters) == 0:
		case q.Per != config.QuotaPerSession:
			if opts.Meters == nil {
				return nil, errors.New("quota: a per-" + q.Per + " quota needs Meters")
			}
			c.shared = opts.Meters.get(q.Name, c.spec, false)
		case opts.Meters != nil:
			// Used only once bound to a shared store, so that a session's
			// budget is one on every replica that serves it.
			c.session = opts.Meters.get(q.Name, c.spec, true)
		}
		for _, ctr := range c.spec.Counters {
			c.refusals = append(c.refusals, m.refusals.WithLabelValues(opts.Route, q.Name, ctr.Name))
			var used prometheus.Counter
			if !ctr.Gauge {
				used = m.usage.WithLabelValues(opts.Route, q.Name, ctr.Name)
			}
			c.usage = append(c.usage, used)
			c.warnings = append(c.warnings, m.warnings.WithLabelValues(opts.Route, q.Name, ctr.Name))
		}
		c.timeouts = m.refusals.WithLabelValues(opts.Route, q.Name, LimitCallTimeout)
		c.ended = m.refusals.WithLabelValues(opts.Route, q.Name, LimitSessionTime)
		s.quotas = append(s.quotas, c)
	}
	return s, nil
}

func compile(q config.Quota) (*compiled, error) {
	c := &compiled{cfg: q, iReq: -1, iCalls: -1, iTokens: -1, iBytes: -1, iConc: -1}
	spec := &meter.Spec{Window: q.Window}
	if q.CallTimeout > 0 {
		// A replica that dies holding a request in flight frees its
		// place in a shared budget this long after.
		spec.Lease = q.CallTimeout + time.Minute
	}
	add := func(name string, limit int64, gauge bool) int {
		spec.Counters = append(spec.Counters, meter.Counter{Name: name, Limit: limit, Gauge: gauge})
		return len(spec.Counters) - 1
	}
	if q.Requests > 0 {
		c.iReq = add(LimitRequests, q.Requests, false)
	}
	if q.ToolCalls > 0 {
		c.iCalls = add(LimitToolCalls, q.ToolCalls, false)
	}
	for _, name := range slices.Sorted(func(yield func(string) bool) {
		for k := range q.Tools {
			if !yield(k) {
				return
			}
		}
	}) {
		if c.tools == nil {
			c.tools = map[string]int{}
		}
		c.tools[name] = add(toolPrefix+name, q.Tools[name], false)
	}
	if q.ResultTokens > 0 {
		c.iTokens = add(LimitResultTokens, q.ResultTokens, false)
		tok, err := tokens.New(q.Tokenizer)
		if err != nil {
			return nil, err
		}
		c.tok = tok
	}
	if q.ResultBytes > 0 {
		c.iBytes = add(LimitResultBytes, int64(q.ResultBytes), false)
	}
	if q.Concurrent > 0 {
		c.iConc = add(LimitConcurrent, q.Concurrent, true)
	}
	c.spec = spec
	return c, nil
}

// Stage returns the pipeline stage of the quotas alone (the gateway
// composes it with the request rate limit, see Interceptor).
func (s *Stage) Stage() pipeline.Stage {
	if s == nil {
		return pipeline.Stage{Name: StageName}
	}
	return pipeline.Stage{Name: StageName, ClientToServer: s.Interceptor(), Session: s.Session, End: s.End}
}

// applied is one quota as it applies to one session.
type applied struct {
	q   *compiled
	m   meter.Meter // the session's own Counters, or the shared meter
	key string      // the shared meter's key
	// warned is set per counter once the session was warned.
	warned []atomic.Bool
	// tight is, per counter, the lower max the session set for itself
	// (Tighten); 0: none. tightened says whether any is set, so that an
	// untightened session pays one atomic load per quota.
	tight     []atomic.Int64
	tightened atomic.Bool
}

// max is counter i's max for this session: the quota's, or the lower
// one the session set.
func (a *applied) max(i int) int64 {
	if a.tightened.Load() {
		if t := a.tight[i].Load(); t > 0 {
			return t
		}
	}
	return a.q.spec.Counters[i].Limit
}

// state is one session's quotas.
type state struct {
	info    *core.SessionInfo
	quotas  []*applied
	timer   *time.Timer // session_time
	timeout time.Duration
	// expires is when session_time ends the session (zero: never).
	expires time.Time
	limit   *compiled // the quota whose session_time is first
	created time.Time
	once    atomic.Bool
}

// Session makes a session's quota state: the quotas that match its
// identity, with its own budgets (per session) or its key in the shared
// ones. After a reload (prev) a quota of the same name and the same
// limits keeps the session's usage.
func (s *Stage) Session(info *core.SessionInfo, prev any) any {
	old, _ := prev.(*state)
	if old != nil && old.timer != nil {
		old.timer.Stop()
	}
	// A new session's info carries no creation time (restored and adopted
	// ones do): its state is made as it is created.
	st := &state{info: info, created: info.Created}
	if st.created.IsZero() {
		st.created = time.Now()
	}
	if old != nil {
		st.created = old.created
	}
	for _, q := range s.quotas {
		if !q.cfg.MatchesIdentity(info.Tenant, info.Principal, info.Groups) {
			continue
		}
		if q.cfg.Per == config.QuotaPerTenant && info.Tenant == "" {
			continue // in no tenant: no tenant's budget
		}
		a := &applied{q: q, warned: make([]atomic.Bool, len(q.spec.Counters)), tight: make([]atomic.Int64, len(q.spec.Counters))}
		if old != nil {
			a.carryTight(old.quotas)
		}
		switch {
		case len(q.spec.Counters) == 0:
		case q.shared != nil:
			a.m, a.key = q.shared, keyOf(q.cfg.Per, info)
		case q.session != nil && q.session.kept():
			// With a shared store the session's budget is there: the
			// replicas that serve the session count it as one; with a
			// store that keeps state it is saved, so that the session
			// restored after a restart goes on with it.
			a.m, a.key = q.session, "session:"+info.ID
		default:
			a.m = meter.NewCounters(q.spec)
			if old != nil {
				for _, o := range old.quotas {
					if o.q.cfg.Name != q.cfg.Name {
						continue
					}
					oc, _ := o.m.(*meter.Counters)
					if reflect.DeepEqual(o.q.spec, q.spec) && oc != nil {
						a.m = oc
						for i := range a.warned {
							a.warned[i].Store(o.warned[i].Load())
						}
					} else if oc != nil {
						// Its limits changed: the usage goes on under them.
						a.m.(*meter.Counters).CarryFrom(oc)
					}
				}
			}
		}
		if d := q.cfg.CallTimeout; d > 0 && (st.timeout == 0 || d < st.timeout) {
			st.timeout = d
		}
		if d := q.cfg.SessionTime; d > 0 {
			if at := st.created.Add(d); st.expires.IsZero() || at.Before(st.expires) {
				st.expires, st.limit = at, q
			}
		}
		st.quotas = append(st.quotas, a)
	}
	if !st.expires.IsZero() && s.end != nil {
		// Ends the session when its time is spent, requests or not.
		st.timer = time.AfterFunc(max(time.Until(st.expires), 0), func() { s.expire(context.Background(), st, nil) })
	}
	return st
}

// End stops the session's timer; its own budgets go with it, except
// when the gateway shuts down (the session continues after the restart)
// or the state moved to another chain. In a shared store they are left
// to expire: the session may go on on another replica.
func (s *Stage) End(_ *core.SessionInfo, v any, reason string) {
	st, _ := v.(*state)
	if st == nil {
		return
	}
	if st.timer != nil {
		st.timer.Stop()
	}
	if reason == "shutdown" || reason == "moved" {
		return
	}
	for _, a := range st.quotas {
		if sm := a.q.session; sm != nil && a.m == meter.Meter(sm) && sm.shared.Load() == nil {
			sm.local.Delete(a.key)
		}
	}
}

// keyOf is what a shared budget counts a session under: its principal
// within its tenant (core.PrincipalKey; an anonymous one's client
// address), or its tenant.
func keyOf(per string, info *core.SessionInfo) string {
	if per == config.QuotaPerTenant {
		return "tenant:" + info.Tenant
	}
	if core.IsAnonymous(info.Principal) {
		return "address:" + hostOf(info.RemoteAddr)
	}
	return "principal:" + core.PrincipalKey(info.Tenant, info.Principal)
}

func hostOf(addr string) string {
	if host, _, err := net.SplitHostPort(addr); err == nil {
		return host
	}
	return addr
}

// carriesContent reports whether a method's result is content flowing
// back to the model: what result_tokens and result_bytes count.
func carriesContent(method string) bool {
	switch method {
	case "tools/call", "resources/read", "prompts/get":
		return true
	}
	return false
}

// maxQuotas is how many quotas one request keeps its reservations of on
// the stack.
const maxQuotas = 4

type held struct {
	a   *applied
	r   meter.Reservation
	est [2]int // the reservation's positions of bytes and tokens, -1 if none
}

// Interceptor is the client→server interceptor of the quotas.
func (s *Stage) Interceptor() core.Interceptor {
	if s == nil {
		return nil
	}
	return func(next core.Handler) core.Handler {
		return func(ctx context.Context, m *core.Message) (*core.Message, error) {
			// initialize creates the session (creation rates and caps bound
			// it); every later request counts.
			if m.Kind != core.KindRequest || m.Direction != core.ClientToServer || m.Session == nil || m.Method == "initialize" {
				return next(ctx, m)
			}
			st, _ := pipeline.StateOf(m, StageName).(*state)
			if st == nil || len(st.quotas) == 0 {
				return next(ctx, m)
			}
			return s.call(ctx, st, m, next)
		}
	}
}

func (s *Stage) call(ctx context.Context, st *state, m *core.Message, next core.Handler) (*core.Message, error) {
	now := time.Now()
	if !st.expires.IsZero() && !now.Before(st.expires) {
		return nil, s.expire(ctx, st, m)
	}
	var buf [maxQuotas]held
	hs := buf[:0]
	content := carriesContent(m.Method)
	for _, a := range st.quotas {
		if a.m == nil {
			continue
		}
		h := held{a: a, est: [2]int{-1, -1}}
		var cs [meter.MaxCharges]meter.Charge
		n := a.charges(&cs, m, content, &h)
		if n == 0 {
			continue
		}
		r, err := reserve(ctx, a, cs[:n], now)
		if err != nil {
			s.release(ctx, hs, now, false)
			return s.refuse(ctx, st, a, m, err, pipeline.ActionRefused)
		}
		h.r = r
		hs = append(hs, h)
		if a.tightened.Load() {
			if ref := a.overTight(&h.r, false, now); ref != nil {
				s.release(ctx, hs, now, false)
				return s.refuse(ctx, st, a, m, ref, pipeline.ActionRefused)
			}
		}
		s.warn(ctx, st, a, m, &h.r, false)
	}
	callCtx := ctx
	if st.timeout > 0 {
		var cancel context.CancelFunc
		callCtx, cancel = context.WithTimeoutCause(ctx, st.timeout, errCallTimeout)
		defer cancel()
	}
	resp, err := next(callCtx, m)
	if st.timeout > 0 && errors.Is(context.Cause(callCtx), errCallTimeout) && ctx.Err() == nil && (err != nil || resp == nil) {
		s.release(ctx, hs, time.Now(), true)
		return s.timedOut(ctx, st, m)
	}
	if len(hs) == 0 {
		return resp, err
	}
	var nBytes, nTokens int64 = 0, -1
	var counted tokens.Counter // the tokenizer nTokens was counted with
	ok := err == nil && resp != nil && resp.Kind == core.KindResponse && content
	if ok {
		nBytes = int64(len(resp.Result))
	}
	now = time.Now()
	var refused error
	var by *applied
	for i := range hs {
		h := &hs[i]
		if p := h.est[0]; p >= 0 {
			h.r.Actual[p] = nBytes
			h.a.q.estBytes.Store(estimate(h.a.q.estBytes.Load(), nBytes))
		}
		if p := h.est[1]; p >= 0 {
			if nTokens < 0 || counted != h.a.q.tok {
				nTokens, counted = 0, h.a.q.tok
				if ok {
					nTokens = countTokens(h.a.q.tok, resp.Result)
				}
			}
			h.r.Actual[p] = nTokens
			h.a.q.estTokens.Store(estimate(h.a.q.estTokens.Load(), nTokens))
		}
		if refused != nil {
			// Withheld already: nothing of it is counted further.
			for _, p := range h.est {
				if p >= 0 {
					h.r.Actual[p] = 0
				}
			}
		}
		serr := settle(ctx, h.a, &h.r, now)
		var ref *meter.Refusal
		var isRefusal bool
		if serr != nil { // Refused allocates: only on the way out
			ref, isRefusal = meter.Refused(serr)
		}
		h.a.q.count(&h.r, ref)
		if serr == nil && refused == nil && h.a.tightened.Load() {
			// Over a limit the session lowered for itself: the result is
			// withheld; what it counted stays counted.
			if tr := h.a.overTight(&h.r, true, now); tr != nil {
				serr, isRefusal = tr, true
			}
		}
		if serr != nil && refused == nil {
			if isRefusal {
				refused, by = serr, h.a
				continue
			}
			s.log.Warn("quota_settle_failed", "quota", h.a.q.cfg.Name, "error", serr)
		}
		s.warn(ctx, st, h.a, m, &h.r, true)
	}
	if refused != nil {
		return s.refuse(ctx, st, by, m, refused, pipeline.ActionWithheld)
	}
	return resp, err
}

var errCallTimeout = errors.New("quota: call_timeout")

// count adds what a settled reservation counted to mcpgate_quota_usage_total
// (a charge refused at settling counted nothing).
func (q *compiled) count(r *meter.Reservation, refused *meter.Refusal) {
	for k := range r.Len() {
		c := r.Charge(k)
		if u := q.usage[c.Counter]; u != nil && r.Actual[k] > 0 && (refused == nil || refused.Index != k) {
			u.Add(float64(r.Actual[k]))
		}
	}
}

// charges fills cs with what m costs under a; h learns where the
// estimates are.
func (a *applied) charges(cs *[meter.MaxCharges]meter.Charge, m *core.Message, content bool, h *held) int {
	q := a.q
	n := 0
	if q.iReq >= 0 {
		cs[n] = meter.Charge{Counter: q.iReq, Amount: 1}
		n++
	}
	// A 2026-07-28 retry (it carries the requestState of an
	// input_required result) goes on with a call already counted: it is
	// a request, not another tool call.
	if m.Method == "tools/call" && !retried(m) {
		if q.iCalls >= 0 {
			cs[n] = meter.Charge{Counter: q.iCalls, Amount: 1}
			n++
		}
		if i, ok := q.tools[m.Name]; ok {
			cs[n] = meter.Charge{Counter: i, Amount: 1}
			n++
		}
	}
	if q.iConc >= 0 {
		cs[n] = meter.Charge{Counter: q.iConc, Amount: 1}
		n++
	}
	if content {
		if q.iBytes >= 0 {
			h.est[0] = n
			cs[n] = meter.Charge{Counter: q.iBytes, Amount: q.estBytes.Load(), Clamp: true}
			n++
		}
		if q.iTokens >= 0 {
			h.est[1] = n
			cs[n] = meter.Charge{Counter: q.iTokens, Amount: q.estTokens.Load(), Clamp: true}
			n++
		}
	}
	return n
}

// retried reports whether m retries an earlier call (a modern request
// answering input_required with its requestState).
func retried(m *core.Message) bool {
	return m.Era == core.EraModern && bytes.Contains(m.Params, []byte(`"requestState"`))
}

// reserve calls the meter; the concrete in-memory types directly, so that
// the charges stay on the caller's stack.
func reserve(ctx context.Context, a *applied, cs []meter.Charge, now time.Time) (meter.Reservation, error) {
	switch m := a.m.(type) {
	case *meter.Counters:
		return m.Reserve(ctx, a.key, cs, now)
	case *sharedMeter:
		return m.Reserve(ctx, a.key, cs, now)
	}
	return a.m.Reserve(ctx, a.key, slices.Clone(cs), now)
}

// settle is reserve's twin: the reservation stays where it is.
func settle(ctx context.Context, a *applied, r *meter.Reservation, now time.Time) error {
	switch m := a.m.(type) {
	case *meter.Counters:
		return m.Settle(ctx, r, now)
	case *sharedMeter:
		return m.Settle(ctx, r, now)
	}
	heap := *r
	err := a.m.Settle(ctx, &heap, now)
	*r = heap
	return err
}

// release gives back what the reservations took for a request that did
// not go upstream, or (sent) whose result never came: then the counts
// stay and only the estimates are given back.
func (s *Stage) release(ctx context.Context, hs []held, now time.Time, sent bool) {
	for i := range hs {
		h := &hs[i]
		if !sent {
			for k := range h.r.Len() {
				h.r.Actual[k] = 0
			}
		}
		for _, p := range h.est {
			if p >= 0 {
				h.r.Actual[p] = 0
			}
		}
		if err := settle(ctx, h.a, &h.r, now); err != nil {
			s.log.Warn("quota_settle_failed", "quota", h.a.q.cfg.Name, "error", err)
		}
	}
}

// estimate is the next running estimate of a result's size: an average
// weighing the last result an eighth.
func estimate(prev, n int64) int64 {
	if prev == 0 {
		return n
	}
	return prev + (n-prev)/8
}

// countTokens counts the tokens of a result's text content: tool result
// content (text blocks and embedded resources' text), resource contents,
// prompt messages. Structured content, images and blobs are bytes, not
// text, and count in result_bytes only.
func countTokens(tok tokens.Counter, result []byte) int64 {
	var r struct {
		Content  []block           `json:"content"`
		Contents []resourceText    `json:"contents"`
		Messages []json.RawMessage `json:"messages"`
	}
	if json.Unmarshal(result, &r) != nil {
		return 0
	}
	var n int64
	for _, b := range r.Content {
		n += b.count(tok)
	}
	for _, c := range r.Contents {
		n += tok.Count(c.Text)
	}
	for _, raw := range r.Messages {
		var msg struct {
			Content json.RawMessage `json:"content"`
		}
		if json.Unmarshal(raw, &msg) != nil || len(msg.Content) == 0 {
			continue
		}
		if msg.Content[0] == '[' {
			var bs []block
			if json.Unmarshal(msg.Content, &bs) == nil {
				for _, b := range bs {
					n += b.count(tok)
				}
			}
			continue
		}
		var b block
		if json.Unmarshal(msg.Content, &b) == nil {
			n += b.count(tok)
		}
	}
	return n
}

type block struct {
	Type     string        `json:"type"`
	Text     string        `json:"text"`
	Resource *resourceText `json:"resource"`
}

type resourceText struct {
	Text string `json:"text"`
}

func (b *block) count(tok tokens.Counter) int64 {
	switch {
	case b.Type == "text":
		return tok.Count(b.Text)
	case b.Resource != nil:
		return tok.Count(b.Resource.Text)
	}
	return 0
}

// Refusal is what the client learns of a limit it hit (the data of the
// JSON-RPC error, the _meta of the tool result).
type Refusal struct {
	Quota string `json:"quota"`
	Limit string `json:"limit"`
	Max   int64  `json:"max"`
	Usage int64  `json:"usage"`
	Per   string `json:"per"`
	// Window is the quota's window ("0s": the session's lifetime).
	Window string `json:"window"`
	// ResetsInSeconds and ResetsAt say when the request would fit again;
	// absent when time does not free it (a lifetime budget, requests in
	// flight).
	ResetsInSeconds *int64     `json:"resets_in_seconds,omitempty"`
	ResetsAt        *time.Time `json:"resets_at,omitempty"`
	Message         string     `json:"message"`
}

// metaKey is where a tool result carries the refusal.
const metaKey = "io.mcpgate/quota"

// refuse answers m with the refusal err of quota a (a *meter.Refusal; a
// meter that could not decide is a 503).
func (s *Stage) refuse(ctx context.Context, st *state, a *applied, m *core.Message, err error, decision string) (*core.Message, error) {
	ref, ok := meter.Refused(err)
	if !ok {
		why := "its store cannot be reached"
		if errors.Is(err, meter.ErrTooManyKeys) {
			why = "it tracks as many keys as it may"
		}
		// The outage itself is logged once, by the meter (quota_store_unavailable).
		s.log.Debug("quota_unavailable", "quota", a.q.cfg.Name, "session", st.info.LogID(), "principal", st.info.Principal, "error", err)
		e := core.NewError(core.CodeInternalError, "quota "+strconv.Quote(a.q.cfg.Name)+" cannot be checked ("+why+"); retry shortly").
			WithStatus(http.StatusServiceUnavailable).Wrap(err)
		e.Header = http.Header{"Retry-After": {"1"}}
		return nil, e
	}
	q := a.q
	r := Refusal{Quota: q.cfg.Name, Limit: ref.Counter, Max: ref.Limit, Usage: ref.Used, Per: q.cfg.Per, Window: q.cfg.Window.String()}
	if ref.ResetIn > 0 {
		secs := int64(math.Ceil(ref.ResetIn.Seconds()))
		at := time.Now().Add(ref.ResetIn).UTC().Truncate(time.Second)
		r.ResetsInSeconds, r.ResetsAt = &secs, &at
	}
	r.Message = r.sentence(decision)
	if ref.Index >= 0 {
		for i, c := range q.spec.Counters {
			if c.Name == ref.Counter {
				q.refusals[i].Inc()
			}
		}
	}
	return s.answer(ctx, st, m, r, decision)
}

// sentence is the refusal in words an agent can act on.
func (r *Refusal) sentence(decision string) string {
	what := "request refused"
	if decision == pipeline.ActionWithheld {
		what = "result withheld"
	}
	s := what + ": quota " + strconv.Quote(r.Quota) + " limit " + r.Limit + " is " + strconv.FormatInt(r.Max, 10)
	switch r.Limit {
	case LimitConcurrent:
		s += " requests in flight per " + r.Per + "; " + strconv.FormatInt(r.Usage, 10) + " are; retry when one has finished"
		return s
	case LimitCallTimeout, LimitSessionTime:
		return r.Message
	}
	s += " per " + r.Per
	if r.Window != "0s" {
		s += " per " + r.Window
	}
	s += ", usage would be " + strconv.FormatInt(r.Usage, 10)
	switch {
	case r.ResetsInSeconds != nil:
		s += "; it fits again in " + strconv.FormatInt(*r.ResetsInSeconds, 10) + "s (at " + r.ResetsAt.Format(time.RFC3339) + ")"
	case r.Per == config.QuotaPerSession:
		s += "; it does not reset in this session: start a new one to go on"
	default:
		s += "; it does not reset with time"
	}
	return s
}

// answer gives the client the refusal r: a tools/call gets an isError
// tool result (the model reads it), another request a JSON-RPC -32013
// with r in data.
func (s *Stage) answer(ctx context.Context, st *state, m *core.Message, r Refusal, decision string) (*core.Message, error) {
	e := core.NewError(core.CodeSessionCap, r.Message).WithData(r).WithStatus(http.StatusOK)
	if r.Limit == LimitCallTimeout {
		e.Code = core.CodeRequestTimeout
	}
	s.log.Info("quota_"+decision, "quota", r.Quota, "limit", r.Limit, "max", r.Max, "usage", r.Usage,
		"session", st.info.LogID(), "principal", st.info.Principal, "route", s.route, "method", m.Method)
	if s.observe != nil {
		s.observe(ctx, st.info, &pipeline.Event{Kind: pipeline.Decision, Route: s.route, Message: m, Err: e,
			Quota: r.Quota, Limit: r.Limit, Action: decision, Usage: r.Usage, Max: r.Max})
	}
	// A refused 2026-07-28 retry is an error, not a tool result: the
	// gateway then abandons the upstream call the retry would have
	// answered, which otherwise waits out its pending timeout.
	if m.Method != "tools/call" || retried(m) {
		return nil, e
	}
	text, _ := json.Marshal(r.Message)
	meta, _ := json.Marshal(r)
	result := make([]byte, 0, len(text)+len(meta)+80)
	result = append(result, `{"content":[{"type":"text","text":`...)
	result = append(result, text...)
	result = append(result, `}],"isError":true,"_meta":{"`+metaKey+`":`...)
	result = append(result, meta...)
	result = append(result, "}}"...)
	return core.ResultResponse(m.ID, result), nil
}

// timedOut answers a request cut off at call_timeout.
func (s *Stage) timedOut(ctx context.Context, st *state, m *core.Message) (*core.Message, error) {
	var q *compiled
	for _, a := range st.quotas {
		if a.q.cfg.CallTimeout == st.timeout {
			q = a.q
			break
		}
	}
	q.timeouts.Inc()
	r := Refusal{Quota: q.cfg.Name, Limit: LimitCallTimeout, Max: st.timeout.Milliseconds(), Usage: st.timeout.Milliseconds(), Per: "request", Window: q.cfg.Window.String()}
	r.Message = "request cut off: quota " + strconv.Quote(q.cfg.Name) + " limit call_timeout is " + st.timeout.String() +
		" per request; the server was told to cancel it. Ask for less (narrower arguments, fewer items) or split the work"
	return s.answer(ctx, st, m, r, pipeline.ActionTimeout)
}

// expire ends a session whose session_time is spent: from its timer (m
// nil) or from a request that came after it. The session ends with
// reason quota; its requests get 404 afterwards.
func (s *Stage) expire(ctx context.Context, st *state, m *core.Message) error {
	q := st.limit
	msg := "session ended: quota " + strconv.Quote(q.cfg.Name) + " limit session_time is " + q.cfg.SessionTime.String() +
		" since the session was created; start a new session to go on"
	e := core.NewError(core.CodeSessionNotFound, msg).WithStatus(http.StatusNotFound).WithData(Refusal{
		Quota: q.cfg.Name, Limit: LimitSessionTime, Max: q.cfg.SessionTime.Milliseconds(),
		Usage: time.Since(st.created).Milliseconds(), Per: config.QuotaPerSession, Window: "0s", Message: msg})
	if st.once.CompareAndSwap(false, true) {
		q.ended.Inc()
		s.log.Info("quota_session_time", "quota", q.cfg.Name, "session", st.info.LogID(), "principal", st.info.Principal, "route", s.route)
		if s.observe != nil {
			s.observe(ctx, st.info, &pipeline.Event{Kind: pipeline.Decision, Route: s.route, Message: m, Err: e,
				Quota: q.cfg.Name, Limit: LimitSessionTime, Action: pipeline.ActionSessionTime,
				Usage: time.Since(st.created).Milliseconds(), Max: q.cfg.SessionTime.Milliseconds()})
		}
		if s.end != nil {
			// Not on the request's goroutine: ending waits for the
			// session's requests, this one among them.
			go s.end(st.info, "quota")
		}
	}
	return e
}

// warn tells the client, once per session and limit, that a counter of a
// reached the soft threshold: after Reserve (estimates are not usage yet)
// or after Settle.
func (s *Stage) warn(ctx context.Context, st *state, a *applied, m *core.Message, r *meter.Reservation, settled bool) {
	at := a.q.cfg.WarnAt
	if at <= 0 {
		return
	}
	for k := range r.Len() {
		c := r.Charge(k)
		if c.Clamp && !settled {
			continue
		}
		ctr := a.q.spec.Counters[c.Counter]
		used := r.Used[k]
		if float64(used) < at*float64(ctr.Limit) || a.warned[c.Counter].Load() || !a.warned[c.Counter].CompareAndSwap(false, true) {
			continue
		}
		a.q.warnings[c.Counter].Inc()
		msg := "quota " + strconv.Quote(a.q.cfg.Name) + " limit " + ctr.Name + ": " + strconv.FormatInt(used, 10) + " of " +
			strconv.FormatInt(ctr.Limit, 10) + " used per " + a.q.cfg.Per
		if a.q.cfg.Window > 0 {
			msg += " per " + a.q.cfg.Window.String()
		}
		msg += " (warn_at " + strconv.FormatFloat(at, 'g', -1, 64) + "); requests past the limit will be refused"
		s.log.Info("quota_warning", "quota", a.q.cfg.Name, "limit", ctr.Name, "usage", used, "max", ctr.Limit,
			"session", st.info.LogID(), "principal", st.info.Principal, "route", s.route)
		if s.observe != nil {
			s.observe(ctx, st.info, &pipeline.Event{Kind: pipeline.Decision, Route: s.route, Message: m,
				Quota: a.q.cfg.Name, Limit: ctr.Name, Action: pipeline.ActionWarning, Usage: used, Max: ctr.Limit})
		}
		params, _ := json.Marshal(map[string]any{"level": "warning", "logger": "mcpgate.quota", "data": map[string]any{
			"message": msg, "quota": a.q.cfg.Name, "limit": ctr.Name, "usage": used, "max": ctr.Limit}})
		if n, err := core.Notification("notifications/message", params); err == nil {
			n.Era = m.Era
			core.NotifyClient(ctx, n)
		}
	}
}

// Usage is one limit's usage as a session sees it.
type Usage struct {
	Quota string `json:"quota"`
	Per   string `json:"per"`
	// Key is what a shared budget counts the session under
	// ("principal:acme/alice", "tenant:acme"); "" for the session's own.
	Key   string `json:"key,omitempty"`
	Limit string `json:"limit"`
	// Max is the limit in force for the session: the quota's, or the
	// lower one the session set for itself (Tightened, Configured the
	// quota's).
	Max        int64  `json:"max"`
	Tightened  bool   `json:"tightened,omitempty"`
	Configured int64  `json:"configured_max,omitempty"`
	Used       int64  `json:"used"`
	Window     string `json:"window"`
	// ResetsInSeconds and ResetsAt say when the oldest unit counted
	// leaves the window, so that the usage drops: absent for a lifetime
	// budget (window 0s), requests in flight, nothing counted, or a
	// budget in a shared store.
	ResetsInSeconds *int64     `json:"resets_in_seconds,omitempty"`
	ResetsAt        *time.Time `json:"resets_at,omitempty"`
}

// Usage reads the usage of every limit of every quota that applies to
// the session (nil before its first request, or on a route without
// quotas): the session's own budgets and its share of its principal's and
// tenant's. A shared store is asked (a round trip per limit).
func (s *Stage) Usage(ctx context.Context, info *core.SessionInfo) ([]Usage, error) {
	if s == nil {
		return nil, nil
	}
	return UsageOf(ctx, info)
}

// UsageOf is Stage.Usage for whichever quota stage the session's chain
// holds: nil when it holds none.
func UsageOf(ctx context.Context, info *core.SessionInfo) ([]Usage, error) {
	if info == nil || info.Stages == nil {
		return nil, nil
	}
	cur := info.Stages.Load()
	if cur == nil {
		return nil, nil
	}
	v, _ := cur.Get(StageName)
	st, _ := v.(*state)
	if st == nil {
		return nil, nil
	}
	now := time.Now()
	var out []Usage
	for _, a := range st.quotas {
		for i, c := range a.q.spec.Counters {
			u := Usage{Quota: a.q.cfg.Name, Per: a.q.cfg.Per, Key: a.key, Limit: c.Name, Max: a.max(i), Window: a.q.cfg.Window.String()}
			if u.Max != c.Limit {
				u.Tightened, u.Configured = true, c.Limit
			}
			if a.m == meter.Meter(a.q.session) {
				u.Key = ""
			}
			n, err := usageOf(ctx, a, i, now)
			if err != nil {
				return out, err
			}
			u.Used = n
			if d := resetInOf(a, i, now); d > 0 {
				secs := int64(math.Ceil(d.Seconds()))
				at := now.Add(d).UTC().Truncate(time.Second)
				u.ResetsInSeconds, u.ResetsAt = &secs, &at
			}
			out = append(out, u)
		}
	}
	return out, nil
}

func usageOf(ctx context.Context, a *applied, i int, now time.Time) (int64, error) {
	switch m := a.m.(type) {
	case *meter.Counters:
		return m.Usage(i, now), nil
	case *sharedMeter:
		if sh := m.shared.Load(); sh != nil {
			if r, ok := sh.Meter.(*meter.Redis); ok {
				return r.Usage(ctx, a.key, i)
			}
		}
		return m.local.Usage(a.key, i, now), nil
	}
	return 0, nil
}

// resetInOf is when counter i's usage under a first drops; 0 when
// unknown (a shared store) or never.
func resetInOf(a *applied, i int, now time.Time) time.Duration {
	switch m := a.m.(type) {
	case *meter.Counters:
		return m.ResetIn(i, now)
	case *sharedMeter:
		if m.shared.Load() == nil {
			return m.local.ResetIn(a.key, i, now)
		}
	}
	return 0
}

// Tightening lowers one limit for one session (Stage.Tighten).
type Tightening struct {
	// Quota names the quota; "" lowers the limit in every quota of the
	// session that has it.
	Quota string `json:"quota,omitempty"`
	// Limit is the limit's name: requests, tool_calls, tool:NAME,
	// result_bytes, result_tokens, concurrent.
	Limit string `json:"limit"`
	// Max is the new max, at least 1 and at most the max in force.
	Max int64 `json:"max"`
}

// ErrLoosen is the error of a Tightening that would raise a max.
var ErrLoosen = errors.New("quota: a session may only lower its limits")

// Tighten lowers limits of the quotas that apply to the session, for
// this session alone, as long as it lives (a reload keeps them). Either
// every change applies or none: a change naming a limit none of the
// session's quotas has, a max below 1, or a max above the max in force
// (a loosening, ErrLoosen) refuses them all. Equal maxes are kept.
func (s *Stage) Tighten(info *core.SessionInfo, changes []Tightening) error {
	st := s.stateOf(info)
	if st == nil {
		return errors.New("no quota applies to this session")
	}
	type step struct {
		a   *applied
		i   int
		max int64
	}
	var steps []step
	for _, c := range changes {
		if c.Max < 1 {
			return fmt.Errorf("quota %q limit %s: max %d is below 1 (end the session instead)", c.Quota, c.Limit, c.Max)
		}
		found := false
		for _, a := range st.quotas {
			if c.Quota != "" && a.q.cfg.Name != c.Quota {
				continue
			}
			for i, ctr := range a.q.spec.Counters {
				if ctr.Name != c.Limit {
					continue
				}
				found = true
				if cur := a.max(i); c.Max > cur {
					return fmt.Errorf("%w: quota %q limit %s is %d for this session; %d would raise it", ErrLoosen, a.q.cfg.Name, ctr.Name, cur, c.Max)
				}
				steps = append(steps, step{a, i, c.Max})
			}
		}
		if !found {
			return fmt.Errorf("no quota of this session has limit %q%s (see its status for the limits in force)", c.Limit, quotaNamed(c.Quota))
		}
	}
	for _, p := range steps {
		for {
			cur := p.a.tight[p.i].Load()
			if cur > 0 && cur <= p.max {
				break // lowered further meanwhile
			}
			if p.a.tight[p.i].CompareAndSwap(cur, p.max) {
				break
			}
		}
		p.a.tightened.Store(true)
	}
	return nil
}

func quotaNamed(q string) string {
	if q == "" {
		return ""
	}
	return " in quota " + strconv.Quote(q)
}

// stateOf is the session's quota state; nil without one.
func (s *Stage) stateOf(info *core.SessionInfo) *state {
	if s == nil || info == nil || info.Stages == nil {
		return nil
	}
	cur := info.Stages.Load()
	if cur == nil {
		return nil
	}
	v, _ := cur.Get(StageName)
	st, _ := v.(*state)
	return st
}

// carryTight keeps, across a reload, the lower maxes the session set in
// a quota of the same name, for counters of the same name (they may only
// be lower than the new quota's).
func (a *applied) carryTight(old []*applied) {
	for _, o := range old {
		if o.q.cfg.Name != a.q.cfg.Name || !o.tightened.Load() {
			continue
		}
		for j, oc := range o.q.spec.Counters {
			t := o.tight[j].Load()
			if t <= 0 {
				continue
			}
			for i, c := range a.q.spec.Counters {
				if c.Name == oc.Name && t < c.Limit {
					a.tight[i].Store(t)
					a.tightened.Store(true)
				}
			}
		}
	}
}

// overTight checks a reservation (or, settled, its actual amounts)
// against the maxes the session lowered: the refusal of the first charge
// over one, nil when none is.
func (a *applied) overTight(r *meter.Reservation, settled bool, now time.Time) *meter.Refusal {
	for k := range r.Len() {
		c := r.Charge(k)
		t := a.tight[c.Counter].Load()
		if t <= 0 {
			continue
		}
		ctr := a.q.spec.Counters[c.Counter]
		used := r.Used[k]
		over := used > t
		if c.Clamp && !settled {
			// An estimate: refused only when the budget is spent already.
			over = used-r.Held(k) >= t
		}
		if !over {
			continue
		}
		return &meter.Refusal{Index: k, Counter: ctr.Name, Limit: t, Used: used, ResetIn: resetInOf(a, c.Counter, now)}
	}
	return nil
}

// Meters are the budgets of principals and tenants, one per quota, kept
// across reloads (a quota that keeps its name keeps its usage; with other
// limits in the same window, counter by counter) and bound to a shared
// store when the gateway has one.
type Meters struct {
	mu       sync.Mutex
	keep     bool // per-session budgets are kept (KeepSessions)
	byName   map[string]*sharedMeter
	bind     func(name string, spec meter.Spec) meter.Meter
	failOpen bool
	expire   time.Duration
	log      *slog.Logger
}

// NewMeters returns the gateway's budgets, in memory until Bind.
// sessionTTL is the longest a session may live: how long a shared store
// keeps a session's budget after its last change.
func NewMeters(failOpen bool, sessionTTL time.Duration, log *slog.Logger) *Meters {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if sessionTTL <= 0 {
		sessionTTL = 24 * time.Hour
	}
	return &Meters{byName: map[string]*sharedMeter{}, failOpen: failOpen, expire: sessionTTL, log: log}
}

// Bind moves every budget to the meters shared returns (one per quota,
// Redis), before the gateway serves; quotas compiled later bind too.
func (ms *Meters) Bind(shared func(name string, spec meter.Spec) meter.Meter) {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	ms.bind = shared
	for name, m := range ms.byName {
		m.shared.Store(&boxed{shared(name, *m.spec)})
	}
}

// KeepSessions makes the per-session budgets of sessions made from now
// on part of Locals, for a store that keeps them across restarts.
func (ms *Meters) KeepSessions() {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	ms.keep = true
	for _, m := range ms.byName {
		m.keep.Store(true)
	}
}

// Locals are the in-memory budgets by quota name (principal and tenant
// quotas), for a store that keeps them across restarts.
func (ms *Meters) Locals() map[string]*meter.Local {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	out := make(map[string]*meter.Local, len(ms.byName))
	for name, m := range ms.byName {
		if !m.session || ms.keep {
			out[name] = m.local
		}
	}
	return out
}

// get returns quota name's budgets of spec, the existing ones if the spec
// is the same; session marks a per-session quota's.
func (ms *Meters) get(name string, spec *meter.Spec, session bool) *sharedMeter {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	if session {
		cp := *spec
		cp.Expire = ms.expire
		spec = &cp
	}
	if m := ms.byName[name]; m != nil && m.session == session && reflect.DeepEqual(*m.spec, *spec) {
		return m
	}
	m := &sharedMeter{name: name, spec: spec, session: session, local: meter.NewLocal(*spec, 0), failOpen: ms.failOpen, log: ms.log}
	m.keep.Store(ms.keep)
	if prev := ms.byName[name]; prev != nil && prev.session == session {
		// The quota's limits changed (a reload): its usage goes on.
		m.local.CarryFrom(prev.local)
	}
	if ms.bind != nil {
		m.shared.Store(&boxed{ms.bind(name, *spec)})
	}
	ms.byName[name] = m
	return m
}

// sharedMeter is one quota's budgets of principals or tenants: local, or
// in the shared store once bound. While the shared store cannot answer,
// fail-closed refuses (503) and fail-open admits uncounted, logged once
// per outage.
type sharedMeter struct {
	name     string
	spec     *meter.Spec
	session  bool // a per-session quota's (used only when kept or bound)
	keep     atomic.Bool
	local    *meter.Local
	shared   atomic.Pointer[boxed]
	failOpen bool
	down     atomic.Bool
	log      *slog.Logger
}

type boxed struct{ meter.Meter }

// kept reports whether a per-session quota's budgets live here rather
// than in the session's own state: in a shared store, or kept by one.
func (m *sharedMeter) kept() bool { return m.shared.Load() != nil || m.keep.Load() }

func (m *sharedMeter) Reserve(ctx context.Context, key string, cs []meter.Charge, now time.Time) (meter.Reservation, error) {
	sh := m.shared.Load()
	if sh == nil {
		return m.local.Reserve(ctx, key, cs, now)
	}
	// The shared meter is Redis: a round trip; copies cost nothing next
	// to it, and keep the caller's charges on its stack.
	r, err := sh.Reserve(ctx, key, slices.Clone(cs), now)
	if _, refused := meter.Refused(err); err == nil || refused {
		if m.down.Load() && m.down.CompareAndSwap(true, false) {
			m.log.Info("quota_store_recovered", "quota", m.name)
		}
		return r, err
	}
	if ctx.Err() != nil {
		return r, err
	}
	if !m.down.Load() && m.down.CompareAndSwap(false, true) {
		m.log.Error("quota_store_unavailable", "quota", m.name, "fail_open", m.failOpen, "error", err)
	}
	if m.failOpen {
		return meter.Reservation{}, nil // admitted, uncounted
	}
	return r, err
}

func (m *sharedMeter) Settle(ctx context.Context, r *meter.Reservation, now time.Time) error {
	if r.Len() == 0 || r.Settled() {
		return nil
	}
	if sh := m.shared.Load(); sh != nil {
		heap := *r
		err := sh.Settle(ctx, &heap, now)
		*r = heap
		return err
	}
	return m.local.Settle(ctx, r, now)
}

type metrics struct {
	refusals, warnings, usage *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		refusals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mcpgate_quota_refusals_total",
			Help: "Requests refused, results withheld, calls cut off and sessions ended by a quota, by route, quota and limit.",
		}, []string{"route", "quota", "limit"}),
		warnings: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mcpgate_quota_warnings_total",
			Help: "Sessions warned that a quota limit reached its warn_at threshold, by route, quota and limit.",
		}, []string{"route", "quota", "limit"}),
		usage: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mcpgate_quota_usage_total",
			Help: "What quotas counted (requests, tool calls, result bytes and tokens admitted), by route, quota and limit.",
		}, []string{"route", "quota", "limit"}),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []**prometheus.CounterVec{&m.refusals, &m.warnings, &m.usage} {
		if err := reg.Register(*c); err != nil {
			var are prometheus.AlreadyRegisteredError
			if !errors.As(err, &are) {
				return nil, err
			}
			*c = are.ExistingCollector.(*prometheus.CounterVec)
		}
	}
	return m, nil
}
