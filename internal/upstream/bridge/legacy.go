package bridge

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mcpgate/mcpgate/internal/catalog"
	"github.com/mcpgate/mcpgate/internal/core"
	"github.com/mcpgate/mcpgate/internal/upstream"
)

// A legacy client of a modern server.
//
// The gateway sees a legacy Conn; upstream there is only a modern one,
// whose every request stands alone. The bridge keeps what the legacy
// session would have kept upstream and puts it on each request instead:
//
//	legacy (client side)             modern (upstream)
//	initialize                       server/discover; answered here
//	notifications/initialized        nothing
//	ping                             nothing; {} answered here
//	logging/setLevel                 _meta logLevel on later requests; {} here
//	any other request                the same request + _meta protocolVersion,
//	                                 clientInfo, clientCapabilities (logLevel)
//	server→client requests           input_required results: each input
//	  (sampling, elicitation, roots)   request goes to the client as a request
//	                                   of its own, the answers go back on a
//	                                   retry (inputResponses, requestState)
//	notifications/cancelled          the upstream request's stream is closed
//	GET stream (Listen)              subscriptions/listen
//	resources/subscribe|unsubscribe  the listen stream's resourceSubscriptions
//
// What does not cross, and what the client sees instead:
//
//   - The 2025-11-25 experimental tasks (tasks/* requests, task-augmented
//     requests with params.task, the tasks capability): the modern era
//     moved tasks to an extension with other semantics. tasks/* answer
//     -32601 and params.task -32602, each naming the feature; the tasks
//     capability is neither declared to the client nor passed upstream.
//   - Client notifications other than initialized and cancelled
//     (notifications/roots/list_changed, ...): the modern era has none; the
//     server asks for roots with each request that needs them, so nothing is
//     lost. They are dropped with a debug log.
//   - Resource not found: a modern server answers -32602 (Invalid params)
//     where legacy revisions said -32002. The code is passed on as it is:
//     an invalid-params error cannot be told apart from other -32602s
//     reliably, and clients treat both as a failed read.
//   - Upstream HTTP statuses of error responses (404 for -32601, 400 for
//     -32602, ...) are not passed on: to a legacy client a 404 means its
//     session is gone. Errors travel as JSON-RPC errors inside the session.
//   - URL-mode elicitation: modern servers send no elicitationId and no
//     notifications/elicitation/complete (the client learns the outcome by
//     the retry). The bridge gives such requests an elicitationId of its own
//     so 2025-11-25 clients accept them; no completion notification follows.
//   - An input request the client answers with a JSON-RPC error (it does
//     not support the method, or the gateway timed the client out) fails the
//     whole call: a retry must carry a result for every key, and an error is
//     not one. The error names the input request (message, and data
//     inputRequest, method, error); its code is -32001 when the client's
//     answer was a timeout, else -32603. A user who declines an elicitation
//     answers with a result (action "decline"), which goes upstream like
//     any other answer.
//   - Input requests reach the client with ids the bridge mints,
//     "mcpgate-input-<nonce>-<n>" (the nonce is per Conn, so a session
//     re-established on a new Conn never reuses one); the answers come back
//     through Send and never go upstream. When the call ends before every
//     answer came (cancelled, timed out, failed, Conn closed), the
//     unanswered ones are withdrawn with notifications/cancelled.
//   - Tool arguments marked x-mcp-header are mirrored into Mcp-Param-*
//     headers (the legacy client knows nothing of them), from the tool
//     definitions the bridge has seen in tools/list results; after a
//     -32020 HeaderMismatch the bridge lists the tools itself and retries
//     once, as the spec tells modern clients to. Tools with invalid
//     annotations are not filtered out of tools/list (a modern client
//     would exclude them); the upstream refuses calls to them.

const (
	// lomMaxInputRounds bounds the input_required rounds of one request.
	lomMaxInputRounds = 16
	// lomMaxListPages bounds the tools/list pages read to learn x-mcp-header
	// annotations after a HeaderMismatch.
	lomMaxListPages = 32
	// lomListenBackoffMin and lomListenBackoffMax bound the pause before a
	// broken or ended subscriptions/listen stream is opened again.
	lomListenBackoffMin = time.Second
	lomListenBackoffMax = 30 * time.Second
)

// lomLogLevels are the levels logging/setLevel accepts (RFC 5424 names).
var lomLogLevels = []string{"debug", "info", "notice", "warning", "error", "critical", "alert", "emergency"}

// lomServerCaps are the server capabilities legacy clients understand;
// others (extensions, ...) are not declared to them.
var lomServerCaps = []string{"experimental", "logging", "completions", "prompts", "resources", "tools"}

// lomErrCancelled is the cause of a request the client cancelled.
var lomErrCancelled = errors.New("bridge: request cancelled by the client")

// legacyOverModern is the Conn of a legacy client session whose upstream
// speaks only the modern era. Safe for concurrent use.
type legacyOverModern struct {
	u     *Upstream // for its Tap
	inner upstream.Conn
	sink  upstream.Sink
	sess  *core.SessionInfo
	log   *slog.Logger
	// life ends with Close; every request, wait and stream derives from it.
	life context.Context
	kill context.CancelFunc
	// nonce makes the ids the bridge mints unique across the Conns of one
	// gateway session (a re-established session opens a new Conn, and the
	// client may still hold ids of the old one).
	nonce string
	seq   atomic.Uint64
	wg    sync.WaitGroup
	// defaultVersion is the modern revision to speak before discover said.
	defaultVersion string

	mu sync.Mutex
	// closed is set by Close; goroutines are only started while it is not.
	closed bool
	// version is the modern revision spoken upstream.
	version string
	// clientInfo and clientCaps come from the client's initialize (raw,
	// capabilities already translated); clientCaps defaults to {}.
	clientInfo json.RawMessage
	clientCaps json.RawMessage
	logLevel   string
	// serverCaps are the upstream's capabilities from discover; nil until
	// initialize.
	serverCaps object
	// flights are the client requests in flight upstream, by id key.
	flights map[string]*lomFlight
	// inputs are the input requests sent to the client, by id key.
	inputs map[string]lomPending
	// subs are the URIs the client subscribed to.
	subs map[string]struct{}
	// cat is the session's tool catalog, read for x-mcp-header bindings;
	// ownCat: none was given, so the Conn feeds it the tools/list
	// responses it carries (otherwise the gateway does).
	cat    *catalog.Catalog
	ownCat bool
	// listening: Listen was called; kick wakes the listen loop when what it
	// listens for changed; waiters are subscribe calls waiting for the
	// stream that carries their change.
	listening bool
	kick      chan struct{}
	waiters   []chan struct{}
}

