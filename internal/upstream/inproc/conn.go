package inproc

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpgate/mcpgate/internal/core"
	"github.com/mcpgate/mcpgate/internal/upstream"
)

// Conn is one gateway session's server session. Safe for concurrent use.
type Conn struct {
	up   *Upstream
	sess *core.SessionInfo
	era  core.Era
	sink upstream.Sink
	log  *slog.Logger
	ss   *mcp.ServerSession

	// toServer carries what the gateway sends; the server reads it (Read).
	toServer chan jsonrpc.Message
	done     chan struct{} // closed when the connection ends
	endOnce  sync.Once

	mu sync.Mutex
	// calls are the requests awaited: by id, by raw progress token, and
	// the count of ordinary client calls.
	upstream.Calls[*call]
	closing bool  // Close was called
	endErr  error // set when the connection ended
}

type call struct {
	id       core.ID
	token    string
	internal bool
	listen   bool
	related  upstream.Related
	done     chan struct{}
	resp     *core.Message
	err      error
	rmu      sync.Mutex
	returned bool
}

func (cl *call) ordinary() bool { return !cl.internal && !cl.listen }

func (cl *call) deliver(m *core.Message) bool {
	cl.rmu.Lock()
	defer cl.rmu.Unlock()
	if cl.returned || cl.related == nil {
		return false
	}
	cl.related(m)
	return true
}

func newConn(u *Upstream, s *core.SessionInfo, era core.Era, sink upstream.Sink, log *slog.Logger) *Conn {
	return &Conn{
		up: u, sess: s, era: era, sink: sink, log: log,
		toServer: make(chan jsonrpc.Message, 16),
		done:     make(chan struct{}),
	}
}

// RoundTrip sends a client request and waits for its response. Cancelling
// ctx sends notifications/cancelled (except for initialize).
func (c *Conn) RoundTrip(ctx context.Context, req *core.Message, related upstream.Related) (*core.Message, error) {
	if req.Kind != core.KindRequest {
		return nil, core.NewError(core.CodeInvalidRequest, "invalid request: RoundTrip needs a request, got a "+req.Kind.String())
	}
	return c.call(ctx, req, related, false)
}

func (c *Conn) call(ctx context.Context, req *core.Message, related upstream.Related, internal bool) (*core.Message, error) {
	msg, err := jsonrpc.DecodeMessage(req.Raw)
	if err != nil {
		return nil, core.NewError(core.CodeInvalidRequest, "invalid request").Wrap(err)
	}
	cl := &call{id: req.ID, related: related, internal: internal, listen: req.Method == "subscriptions/listen", done: make(chan struct{}, 1)}
	if req.ProgressToken != nil {
		cl.token = string(req.ProgressToken)
	}
	if err := c.register(cl); err != nil {
		return nil, err
	}
	defer func() {
		cl.rmu.Lock()
		cl.returned = true
		cl.rmu.Unlock()
	}()
	if err := c.push(ctx, msg); err != nil {
		c.mu.Lock()
		removed := c.unregisterLocked(cl)
		c.mu.Unlock()
		if !removed {
			<-cl.done
			return cl.resp, cl.err
		}
		return nil, err
	}
	select {
	case <-cl.done:
		return cl.resp, cl.err
	case <-ctx.Done():
	}
	c.mu.Lock()
	removed := c.unregisterLocked(cl)
	alive := !c.closing && c.endErr == nil
	c.mu.Unlock()
	if !removed {
		<-cl.done
		return cl.resp, cl.err
	}
	if req.Method != "initialize" && alive {
		c.cancelUpstream(ctx, cl.id)
	}
	return nil, fmt.Errorf("inproc: %s (id %s): %w", req.Method, cl.id, ctx.Err())
}

func (c *Conn) register(cl *call) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closing || c.endErr != nil {
		return c.closedErrLocked()
	}
	if !c.Add(cl.id, cl.token, cl.ordinary(), cl) {
		return core.NewError(core.CodeInvalidRequest, "duplicate request id")
	}
	return nil
}

// unregisterLocked removes cl if still pending; whoever removes a call
// completes it.
func (c *Conn) unregisterLocked(cl *call) bool {
	return c.Remove(cl.id, cl.token, cl.ordinary(), cl)
}

func (c *Conn) closedErrLocked() error {
	if c.endErr != nil {
		return c.endErr
	}
	return fmt.Errorf("%w: closed by the gateway", upstream.ErrClosed)
}

