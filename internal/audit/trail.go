package audit

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mcpgate/mcpgate/internal/core"
	"github.com/mcpgate/mcpgate/internal/pipeline"
	"github.com/mcpgate/mcpgate/internal/session"
)

// Options configure a Trail.
type Options struct {
	// Payloads records params, results and errors (redacted); false
	// records metadata only.
	Payloads bool
	// MaxPayloadBytes bounds one recorded payload; longer ones are
	// truncated, with their size and SHA-256. Zero: 64KiB.
	MaxPayloadBytes int
	// RedactPaths are JSON paths (ParsePath) whose values are replaced.
	RedactPaths []string
	// Scrubbers run over every recorded payload after the paths: the
	// configured patterns (Patterns) and detector sets, which the gateway
	// supplies.
	Scrubbers []Scrubber
	// Sinks get every record. At least one.
	Sinks []SinkOptions
	// Buffer is how many records each sink holds in memory before
	// spooling. Zero: 10000.
	Buffer int
	// SpoolDir holds the sinks' spools and the chain's head. Required.
	SpoolDir string
	// Logger. If nil, a discard logger is used.
	Logger *slog.Logger
	// Metrics gets the mcpgate_audit_* collectors. If nil, none.
	Metrics prometheus.Registerer
}

// SinkOptions are one sink and how its queue delivers to it.
type SinkOptions struct {
	Sink Sink
	// Batch is the most records per Write. Zero: 1024.
	Batch int
	// Flush is the longest a record waits for a batch to fill; zero
	// delivers at once.
	Flush time.Duration
}

// Trail is the audit trail: it encodes and chains records in one order
// and hands them to every sink's queue. Its methods are safe for
// concurrent use and never block on a sink.
type Trail struct {
	opts    Options
	log     *slog.Logger
	red     *redactor
	maxLen  int
	queues  []*queue
	chainID string

	mu     sync.Mutex
	seq    uint64
	prev   string
	last   []byte // the last record's line
	closed bool

	closeOnce sync.Once
	closeErr  error
}