var _ upstream.Conn = (*legacyOverModern)(nil)

type lomFlight struct {
	cancel context.CancelCauseFunc
}

// lomPending is one input request waiting for the client's answer.
type lomPending struct {
	ch  chan lomAnswer
	idx int
}

type lomAnswer struct {
	idx int
	m   *core.Message
}

// newLegacyOverModern opens the modern Conn a legacy client session uses.
// It does no I/O of its own: initialize does the first.
func newLegacyOverModern(ctx context.Context, u *Upstream, p upstream.OpenParams, sink upstream.Sink) (upstream.Conn, error) {
	info, err := u.Probe(ctx)
	if err != nil {
		return nil, err
	}
	var nonce [4]byte
	_, _ = rand.Read(nonce[:])
	c := &legacyOverModern{
		u:              u,
		sink:           sink,
		sess:           p.Session,
		log:            u.opts.Logger,
		nonce:          hex.EncodeToString(nonce[:]),
		defaultVersion: lomNewestModern(info.ModernVersions),
		clientCaps:     json.RawMessage(`{}`),
		flights:        map[string]*lomFlight{},
		inputs:         map[string]lomPending{},
		subs:           map[string]struct{}{},
		cat:            p.Catalog,
		kick:           make(chan struct{}, 1),
	}
	if c.defaultVersion == "" {
		c.defaultVersion = core.ModernVersions[0]
	}
	if c.cat == nil {
		c.cat, c.ownCat = catalog.New(), true
	}
	c.version = c.defaultVersion
	if p.Session != nil {
		c.log = c.log.With("session", p.Session.LogID(), "principal", p.Session.Principal)
	}
	c.life, c.kill = context.WithCancel(context.Background())
	inner, err := u.inner.Open(ctx, upstream.OpenParams{Session: p.Session, Era: core.EraModern, Catalog: p.Catalog}, lomSink{c})
	if err != nil {
		c.kill()
		return nil, err
	}
	c.inner = inner
	return c, nil
}

// lomNewestModern is the newest revision mcpgate knows among offered.
func lomNewestModern(offered []string) string {
	for _, v := range core.ModernVersions {
		if slices.Contains(offered, v) {
			return v
		}
	}
	return ""
}

func (c *legacyOverModern) UpstreamSession() string { return "" }

func (c *legacyOverModern) isClosed() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closed
}

func lomClosed() error { return fmt.Errorf("bridge: %w", upstream.ErrClosed) }

// mint returns a new id for a request the bridge makes: "mcpgate-<kind>-
// <nonce>-<n>", a string no client request of the session carries.
func (c *legacyOverModern) mint(kind string) core.ID {
	return core.ID(`"mcpgate-` + kind + `-` + c.nonce + `-` + strconv.FormatUint(c.seq.Add(1), 10) + `"`)
}

// stamp marks a message the bridge hands to the gateway: it comes from
// the server side of a legacy Conn.
func (c *legacyOverModern) stamp(m *core.Message) *core.Message {
	m.Direction = core.ServerToClient
	m.Era = core.EraLegacy
	m.Session = c.sess
	m.Status = 0
	if m.Received.IsZero() {
		m.Received = time.Now()
	}
	return m
}

// reply readdresses resp to the client's request id and stamps it.
func (c *legacyOverModern) reply(resp *core.Message, id core.ID) *core.Message {
	return c.stamp(asResponse(resp, id))
}

// refuse answers request id with an error the bridge raises itself.
func (c *legacyOverModern) refuse(id core.ID, code int, msg string) *core.Message {
	return c.stamp(errorResponse(id, code, msg))
}

// RoundTrip answers what the legacy era has and the modern one has not,
// and forwards everything else with the session's _meta.
func (c *legacyOverModern) RoundTrip(ctx context.Context, req *core.Message, related upstream.Related) (*core.Message, error) {
	if req.Kind != core.KindRequest {
		return nil, errors.New("bridge: RoundTrip takes a request; use Send")
	}
	if c.isClosed() {
		return nil, lomClosed()
	}
	switch req.Method {
	case "initialize":
		return c.initialize(ctx, req)
	case "ping":
		return c.stamp(core.ResultResponse(req.ID, []byte(`{}`))), nil
	case "logging/setLevel":
		return c.setLevel(req), nil
	case "resources/subscribe", "resources/unsubscribe":
		return c.subscribe(ctx, req)
	}
	if strings.HasPrefix(req.Method, "tasks/") {
		return c.refuse(req.ID, core.CodeMethodNotFound, "method not found: "+req.Method+
			" belongs to the 2025-11-25 experimental tasks, which this server's protocol (2026-07-28) moved to an extension mcpgate cannot bridge"), nil
	}
	return c.forward(ctx, req, related)
}