// push hands a message to the server.
func (c *Conn) push(ctx context.Context, m jsonrpc.Message) error {
	select {
	case <-c.done:
		return fmt.Errorf("inproc: %w", upstream.ErrClosed)
	default:
	}
	select {
	case c.toServer <- m:
		return nil
	case <-c.done:
		return fmt.Errorf("inproc: %w", upstream.ErrClosed)
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (c *Conn) cancelUpstream(ctx context.Context, id core.ID) {
	reason := "request cancelled"
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		reason = "request timed out"
	}
	raw := make([]byte, 0, 112+len(id))
	raw = append(raw, `{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":`...)
	raw = append(raw, id...)
	raw = append(raw, `,"reason":`...)
	raw = strconv.AppendQuote(raw, reason)
	raw = append(raw, "}}"...)
	msg, err := jsonrpc.DecodeMessage(raw)
	if err != nil {
		return
	}
	if c.up.o.Tap != nil {
		if m, err := core.Decode(raw); err == nil {
			m.Direction, m.Era, m.Session = core.ClientToServer, c.era, c.sess
			c.up.o.Tap(ctx, c.sess, m)
		}
	}
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	defer cancel()
	_ = c.push(wctx, msg)
}

// Send forwards a client notification or a client answer to a server
// request.
func (c *Conn) Send(ctx context.Context, m *core.Message) error {
	if m.Kind == core.KindRequest || m.Kind == core.KindInvalid {
		return core.NewError(core.CodeInvalidRequest, "invalid request: Send takes notifications and responses, got a "+m.Kind.String())
	}
	msg, err := jsonrpc.DecodeMessage(m.Raw)
	if err != nil {
		return core.NewError(core.CodeInvalidRequest, "invalid message").Wrap(err)
	}
	return c.push(ctx, msg)
}

// Listen has nothing to open: everything the server sends arrives on the
// one connection.
func (c *Conn) Listen(context.Context) error { return nil }

// UpstreamSession is empty: the server session is the gateway session's.
func (c *Conn) UpstreamSession() string { return "" }

// Close ends the server session; pending requests fail with ErrClosed. The
// Sink is not told. Idempotent.
func (c *Conn) Close(ctx context.Context) error {
	c.mu.Lock()
	c.closing = true
	c.mu.Unlock()
	c.end(fmt.Errorf("%w: closed by the gateway", upstream.ErrClosed))
	if c.ss == nil {
		return nil
	}
	closed := make(chan struct{})
	go func() { _ = c.ss.Close(); close(closed) }()
	select {
	case <-closed:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("inproc: close: %w", ctx.Err())
	}
}

// end closes the connection once and fails what is pending with err.
func (c *Conn) end(err error) {
	c.endOnce.Do(func() {
		c.mu.Lock()
		c.endErr = err
		calls := make([]*call, 0, len(c.Pending))
		for _, cl := range c.Pending {
			calls = append(calls, cl)
		}
		for _, cl := range calls {
			c.unregisterLocked(cl)
		}
		tell := !c.closing
		c.mu.Unlock()
		close(c.done)
		for _, cl := range calls {
			cl.err = err
			cl.done <- struct{}{}
		}
		if tell {
			c.sink.Closed(err)
		}
	})
}

// route hands a server message to whoever waits for it. It runs on the
// server's writing goroutine and never blocks (Related and Sink do not).
func (c *Conn) route(m *core.Message) {
	m.Direction, m.Era, m.Session, m.Received = core.ServerToClient, c.era, c.sess, time.Now()
	if m.Kind.IsResponse() {
		c.mu.Lock()
		cl := c.Pending[m.ID]
		ok := cl != nil && c.unregisterLocked(cl)
		c.mu.Unlock()
		if !ok {
			c.log.Debug("inproc_unmatched_response", "id", string(m.ID))
			return
		}
		cl.resp = m
		cl.done <- struct{}{}
		return
	}
	var target *call
	c.mu.Lock()
	switch {
	case m.Method == "notifications/progress" && m.ProgressToken != nil:
		if cl := c.Tokens[string(m.ProgressToken)]; cl != nil && !cl.internal {
			target = cl
		}
	case m.Method == "notifications/cancelled":
		if id := member(m.Params, "requestId"); id != nil {
			if cl := c.Pending[core.ID(id)]; cl != nil && cl.listen {
				target = cl
			}
		}
	case m.Kind == core.KindNotification && bytes.Contains(m.Params, subscriptionKey):
		if sub := subscriptionID(m.Params); sub != nil {
			if cl := c.Pending[core.ID(sub)]; cl != nil && cl.listen {
				target = cl
			}
		}
	}
	if target == nil && m.Method != "notifications/progress" && c.Clients == 1 {
		for _, cl := range c.Pending {
			if cl.ordinary() {
				target = cl
				break
			}
		}
	}
	c.mu.Unlock()
	if target != nil && target.deliver(m) {
		return
	}
	c.sink.Deliver(m)
}

var subscriptionKey = []byte(`"` + core.MetaSubscriptionID + `"`)

func member(params []byte, key string) []byte {
	var p map[string]json.RawMessage
	if json.Unmarshal(params, &p) != nil {
		return nil
	}
	return p[key]
}

func subscriptionID(params []byte) []byte {
	var p struct {
		Meta map[string]json.RawMessage `json:"_meta"`
	}
	if json.Unmarshal(params, &p) != nil {
		return nil
	}
	return p.Meta[core.MetaSubscriptionID]
}

// transport is the go-sdk Transport of the server side.
type transport Conn

func (t *transport) Connect(context.Context) (mcp.Connection, error) { return (*serverEnd)(t), nil }

// serverEnd is the server's side of the connection.
type serverEnd Conn

func (s *serverEnd) Read(ctx context.Context) (jsonrpc.Message, error) {
	select {
	case m := <-s.toServer:
		return m, nil
	case <-s.done:
		return nil, io.EOF
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (s *serverEnd) Write(ctx context.Context, msg jsonrpc.Message) error {
	select {
	case <-s.done:
		return fmt.Errorf("inproc: %w", upstream.ErrClosed)
	default:
	}
	raw, err := jsonrpc.EncodeMessage(msg)
	if err != nil {
		return err
	}
	m, err := core.Decode(raw)
	if err != nil {
		s.log.Warn("inproc_undecodable_message", "error", err)
		return nil
	}
	(*Conn)(s).route(m)
	return nil
}

func (s *serverEnd) Close() error {
	(*Conn)(s).end(fmt.Errorf("inproc: the server closed the session: %w", upstream.ErrClosed))
	return nil
}

func (s *serverEnd) SessionID() string {
	if s.sess != nil {
		return s.sess.ID
	}
	return ""
}