// New makes a trail: it checks the redaction and, when Options.Sinks are
// given, opens them (Open). A trail made without sinks writes nothing to
// disk until Open, so that a configuration can be checked without
// touching a running gateway's files; what it is given before Open is
// not recorded.
func New(o Options) (*Trail, error) {
	if o.MaxPayloadBytes <= 0 {
		o.MaxPayloadBytes = 64 << 10
	}
	if o.Buffer <= 0 {
		o.Buffer = 10000
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	red, err := newRedactor(o.RedactPaths, o.Scrubbers)
	if err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	t := &Trail{opts: o, log: log, red: red, maxLen: o.MaxPayloadBytes, closed: true}
	var id [6]byte
	_, _ = rand.Read(id[:])
	t.chainID = hex.EncodeToString(id[:])
	if o.Metrics != nil {
		if err := o.Metrics.Register(&collector{t}); err != nil {
			return nil, fmt.Errorf("audit: metrics: %w", err)
		}
	}
	if len(o.Sinks) > 0 {
		sinks := o.Sinks
		if err := t.Open(sinks); err != nil {
			if o.Metrics != nil {
				o.Metrics.Unregister(&collector{t})
			}
			return nil, err
		}
	}
	return t, nil
}

// Open opens the sinks' spools, finds the head of the chain (the last
// record any sink or spool holds, or the head kept at the last shutdown),
// records that the trail started, and starts delivering. It is called
// once; a trail that is not open records nothing.
func (t *Trail) Open(sinks []SinkOptions) error {
	o := t.opts
	if len(sinks) == 0 {
		return errors.New("audit: no sink")
	}
	if o.SpoolDir == "" {
		return errors.New("audit: no spool directory")
	}
	if err := os.MkdirAll(o.SpoolDir, 0o750); err != nil {
		return fmt.Errorf("audit: spool: %w", err)
	}
	var queues []*queue
	fail := func(err error) error {
		for _, q := range queues {
			_ = q.spool.close()
		}
		for _, so := range sinks {
			_ = so.Sink.Close()
		}
		return err
	}
	counts := map[string]int{}
	for _, so := range sinks {
		name := so.Sink.Name()
		counts[name]++
		if counts[name] > 1 {
			name = fmt.Sprintf("%s-%d", name, counts[name])
		}
		batch := so.Batch
		if batch <= 0 {
			batch = 1024
		}
		q, err := newQueue(so.Sink, name, o.SpoolDir, o.Buffer, batch, so.Flush, t.log)
		if err != nil {
			return fail(err)
		}
		queues = append(queues, q)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.queues != nil {
		return fail(errors.New("audit: opened twice"))
	}
	seq, prev, err := recoverHead(queues, t.headFile(), t.log)
	if err != nil {
		return fail(err)
	}
	t.seq, t.prev, t.queues, t.closed = seq, prev, queues, false
	for _, q := range queues {
		go q.run()
	}
	t.emitLocked(encodeBody(nil, &Record{Kind: "trail", Event: "started"}))
	return nil
}

// headFile keeps the last record at shutdown, for sinks that cannot be
// read back (stdout, http).
func (t *Trail) headFile() string { return filepath.Join(t.opts.SpoolDir, "head") }

// recoverHead finds the newest record that can be read back: a file
// sink's last record, a spool's last line, the head file. It tells each
// file sink's queue what it holds already.
func recoverHead(queues []*queue, headFile string, log *slog.Logger) (seq uint64, prev string, err error) {
	var cands [][]byte
	for _, q := range queues {
		if tl, ok := q.sink.(tailer); ok {
			l, err := tl.Last()
			if err != nil {
				return 0, "", fmt.Errorf("audit: %s sink: %w", q.name, err)
			}
			if l != nil {
				cands = append(cands, l)
				if r, err := Parse(l); err == nil {
					q.skip = r.Seq // delivered already, if a spool holds it too
				}
			}
		}
		if l, _ := lastLine(q.spool.path); l != nil {
			cands = append(cands, l)
		}
	}
	if l, err := os.ReadFile(headFile); err == nil {
		cands = append(cands, trimNL(l))
	}
	for _, l := range cands {
		r, err := Parse(l)
		if err != nil {
			log.Warn("audit_head_unreadable", "error", err)
			continue
		}
		if r.Seq >= seq {
			seq, prev = r.Seq, r.Hash
		}
	}
	return seq, prev, nil
}

func trimNL(b []byte) []byte {
	for len(b) > 0 && (b[len(b)-1] == '\n' || b[len(b)-1] == '\r') {
		b = b[:len(b)-1]
	}
	return b
}

// emit chains the record and hands it to every queue.
func (t *Trail) emit(r *Record) {
	var scratch [512]byte
	b := encodeBody(scratch[:0], r)
	t.mu.Lock()
	t.emitLocked(b)
	t.mu.Unlock()
}

func (t *Trail) emitLocked(b []byte) {
	if t.closed {
		return
	}
	t.seq++
	line, hash := seal(make([]byte, 0, len(b)+256), t.seq, time.Now(), t.chainID, b, t.prev)
	t.prev, t.last = hash, line
	for _, q := range t.queues {
		q.enqueue(line)
	}
}

// Close records that the trail stopped, delivers what the sinks take
// before ctx ends (the rest stays in the spools for the next start),
// keeps the head, and closes the sinks. It is safe to call more than once.
func (t *Trail) Close(ctx context.Context) error {
	t.closeOnce.Do(func() {
		t.emit(&Record{Kind: "trail", Event: "stopped"})
		t.mu.Lock()
		t.closed = true
		queues := t.queues
		last := t.last
		t.mu.Unlock()
		var errs []error
		var wg sync.WaitGroup
		errc := make([]error, len(queues))
		for i, q := range queues {
			wg.Go(func() { errc[i] = q.close(ctx) })
		}
		wg.Wait()
		errs = append(errs, errc...)
		if last != nil {
			// The last record itself, checked like any other on the next
			// start.
			errs = append(errs, os.WriteFile(t.headFile(), last, 0o640))
		}
		t.closeErr = errors.Join(errs...)
	})
	return t.closeErr
}

// message builds the record of a message crossing the chain.
func (t *Trail) message(m *core.Message, st *sessState) *Record {
	r := &Record{Kind: "message", Direction: m.Direction.String(), Type: m.Kind.String(), Method: m.Method, Size: len(m.Raw)}
	if !m.ID.IsZero() {
		r.RPCID = string(m.ID)
	}
	t.session(r, m.Session, st)
	if m.Era != core.EraUnknown {
		r.Era = m.Era.String()
	}
	names(r, m.Method, m.Name)
	t.payloads(r, m)
	if m.Kind == core.KindError {
		r.Outcome = "error"
		r.Code = errorCode(m.Error)
	}
	return r
}

// names puts a message's name under the member its method says.
func names(r *Record, method, name string) {
	if name == "" {
		return
	}
	switch method {
	case "tools/call":
		r.Tool = name
	case "prompts/get":
		r.Prompt = name
	default:
		r.Resource = name
	}
}

func (t *Trail) session(r *Record, s *core.SessionInfo, st *sessState) {
	if s == nil {
		return
	}
	if st != nil {
		r.Session = st.fp
	} else {
		r.Session = s.LogID()
	}
	r.Principal, r.Tenant, r.Route = s.Principal, s.Tenant, s.Route
	if s.Era != core.EraUnknown {
		r.Era = s.Era.String()
	}
}

// payloads records the message's params, result and error, redacted and
// bounded.
func (t *Trail) payloads(r *Record, m *core.Message) {
	if !t.opts.Payloads {
		return
	}
	r.Params = t.payload(r, "params", m.Params)
	r.Result = t.payload(r, "result", m.Result)
	r.Error = t.payload(r, "error", m.Error)
}

func (t *Trail) payload(r *Record, member string, p []byte) []byte {
	if len(p) == 0 {
		return nil
	}
	p = t.red.redact(member, p)
	if len(p) > t.maxLen {
		sum := sha256.Sum256(p)
		head := p[:t.maxLen]
		for len(head) > 0 && !utf8.Valid(head[max(0, len(head)-4):]) {
			head = head[:len(head)-1]
		}
		r.Truncated = &Truncated{Member: member, Size: len(p), SHA256: hex.EncodeToString(sum[:]), Head: string(head)}
		return nil
	}
	return compact(p)
}

// compact takes the line breaks out of a payload, which a JSON line
// cannot hold; most payloads have none.
func compact(p []byte) []byte {
	for _, c := range p {
		if c == '\n' || c == '\r' {
			v, err := decodeJSON(p)
			if err != nil {
				return []byte(`"` + Redacted + `"`)
			}
			return encodeJSON(v, p)
		}
	}
	return p
}

// errorCode reads the code of a JSON-RPC error member.
func errorCode(e []byte) int {
	const k = `"code":`
	i := indexOf(e, k)
	if i < 0 {
		return 0
	}
	n, neg := 0, false
	j := i + len(k)
	for j < len(e) && e[j] == ' ' {
		j++
	}
	if j < len(e) && e[j] == '-' {
		neg = true
		j++
	}
	for ; j < len(e) && e[j] >= '0' && e[j] <= '9' && n < 1<<40; j++ {
		n = n*10 + int(e[j]-'0')
	}
	if neg {
		n = -n
	}
	return n
}

func indexOf(b []byte, s string) int {
	for i := 0; i+len(s) <= len(b); i++ {
		if string(b[i:i+len(s)]) == s {
			return i
		}
	}
	return -1
}

// sessState is the audit stage's state for one session.
type sessState struct{ fp string }

// Stage is the audit stage of one route's chain: a record for every
// message in either direction (a request's response with its latency),
// for the gateway's own traffic (Originated) and for the stages'
// decisions (Decided). Refusals before the chain are recorded by Refused,
// which the gateway installs once for every route. The stage's Close does
// not close the trail: a reload retires chains, the trail outlives them.
func (t *Trail) Stage(route string) pipeline.Stage {
	return pipeline.Stage{
		Name: "audit",
		Interceptor: func(next core.Handler) core.Handler {
			return func(ctx context.Context, m *core.Message) (*core.Message, error) {
				st, _ := pipeline.StateOf(m, "audit").(*sessState)
				t.emit(t.message(m, st))
				if m.Kind != core.KindRequest {
					return next(ctx, m)
				}
				start := time.Now()
				resp, err := next(ctx, m)
				t.emit(t.response(m, resp, err, time.Since(start), st))
				return resp, err
			}
		},
		Session: func(info *core.SessionInfo, prev any) any {
			if p, ok := prev.(*sessState); ok {
				return p
			}
			return &sessState{fp: info.LogID()}
		},
		Observe: func(ctx context.Context, ev *pipeline.Event) {
			if ev.Kind != pipeline.Refused {
				t.Observe(ctx, ev)
			}
		},
	}
}

// response builds the record of a request's answer.
func (t *Trail) response(req, resp *core.Message, err error, took time.Duration, st *sessState) *Record {
	var r *Record
	if resp != nil {
		r = t.message(resp, st)
		if r.Direction == req.Direction.String() {
			r.Direction = opposite(req.Direction)
		}
	} else {
		r = &Record{Kind: "message", Direction: opposite(req.Direction), Type: "response"}
		if err != nil {
			r.Type = "error"
		}
		t.session(r, req.Session, st)
		if !req.ID.IsZero() {
			r.RPCID = string(req.ID)
		}
	}
	r.Method = req.Method
	r.Tool, r.Prompt, r.Resource = "", "", ""
	names(r, req.Method, req.Name)
	r.LatencyMS = float64(took.Microseconds()) / 1000
	if r.Session == "" {
		t.session(r, req.Session, st)
	}
	switch {
	case err != nil:
		e := core.AsError(err)
		r.Outcome, r.Code = "error", e.Code
		if e.Status != 0 {
			r.Status = e.Status
		}
		if t.opts.Payloads && resp == nil {
			r.Error = t.payload(r, "error", errorMember(e))
		}
	case resp == nil:
		r.Outcome = "ok"
	case resp.Kind == core.KindError:
		r.Outcome = "error"
	default:
		r.Outcome = "ok"
	}
	return r
}

func errorMember(e *core.Error) []byte {
	b := core.AppendJSONString([]byte(`{"code":`+fmt.Sprint(e.Code)+`,"message":`), e.Message)
	return append(b, '}')
}

func opposite(d core.Direction) string {
	if d == core.ClientToServer {
		return core.ServerToClient.String()
	}
	return core.ClientToServer.String()
}

// Observe records an event: a refusal before the chain (Refused), what
// the gateway sent on its own (Originated), a stage's decision (Decided).
// It is the gateway-wide observer of refusals (frontend.Options.Observe)
// and, through Stage, each chain's observer of the others.
func (t *Trail) Observe(_ context.Context, ev *pipeline.Event) {
	var r *Record
	if ev.Message != nil {
		r = t.message(ev.Message, nil)
	} else {
		r = &Record{}
	}
	t.session(r, ev.Session, nil)
	if ev.Route != "" {
		r.Route = ev.Route
	}
	switch ev.Kind {
	case pipeline.Refused:
		r.Kind, r.Outcome, r.Check, r.RemoteAddr = "refused", "refused", ev.Check, ev.RemoteAddr
		if r.Principal == "" {
			r.Principal = ev.Principal
		}
		if ev.Message == nil {
			r.Method = ev.HTTPMethod
		}
		if ev.Err != nil {
			r.Code, r.Status, r.Reason = ev.Err.Code, ev.Err.HTTPStatus(), ev.Err.Message
		}
	case pipeline.Originated:
		r.Kind, r.Origin = "originated", ev.Origin
	case pipeline.Decision:
		r.Kind = "decision"
		r.Stage, r.Policy, r.Rule, r.Quota, r.Action, r.Reason = ev.Stage, ev.Policy, ev.Rule, ev.Quota, ev.Action, ev.Reason
		r.Outcome = ev.Action
		// The policy and quota stages report their decisions with what
		// made them, not their own name.
		switch {
		case r.Stage == "" && ev.Policy != "":
			r.Stage = "policy"
		case r.Stage == "" && ev.Quota != "":
			r.Stage = "limits"
		}
		if r.Reason == "" && ev.Limit != "" {
			r.Reason = ev.Limit + ": " + strconv.FormatInt(ev.Usage, 10) + " of " + strconv.FormatInt(ev.Max, 10)
		}
		if ev.Err != nil {
			r.Code, r.Status = ev.Err.Code, ev.Err.HTTPStatus()
		}
		// A decision names its message; the message itself has a record.
		r.Params, r.Result, r.Error, r.Truncated, r.Size = nil, nil, nil, nil, 0
	default:
		return
	}
	t.emit(r)
}

// Admin records an operator's action through the control plane: who
// (principal), which tool, its outcome (ok, denied, refused) and a
// summary in words (what changed, never a secret).
func (t *Trail) Admin(principal, tool, outcome, reason string) {
	t.emit(&Record{Kind: "admin", Event: tool, Principal: principal, Outcome: outcome, Reason: reason})
}

// Hooks is the trail's subscriber of session lifecycle events.
func (t *Trail) Hooks() session.Hooks {
	rec := func(info *core.SessionInfo, event, reason string) {
		r := &Record{Kind: "session", Event: event, Reason: reason}
		t.session(r, info, nil)
		t.emit(r)
	}
	return session.Hooks{
		Created: func(info *core.SessionInfo) { rec(info, "created", "") },
		Resumed: func(info *core.SessionInfo, how string) { rec(info, "resumed", how) },
		Evicted: func(info *core.SessionInfo) { rec(info, "evicted", "") },
		Ended:   func(info *core.SessionInfo, reason session.Reason) { rec(info, "ended", string(reason)) },
	}
}