// meta is the modern _meta the session's requests carry.
func (c *legacyOverModern) meta(withLevel bool) object {
	c.mu.Lock()
	defer c.mu.Unlock()
	m := object{}
	m.set(metaProtocolVersion, c.version)
	m[metaClientCaps] = c.clientCaps
	if len(c.clientInfo) > 0 {
		m[metaClientInfo] = c.clientInfo
	}
	if withLevel && c.logLevel != "" {
		m.set(metaLogLevel, c.logLevel)
	}
	return m
}

// request builds a request to send upstream; like (if not nil) lends it
// its routing fields and forwarded headers.
func (c *legacyOverModern) request(id core.ID, method string, params object, like *core.Message) (*core.Message, error) {
	m, err := buildRequest(id, method, params)
	if err != nil {
		return nil, err
	}
	m.Direction, m.Era, m.Session = core.ClientToServer, core.EraModern, c.sess
	if like != nil {
		m.Header, m.Received = like.Header, like.Received
	}
	return m, nil
}

// initialize asks the upstream with server/discover and answers the
// client's initialize itself. A repeated initialize does the same again
// (mcpgate replays the client's initialize to re-establish sessions);
// subscriptions and the log level of the session are kept.
func (c *legacyOverModern) initialize(ctx context.Context, req *core.Message) (*core.Message, error) {
	var p struct {
		ProtocolVersion string          `json:"protocolVersion"`
		Capabilities    json.RawMessage `json:"capabilities"`
		ClientInfo      json.RawMessage `json:"clientInfo"`
	}
	if len(req.Params) == 0 || json.Unmarshal(req.Params, &p) != nil {
		return c.refuse(req.ID, core.CodeInvalidParams, "invalid params: initialize needs params with protocolVersion, capabilities and clientInfo"), nil
	}
	caps, err := lomClientCaps(p.Capabilities)
	if err != nil {
		return c.refuse(req.ID, core.CodeInvalidParams, "invalid params: initialize capabilities must be an object"), nil
	}
	info := p.ClientInfo
	if string(info) == "null" {
		info = nil
	}
	version := c.defaultVersion
	var resp *core.Message
	for attempt := 0; ; attempt++ {
		meta := object{}
		meta.set(metaProtocolVersion, version)
		meta[metaClientCaps] = caps
		if len(info) > 0 {
			meta[metaClientInfo] = info
		}
		d, err := c.request(req.ID, "server/discover", object{"_meta": meta.encode()}, req)
		if err != nil {
			return c.refuse(req.ID, core.CodeInvalidParams, "invalid params: "+err.Error()), nil
		}
		if attempt == 0 {
			resp, err = c.inner.RoundTrip(ctx, d, nil) // the client's initialize, translated
		} else {
			resp, err = c.u.ownTrip(ctx, c.sess, c.inner, d, nil) // asked again, in another version
		}
		if err != nil {
			return nil, c.failure(ctx, err)
		}
		if resp.Kind == core.KindError && resp.ErrorCode() == core.CodeUnsupportedProtocolVersion && attempt == 0 {
			var e struct {
				Data struct {
					Supported []string `json:"supported"`
				} `json:"data"`
			}
			_ = json.Unmarshal(resp.Error, &e)
			if v := lomNewestModern(e.Data.Supported); v != "" && v != version {
				version = v
				continue
			}
		}
		break
	}
	if resp.Kind != core.KindResponse {
		return c.reply(resp, req.ID), nil
	}
	res, err := parseObject(resp.Result)
	if err != nil {
		return c.refuse(req.ID, core.CodeUpstreamError, "upstream answered server/discover with a result that is not an object"), nil
	}
	var supported []string
	_ = json.Unmarshal(res["supportedVersions"], &supported)
	if len(supported) > 0 && !slices.Contains(supported, version) {
		v := lomNewestModern(supported)
		if v == "" {
			return c.refuse(req.ID, core.CodeUpstreamError, "upstream supports protocol versions "+strings.Join(supported, ", ")+
				"; mcpgate bridges legacy clients to "+strings.Join(core.ModernVersions, ", ")+" only"), nil
		}
		version = v
	}
	serverCaps := res.sub("capabilities")
	c.mu.Lock()
	c.version, c.clientCaps, c.clientInfo, c.serverCaps = version, caps, info, serverCaps
	c.mu.Unlock()
	c.poke() // what the listen stream may ask for has changed

	legacyCaps := object{}
	for _, k := range lomServerCaps {
		if v, ok := serverCaps[k]; ok && string(v) != "null" {
			legacyCaps[k] = v
		}
	}
	out := object{}
	out.set("protocolVersion", core.NegotiateLegacy(p.ProtocolVersion, core.LegacyVersions))
	out.set("capabilities", legacyCaps)
	serverInfo := res.sub("_meta")[metaServerInfo]
	if len(serverInfo) == 0 || serverInfo[0] != '{' {
		// serverInfo is required in an InitializeResult; a modern server
		// only SHOULD send it.
		serverInfo = json.RawMessage(`{"name":"unknown","version":"unknown"}`)
	}
	out["serverInfo"] = serverInfo
	if s := res.str("instructions"); s != "" {
		out.set("instructions", s)
	}
	return c.stamp(core.ResultResponse(req.ID, out.encode())), nil
}

// lomClientCaps translates a legacy client's capabilities for the modern
// _meta: the 2025-11-25 tasks capability is dropped (see the file comment);
// the rest has the same shape in both eras.
func lomClientCaps(raw json.RawMessage) (json.RawMessage, error) {
	caps, err := parseObject(raw)
	if err != nil {
		return nil, err
	}
	delete(caps, "tasks")
	return caps.encode(), nil
}

// setLevel remembers the client's log level; later requests carry it.
func (c *legacyOverModern) setLevel(req *core.Message) *core.Message {
	var p struct {
		Level string `json:"level"`
	}
	if json.Unmarshal(req.Params, &p) != nil || !slices.Contains(lomLogLevels, p.Level) {
		return c.refuse(req.ID, core.CodeInvalidParams, "invalid params: logging/setLevel needs a level, one of "+strings.Join(lomLogLevels, ", "))
	}
	c.mu.Lock()
	c.logLevel = p.Level
	c.mu.Unlock()
	return c.stamp(core.ResultResponse(req.ID, []byte(`{}`)))
}

// subscribe changes the URIs the listen stream asks updates for. When the
// stream is open, it answers once a stream carrying the change has been
// acknowledged (or refused), so updates flow when the client has its answer.
func (c *legacyOverModern) subscribe(ctx context.Context, req *core.Message) (*core.Message, error) {
	uri := req.Name
	if uri == "" {
		return c.refuse(req.ID, core.CodeInvalidParams, "invalid params: "+req.Method+" needs params.uri"), nil
	}
	c.mu.Lock()
	if req.Method == "resources/subscribe" && c.serverCaps != nil && !lomFlag(c.serverCaps.sub("resources"), "subscribe") {
		c.mu.Unlock()
		return c.refuse(req.ID, core.CodeMethodNotFound, "method not found: the upstream does not declare resources.subscribe, so resources/subscribe cannot be served"), nil
	}
	_, had := c.subs[uri]
	changed := false
	if req.Method == "resources/subscribe" && !had {
		c.subs[uri] = struct{}{}
		changed = true
	} else if req.Method == "resources/unsubscribe" && had {
		delete(c.subs, uri)
		changed = true
	}
	var wait chan struct{}
	if changed && c.listening {
		wait = make(chan struct{})
		c.waiters = append(c.waiters, wait)
	}
	c.mu.Unlock()
	if wait != nil {
		c.poke()
		select {
		case <-wait:
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-c.life.Done():
			return nil, lomClosed()
		}
	}
	return c.stamp(core.ResultResponse(req.ID, []byte(`{}`))), nil
}

// lomFlag reads a boolean member; absent or not a boolean is false.
func lomFlag(o object, key string) bool {
	var b bool
	return json.Unmarshal(o[key], &b) == nil && b
}

// poke wakes the listen loop, if any.
func (c *legacyOverModern) poke() {
	select {
	case c.kick <- struct{}{}:
	default:
	}
}

// forward sends a client request upstream with the session's _meta, and
// runs the input_required rounds until the result is complete.
func (c *legacyOverModern) forward(ctx context.Context, req *core.Message, related upstream.Related) (*core.Message, error) {
	params, err := parseObject(req.Params)
	if err != nil {
		return c.refuse(req.ID, core.CodeInvalidParams, "invalid params: params must be an object"), nil
	}
	if _, ok := params["task"]; ok {
		return c.refuse(req.ID, core.CodeInvalidParams, "invalid params: task-augmented requests (params.task, the 2025-11-25 experimental tasks) "+
			"cannot be served: this server's protocol (2026-07-28) moved tasks to an extension mcpgate cannot bridge"), nil
	}
	meta := params.sub("_meta")
	for k, v := range c.meta(true) {
		meta[k] = v
	}
	params["_meta"] = meta.encode()
	out, err := c.request(req.ID, req.Method, params, req)
	if err != nil {
		return c.refuse(req.ID, core.CodeInvalidParams, "invalid params: "+err.Error()), nil
	}

	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	stop := context.AfterFunc(c.life, func() { cancel(upstream.ErrClosed) })
	defer stop()
	key := lomIDKey(req.ID)
	f := &lomFlight{cancel: cancel}
	c.mu.Lock()
	c.flights[key] = f
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		if c.flights[key] == f {
			delete(c.flights, key)
		}
		c.mu.Unlock()
	}()

	rel := c.relay(related)
	for round := 0; ; round++ {
		resp, err := c.send(ctx, out, rel, round > 0)
		if err != nil {
			return nil, c.failure(ctx, err)
		}
		ir, ok := lomInputRequired(resp)
		if !ok {
			return c.reply(resp, req.ID), nil
		}
		if round == lomMaxInputRounds {
			return c.refuse(req.ID, core.CodeInternalError, req.Method+" failed: the upstream still asked for input after "+
				strconv.Itoa(lomMaxInputRounds)+" rounds"), nil
		}
		answers, fail, err := c.askClient(ctx, req, ir.requests, related)
		if err != nil {
			return nil, c.failure(ctx, err)
		}
		if fail != nil {
			return fail, nil
		}
		retry := make(object, len(params)+2)
		for k, v := range params {
			retry[k] = v
		}
		delete(retry, "inputResponses")
		delete(retry, "requestState")
		if answers != nil {
			retry["inputResponses"] = answers.encode()
		}
		if ir.state != nil {
			retry["requestState"] = ir.state
		}
		if out, err = c.request(c.mint("retry"), req.Method, retry, out); err != nil {
			return c.refuse(req.ID, core.CodeInternalError, req.Method+" failed: "+err.Error()), nil
		}
	}
}

// failure turns the error of an upstream exchange into what RoundTrip
// returns: the Conn's closing first, then the client's cancellation, then
// the caller's context, then the error itself.
func (c *legacyOverModern) failure(ctx context.Context, err error) error {
	switch cause := context.Cause(ctx); {
	case c.life.Err() != nil || errors.Is(cause, upstream.ErrClosed):
		return lomClosed()
	case errors.Is(cause, lomErrCancelled):
		return core.NewError(core.CodeRequestTimeout, "request cancelled").Wrap(err)
	case ctx.Err() != nil:
		return ctx.Err()
	}
	return err
}

// relay passes what the upstream sends on a request's stream to the
// gateway: progress and log notifications. The modern era has no server
// requests outside input_required results.
func (c *legacyOverModern) relay(related upstream.Related) upstream.Related {
	return func(m *core.Message) {
		if m.Kind != core.KindNotification {
			c.log.Debug("bridge_server_message_dropped", "kind", m.Kind.String(), "method", m.Method)
			return
		}
		if related != nil {
			related(c.stamp(m))
		}
	}
}

// send is one upstream exchange. A tools/call carries the Mcp-Param-*
// headers of the tool's x-mcp-header arguments; after a HeaderMismatch the
// tool definitions are read again and the call is sent once more.
// The bindings come from the session's catalog (which the client's
// tools/list results feed). own marks a request the bridge originates (an
// input_required retry) rather than the client's.
func (c *legacyOverModern) send(ctx context.Context, out *core.Message, rel upstream.Related, own bool) (*core.Message, error) {
	call := out.Method == "tools/call"
	if call {
		c.mirror(out)
	}
	listing := c.ownCat && out.Method == "tools/list"
	var gen uint64
	if listing {
		gen = c.cat.Gen()
	}
	var resp *core.Message
	var err error
	if own {
		resp, err = c.u.ownTrip(ctx, c.sess, c.inner, out, rel)
	} else {
		resp, err = c.inner.RoundTrip(ctx, out, rel)
	}
	if err == nil && call && resp.Kind == core.KindError && resp.ErrorCode() == core.CodeHeaderMismatch {
		if rerr := c.learnAllTools(ctx); rerr != nil {
			c.log.Debug("bridge_tools_refresh_failed", "error", rerr)
		} else if c.mirror(out) {
			resp, err = c.u.ownTrip(ctx, c.sess, c.inner, out, rel) // sent again, with the headers learnt
		}
	}
	if listing && err == nil && resp.Kind == core.KindResponse {
		c.cat.Observe(gen, resp.Result)
	}
	return resp, err
}

// lomIR is an input_required result.
type lomIR struct {
	requests object
	// state is the raw requestState, echoed as it came; nil when absent.
	state json.RawMessage
}

// lomInputRequired reads resp as an input_required result.
func lomInputRequired(resp *core.Message) (lomIR, bool) {
	if resp.Kind != core.KindResponse {
		return lomIR{}, false
	}
	res, err := parseObject(resp.Result)
	if err != nil || res.str("resultType") != resultInputRequired {
		return lomIR{}, false
	}
	ir := lomIR{requests: res.sub("inputRequests")}
	if s, ok := res["requestState"]; ok && string(s) != "null" {
		ir.state = s
	}
	return ir, true
}

// askClient sends each input request to the client as a server request
// and collects the answers, keyed as the server keyed its requests. It
// returns fail (an error response to the client's request) when an answer
// is an error or an input request cannot be sent, and err when ctx ended.
// Unanswered requests are withdrawn with notifications/cancelled.
func (c *legacyOverModern) askClient(ctx context.Context, orig *core.Message, reqs object, related upstream.Related) (answers object, fail *core.Message, err error) {
	if len(reqs) == 0 {
		return nil, nil, nil
	}
	keys := make([]string, 0, len(reqs))
	for k := range reqs {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	type ask struct {
		key, method string
		id          core.ID
		msg         *core.Message
		answered    bool
	}
	asks := make([]*ask, len(keys))
	for i, k := range keys {
		r, perr := parseObject(reqs[k])
		method := ""
		if perr == nil {
			method = r.str("method")
		}
		if method == "" {
			return nil, c.refuse(orig.ID, core.CodeUpstreamError, orig.Method+" failed: the upstream sent a malformed input request "+strconv.Quote(k)), nil
		}
		a := &ask{key: k, method: method, id: c.mint("input")}
		p := r.sub("params")
		if method == "elicitation/create" && p.str("mode") == "url" && p.str("elicitationId") == "" {
			// 2025-11-25 clients require one; modern servers send none.
			var s string
			_ = json.Unmarshal([]byte(a.id), &s)
			p.set("elicitationId", s)
		}
		if a.msg, err = buildRequest(a.id, method, p); err != nil {
			return nil, c.refuse(orig.ID, core.CodeUpstreamError, orig.Method+" failed: the upstream sent a malformed input request "+strconv.Quote(k)), nil
		}
		asks[i] = a
	}
	if related == nil {
		methods := make([]string, len(asks))
		for i, a := range asks {
			methods[i] = a.method
		}
		return nil, c.refuse(orig.ID, core.CodeInternalError, orig.Method+" needs input from the client ("+strings.Join(methods, ", ")+
			") and there is no stream to ask the client on"), nil
	}
	ch := make(chan lomAnswer, len(asks))
	c.mu.Lock()
	for i, a := range asks {
		c.inputs[lomIDKey(a.id)] = lomPending{ch: ch, idx: i}
	}
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		for _, a := range asks {
			delete(c.inputs, lomIDKey(a.id))
		}
		c.mu.Unlock()
		for _, a := range asks {
			if !a.answered {
				c.withdraw(a.id, related)
			}
		}
	}()
	for _, a := range asks {
		related(c.stamp(a.msg))
	}
	answers = object{}
	for range asks {
		var ans lomAnswer
		select {
		case ans = <-ch:
		case <-ctx.Done():
			return nil, nil, ctx.Err()
		}
		a := asks[ans.idx]
		a.answered = true
		if ans.m.Kind == core.KindError {
			return nil, c.inputFailed(orig, a.key, a.method, ans.m), nil
		}
		answers[a.key] = ans.m.Result
	}
	return answers, nil, nil
}

// inputFailed is the error answer to the client's request when the client
// answered one of its input requests with an error.
func (c *legacyOverModern) inputFailed(orig *core.Message, key, method string, ans *core.Message) *core.Message {
	var ce struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	}
	_ = json.Unmarshal(ans.Error, &ce)
	code := core.CodeInternalError
	if ce.Code == core.CodeRequestTimeout {
		code = core.CodeRequestTimeout
	}
	e := core.NewError(code, fmt.Sprintf("%s needs input from the client, and the client answered input request %q (%s) with an error: %s",
		orig.Method, key, method, ce.Message)).
		WithData(map[string]any{"inputRequest": key, "method": method, "error": json.RawMessage(ans.Error)})
	return c.stamp(core.ErrorResponse(orig.ID, e))
}

// withdraw tells the client that an input request is no longer needed.
func (c *legacyOverModern) withdraw(id core.ID, related upstream.Related) {
	p := object{"requestId": json.RawMessage(id)}
	p.set("reason", "the request that needed this input has ended")
	if m, err := buildNotification("notifications/cancelled", p); err == nil {
		related(c.stamp(m))
	}
}

// lomIDKey is the key of a JSON-RPC id, equal for equal JSON values of
// strings ("a\u0062" and "ab").
func lomIDKey(id core.ID) string {
	if len(id) > 0 && id[0] == '"' {
		var s string
		if json.Unmarshal([]byte(id), &s) == nil {
			return "s:" + s
		}
	}
	return "n:" + string(id)
}

// Send takes client notifications and the client's answers to the input
// requests the bridge sent. Nothing of it goes upstream: the modern era
// has no client notifications (over HTTP) and no client responses.
func (c *legacyOverModern) Send(ctx context.Context, m *core.Message) error {
	if m.Kind == core.KindRequest {
		return errors.New("bridge: Send takes a notification or a response; use RoundTrip")
	}
	if c.isClosed() {
		return lomClosed()
	}
	if m.Kind.IsResponse() {
		c.answer(m)
		return nil
	}
	switch m.Method {
	case "notifications/initialized":
	case "notifications/cancelled":
		c.cancelled(m)
	default:
		c.log.Debug("bridge_notification_dropped", "method", m.Method, "reason", "no counterpart in the modern era")
	}
	return nil
}

// answer hands a client response to the input request waiting for it.
func (c *legacyOverModern) answer(m *core.Message) {
	k := lomIDKey(m.ID)
	c.mu.Lock()
	p, ok := c.inputs[k]
	if ok {
		delete(c.inputs, k)
	}
	c.mu.Unlock()
	if !ok {
		c.log.Debug("bridge_response_dropped", "id", string(m.ID), "reason", "no input request waits for it")
		return
	}
	p.ch <- lomAnswer{idx: p.idx, m: m} // buffered for every input request of the round
}

// cancelled abandons the upstream request the client cancelled: its
// stream is closed, which is the modern era's cancellation.
func (c *legacyOverModern) cancelled(m *core.Message) {
	var p struct {
		RequestID json.RawMessage `json:"requestId"`
	}
	if json.Unmarshal(m.Params, &p) != nil || len(p.RequestID) == 0 {
		return
	}
	c.mu.Lock()
	f := c.flights[lomIDKey(core.ID(p.RequestID))]
	c.mu.Unlock()
	if f != nil {
		f.cancel(lomErrCancelled)
	}
}

// deliver hands a notification from outside any request to the gateway,
// without the subscription tag the legacy era does not know.
func (c *legacyOverModern) deliver(m *core.Message) {
	if m.Method == "notifications/subscriptions/acknowledged" || c.isClosed() {
		return
	}
	params, err := parseObject(m.Params)
	if err == nil {
		if meta := params.sub("_meta"); len(meta) > 0 {
			if _, tagged := meta[metaSubscriptionID]; tagged {
				delete(meta, metaSubscriptionID)
				if len(meta) == 0 {
					delete(params, "_meta")
				} else {
					params["_meta"] = meta.encode()
				}
				if n, err := core.Notification(m.Method, params.encode()); err == nil {
					n.Received = m.Received
					m = n
				}
			}
		}
	}
	c.sink.Deliver(c.stamp(m))
}

// lomSink receives what the inner Conn sends outside requests.
type lomSink struct{ c *legacyOverModern }

func (s lomSink) Deliver(m *core.Message) {
	if m.Kind != core.KindNotification {
		s.c.log.Debug("bridge_server_message_dropped", "kind", m.Kind.String(), "method", m.Method)
		return
	}
	s.c.deliver(m)
}

func (s lomSink) Closed(err error) {
	if !s.c.isClosed() {
		s.c.sink.Closed(err)
	}
}

// Close ends the listen stream, abandons what is in flight and closes the
// inner Conn.
func (c *legacyOverModern) Close(ctx context.Context) error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	c.mu.Unlock()
	c.kill()
	err := c.inner.Close(ctx)
	done := make(chan struct{})
	go func() {
		c.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
		if err == nil {
			err = ctx.Err()
		}
	}
	return err
}

// Listen stands for the legacy GET stream: it opens subscriptions/listen
// for the list changes the upstream declares and the resources the client
// subscribed to, and keeps it open (again after a pause when it breaks)
// until Close. It returns once the first stream is acknowledged or
// refused, or at once when there is nothing to listen for yet.
func (c *legacyOverModern) Listen(ctx context.Context) error {
	first := make(chan error, 1)
	c.mu.Lock()
	switch {
	case c.closed:
		c.mu.Unlock()
		return lomClosed()
	case c.listening:
		c.mu.Unlock()
		return nil
	}
	c.listening = true
	c.wg.Add(1)
	c.mu.Unlock()
	go c.listenLoop(first)
	select {
	case err := <-first:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// listenFilterLocked is the subscriptions/listen filter the session needs,
// nil for none.
func (c *legacyOverModern) listenFilterLocked() object {
	f := object{}
	for _, k := range []struct{ cap, filter string }{
		{"tools", "toolsListChanged"}, {"prompts", "promptsListChanged"}, {"resources", "resourcesListChanged"},
	} {
		if lomFlag(c.serverCaps.sub(k.cap), "listChanged") {
			f.set(k.filter, true)
		}
	}
	if len(c.subs) > 0 {
		uris := make([]string, 0, len(c.subs))
		for u := range c.subs {
			uris = append(uris, u)
		}
		slices.Sort(uris)
		f.set("resourceSubscriptions", uris)
	}
	if len(f) == 0 {
		return nil
	}
	return f
}

// lomStream is one subscriptions/listen exchange.
type lomStream struct {
	id     core.ID
	cancel context.CancelFunc
	acked  chan struct{} // closed on the acknowledgement
	ended  chan struct{} // closed when the exchange returned
	// granted: the acknowledgement granted something (written before acked
	// closes); resp, err: the exchange's outcome (before ended closes).
	granted bool
	resp    *core.Message
	err     error

	// Owned by the listen loop.
	ackSeen bool
	waiters []chan struct{}
}

func (s *lomStream) release() {
	for _, w := range s.waiters {
		close(w)
	}
	s.waiters = nil
}

func lomAckedC(s *lomStream) <-chan struct{} {
	if s == nil || s.ackSeen {
		return nil
	}
	return s.acked
}

func lomEndedC(s *lomStream) <-chan struct{} {
	if s == nil {
		return nil
	}
	return s.ended
}

// listenLoop keeps the session's listen stream. A change (subscribe,
// initialize) opens a new stream with the new filter; the old one is
// closed once the new one is acknowledged, so no notification falls in a
// gap (one may come twice). A stream that breaks or that the server ends
// is opened again after a pause; one the server refuses, or that grants
// nothing, waits for the next change.
func (c *legacyOverModern) listenLoop(first chan<- error) {
	defer c.wg.Done()
	var cur, next *lomStream
	var retry *time.Timer
	var retryC <-chan time.Time
	backoff := lomListenBackoffMin
	report := func(err error) {
		if first != nil {
			first <- err
			first = nil
		}
	}
	defer func() {
		for _, s := range []*lomStream{cur, next} {
			if s != nil {
				s.cancel()
				s.release()
			}
		}
		if retry != nil {
			retry.Stop()
		}
		report(lomClosed())
		// A later Listen starts over; nobody waits for this loop.
		c.mu.Lock()
		waiters := c.waiters
		c.waiters, c.listening = nil, false
		c.mu.Unlock()
		for _, w := range waiters {
			close(w)
		}
	}()
	// reopen starts a stream with the current filter, replacing next and,
	// when it is not established, cur.
	reopen := func() {
		if retry != nil {
			retry.Stop()
			retry, retryC = nil, nil
		}
		c.mu.Lock()
		filter, waiters := c.listenFilterLocked(), c.waiters
		c.waiters = nil
		c.mu.Unlock()
		if filter == nil {
			for _, s := range []*lomStream{cur, next} {
				if s != nil {
					s.cancel()
					s.release()
				}
			}
			cur, next = nil, nil
			for _, w := range waiters {
				close(w)
			}
			report(nil)
			return
		}
		s := c.openStream(filter)
		s.waiters = waiters
		if next != nil {
			next.cancel()
			s.waiters = append(s.waiters, next.waiters...)
			next = nil
		}
		if cur != nil && !cur.ackSeen {
			cur.cancel()
			s.waiters = append(s.waiters, cur.waiters...)
			cur = nil
		}
		if cur == nil {
			cur = s
		} else {
			next = s
		}
	}
	// A change made before the loop started is in the first filter.
	select {
	case <-c.kick:
	default:
	}
	reopen()
	for {
		select {
		case <-c.life.Done():
			return
		case <-c.kick:
			reopen()
		case <-retryC:
			retry, retryC = nil, nil
			reopen()
		case <-lomAckedC(cur):
			cur.ackSeen = true
			cur.release()
			report(nil)
			backoff = lomListenBackoffMin
		case <-lomAckedC(next):
			next.ackSeen = true
			next.release()
			cur.cancel()
			cur, next = next, nil
		case <-lomEndedC(next):
			// The replacement ended before its acknowledgement: keep the
			// old stream; try again later unless the server refused it.
			s := next
			next = nil
			s.release()
			if s.err == nil && s.resp.Kind != core.KindResponse {
				c.log.Warn("bridge_listen_refused", "error", lomOutcome(s))
				continue
			}
			c.log.Debug("bridge_listen_reopen_failed", "error", lomOutcome(s))
			if retry == nil {
				retry = time.NewTimer(backoff)
				retryC = retry.C
				backoff = min(2*backoff, lomListenBackoffMax)
			}
		case <-lomEndedC(cur):
			s := cur
			cur = nil
			s.release()
			if next != nil {
				cur, next = next, nil
				continue
			}
			switch {
			case c.life.Err() != nil || errors.Is(s.err, upstream.ErrClosed):
				report(lomClosed())
				return
			case s.err == nil && s.resp.Kind != core.KindResponse:
				err := core.NewError(core.CodeUpstreamError, "upstream refused subscriptions/listen: "+lomOutcome(s))
				c.log.Warn("bridge_listen_refused", "error", err)
				report(err)
			case s.err == nil && !s.granted:
				// Nothing the session asks for is supported: wait for a
				// change rather than ask again.
				report(nil)
			default:
				if s.err != nil {
					report(core.NewError(core.CodeUpstreamError, "upstream subscriptions/listen failed").Wrap(s.err))
				}
				c.log.Debug("bridge_listen_ended", "outcome", lomOutcome(s), "retry_in", backoff)
				retry = time.NewTimer(backoff)
				retryC = retry.C
				backoff = min(2*backoff, lomListenBackoffMax)
			}
		}
	}
}

// lomOutcome describes how a listen exchange ended, for logs and errors.
func lomOutcome(s *lomStream) string {
	switch {
	case s.err != nil:
		return s.err.Error()
	case s.resp.Kind == core.KindError:
		return string(s.resp.Error)
	}
	return "ended by the server"
}

// openStream starts one subscriptions/listen exchange on a goroutine of
// the Conn (the listen loop holds the WaitGroup, so adding is safe).
func (c *legacyOverModern) openStream(filter object) *lomStream {
	ctx, cancel := context.WithCancel(c.life)
	s := &lomStream{id: c.mint("listen"), cancel: cancel, acked: make(chan struct{}), ended: make(chan struct{})}
	params := object{"_meta": c.meta(false).encode()}
	params.set("notifications", filter)
	req, err := c.request(s.id, "subscriptions/listen", params, nil)
	if err != nil { // unreachable: every part is JSON the bridge encoded
		s.err = err
		close(s.ended)
		return s
	}
	acked := false
	related := func(m *core.Message) {
		switch {
		case m.Method == "notifications/subscriptions/acknowledged":
			if !acked {
				acked = true
				p, _ := parseObject(m.Params)
				s.granted = len(p.sub("notifications")) > 0 && lomGrants(p.sub("notifications"))
				close(s.acked)
			}
		case m.Method == "notifications/cancelled":
			// The server ends the subscription (stdio).
			var p struct {
				RequestID json.RawMessage `json:"requestId"`
			}
			if json.Unmarshal(m.Params, &p) == nil && lomIDKey(core.ID(p.RequestID)) == lomIDKey(s.id) {
				cancel()
			}
		case m.Kind == core.KindNotification:
			c.deliver(m)
		default:
			c.log.Debug("bridge_server_message_dropped", "kind", m.Kind.String(), "method", m.Method)
		}
	}
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		defer close(s.ended)
		defer cancel()
		s.resp, s.err = c.u.ownTrip(ctx, c.sess, c.inner, req, related)
	}()
	return s
}

// lomGrants reports whether an acknowledged filter grants anything.
func lomGrants(f object) bool {
	for _, k := range []string{"toolsListChanged", "promptsListChanged", "resourcesListChanged"} {
		if lomFlag(f, k) {
			return true
		}
	}
	var uris []string
	return json.Unmarshal(f["resourceSubscriptions"], &uris) == nil && len(uris) > 0
}

// learnAllTools reads every page of tools/list to learn the bindings.
// They feed the session's catalog.
func (c *legacyOverModern) learnAllTools(ctx context.Context) error {
	cursor, gen := "", c.cat.Gen()
	for range lomMaxListPages {
		params := object{"_meta": c.meta(false).encode()}
		if cursor != "" {
			params.set("cursor", cursor)
		}
		req, err := c.request(c.mint("list"), "tools/list", params, nil)
		if err != nil {
			return err
		}
		resp, err := c.u.ownTrip(ctx, c.sess, c.inner, req, nil)
		if err != nil {
			return err
		}
		if resp.Kind != core.KindResponse {
			return fmt.Errorf("tools/list: %s", resp.Error)
		}
		if cursor = c.cat.Observe(gen, resp.Result); cursor == "" {
			return nil
		}
	}
	return nil
}

// mirror sets the Mcp-Param-* headers of a tools/call from the tool's
// bindings. It reports whether the tool has any.
func (c *legacyOverModern) mirror(m *core.Message) bool {
	t := c.cat.Tool(m.Name)
	if t == nil || len(t.Headers) == 0 {
		return false
	}
	var p struct {
		Arguments json.RawMessage `json:"arguments"`
	}
	_ = json.Unmarshal(m.Params, &p)
	h := m.Header.Clone()
	if h == nil {
		h = http.Header{}
	}
	for _, b := range t.Headers {
		name := "Mcp-Param-" + b.Header
		h.Del(name)
		if v, ok := lomHeaderValue(p.Arguments, b.Path); ok {
			h.Set(name, v)
		}
	}
	m.Header = h
	return true
}

// lomHeaderValue reads the primitive argument at path and encodes it as
// the spec's Value Encoding says; ok is false when there is none.
func lomHeaderValue(args json.RawMessage, path []string) (string, bool) {
	v := args
	for _, k := range path {
		var o map[string]json.RawMessage
		if json.Unmarshal(v, &o) != nil {
			return "", false
		}
		if v = o[k]; v == nil {
			return "", false
		}
	}
	switch {
	case len(v) == 0 || string(v) == "null":
		return "", false
	case v[0] == '"':
		var s string
		if json.Unmarshal(v, &s) != nil {
			return "", false
		}
		return lomEncodeHeader(s), true
	case string(v) == "true" || string(v) == "false":
		return string(v), true
	case v[0] == '-' || (v[0] >= '0' && v[0] <= '9'):
		if i, err := strconv.ParseInt(string(v), 10, 64); err == nil {
			return strconv.FormatInt(i, 10), true
		}
		if f, err := strconv.ParseFloat(string(v), 64); err == nil && f == float64(int64(f)) {
			return strconv.FormatInt(int64(f), 10), true
		}
	}
	return "", false
}

// lomEncodeHeader carries s as it is when it is a plain header value, else
// as =?base64?...?= (non-ASCII, controls, outer spaces, or the sentinel).
func lomEncodeHeader(s string) string {
	const prefix, suffix = "=?base64?", "?="
	plain := s == "" || (s[0] != ' ' && s[0] != '\t' && s[len(s)-1] != ' ' && s[len(s)-1] != '\t')
	for i := 0; plain && i < len(s); i++ {
		if c := s[i]; c < 0x20 || c > 0x7e {
			plain = false
		}
	}
	if plain && !(strings.HasPrefix(s, prefix) && strings.HasSuffix(s, suffix)) {
		return s
	}
	return prefix + base64.StdEncoding.EncodeToString([]byte(s)) + suffix
}
