package httpup_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
	"go.uber.org/goleak"

	"github.com/mcpgate/mcpgate/internal/core"
	"github.com/mcpgate/mcpgate/internal/upstream"
	"github.com/mcpgate/mcpgate/internal/upstream/httpup"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// wait bounds every blocking step of a test.
const wait = 10 * time.Second

// seen is one request as the upstream received it.
type seen struct {
	Method string
	Header http.Header
	Body   string
	Status int // 0 until the handler writes its header
}

// recorder wraps an upstream handler and records every request.
type recorder struct {
	next http.Handler
	mu   sync.Mutex
	reqs []seen
}

func (rec *recorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var body []byte
	if r.Body != nil {
		body, _ = io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytes.NewReader(body))
	}
	rec.mu.Lock()
	rec.reqs = append(rec.reqs, seen{Method: r.Method, Header: r.Header.Clone(), Body: string(body)})
	i := len(rec.reqs) - 1
	rec.mu.Unlock()
	rec.next.ServeHTTP(&statusWriter{ResponseWriter: w, rec: rec, i: i}, r)
}

// statusWriter records the status a handler answers with.
type statusWriter struct {
	http.ResponseWriter
	rec   *recorder
	i     int
	wrote bool
}

func (w *statusWriter) WriteHeader(code int) {
	if !w.wrote {
		w.wrote = true
		w.rec.mu.Lock()
		w.rec.reqs[w.i].Status = code
		w.rec.mu.Unlock()
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if !w.wrote {
		w.WriteHeader(http.StatusOK)
	}
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) Flush() {
	if !w.wrote {
		w.WriteHeader(http.StatusOK)
	}
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// find returns the recorded requests that match.
func (rec *recorder) find(match func(seen) bool) []seen {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	var out []seen
	for _, s := range rec.reqs {
		if match(s) {
			out = append(out, s)
		}
	}
	return out
}

func all(seen) bool { return true }

func byMethod(method string) func(seen) bool {
	return func(s seen) bool { return s.Method == method }
}

// openStreams matches the GET requests the upstream answered 200.
func openStreams(s seen) bool { return s.Method == http.MethodGet && s.Status == http.StatusOK }

func byRPC(method string) func(seen) bool {
	return func(s seen) bool {
		return s.Method == http.MethodPost && strings.Contains(s.Body, `"method":"`+method+`"`)
	}
}

// serve starts h on 127.0.0.1 behind a recorder.
func serve(t testing.TB, h http.Handler) (*httptest.Server, *recorder) {
	t.Helper()
	rec := &recorder{next: h}
	ts := httptest.NewServer(rec)
	t.Cleanup(ts.Close)
	return ts, rec
}

// sdkServer serves a go-sdk server over Streamable HTTP.
func sdkServer(t testing.TB, s *mcp.Server, opts *mcp.StreamableHTTPOptions) (*httptest.Server, *recorder) {
	t.Helper()
	return serve(t, mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return s }, opts))
}

func newUpstream(t testing.TB, url string, headers map[string]string) *httpup.Upstream {
	t.Helper()
	u, err := httpup.New(httpup.Options{URL: url, Headers: headers}, "test", nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = u.Close() })
	return u
}

// sink records what a Conn hands to its session outside requests.
type sink struct {
	msgs   chan *core.Message
	closed chan error
}

func newSink() *sink {
	return &sink{msgs: make(chan *core.Message, 64), closed: make(chan error, 4)}
}

func (s *sink) Deliver(m *core.Message) { s.msgs <- m }
func (s *sink) Closed(err error)        { s.closed <- err }

func (s *sink) next(t testing.TB) *core.Message {
	t.Helper()
	select {
	case m := <-s.msgs:
		return m
	case <-time.After(wait):
		t.Fatal("no message reached the sink")
		return nil
	}
}

var testSession = &core.SessionInfo{ID: "gw-session-1", Route: "test"}

func open(t testing.TB, u *httpup.Upstream, era core.Era, sk upstream.Sink) upstream.Conn {
	t.Helper()
	c, err := u.Open(context.Background(), upstream.OpenParams{Session: testSession, Era: era}, sk)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close(context.Background()) })
	return c
}

func msg(t testing.TB, raw string) *core.Message {
	t.Helper()
	m, err := core.Decode([]byte(raw))
	if err != nil {
		t.Fatalf("decode %s: %v", raw, err)
	}
	return m
}

func ctxT(t testing.TB) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	t.Cleanup(cancel)
	return ctx
}

// initialize starts the upstream session of a legacy Conn.
func initialize(t testing.TB, c upstream.Conn, version string) *core.Message {
	t.Helper()
	resp, err := c.RoundTrip(ctxT(t), msg(t, `{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"`+version+
		`","capabilities":{"sampling":{}},"clientInfo":{"name":"test","version":"1"}}}`), nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.Kind != core.KindResponse {
		t.Fatalf("initialize: %s", resp.Raw)
	}
	if err := c.Send(ctxT(t), msg(t, `{"jsonrpc":"2.0","method":"notifications/initialized"}`)); err != nil {
		t.Fatal(err)
	}
	return resp
}

// toolText reads the first text content of a tools/call result.
func toolText(t testing.TB, m *core.Message) string {
	t.Helper()
	if m.Kind != core.KindResponse {
		t.Fatalf("want a result, got %s", m.Raw)
	}
	var res struct {
		Content []struct {
			Text string `json:"text"`
		} `json:"content"`
		IsError bool `json:"isError"`
	}
	if err := json.Unmarshal(m.Result, &res); err != nil || len(res.Content) == 0 {
		t.Fatalf("bad tool result %s: %v", m.Result, err)
	}
	if res.IsError {
		t.Fatalf("tool error: %s", m.Result)
	}
	return res.Content[0].Text
}

func errorCode(t testing.TB, m *core.Message) int {
	t.Helper()
	if m.Kind != core.KindError {
		t.Fatalf("want an error response, got %s", m.Raw)
	}
	return m.ErrorCode()
}

func textResult(s string) *mcp.CallToolResult {
	return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: s}}}
}

type echoIn struct {
	Text string `json:"text"`
}

// everything is a go-sdk server with the tools the tests call.
type everything struct {
	*mcp.Server
	// blocked receives true when the block tool sees its context end.
	started, cancelled chan struct{}
}

func newEverything(t testing.TB) *everything {
	t.Helper()
	e := &everything{started: make(chan struct{}, 1), cancelled: make(chan struct{}, 1)}
	e.Server = mcp.NewServer(&mcp.Implementation{Name: "everything", Version: "1"}, &mcp.ServerOptions{
		SubscribeHandler:   func(context.Context, *mcp.SubscribeRequest) error { return nil },
		UnsubscribeHandler: func(context.Context, *mcp.UnsubscribeRequest) error { return nil },
	})
	// Sessions a test abandons on purpose would outlive it (goleak).
	t.Cleanup(func() {
		for ss := range e.Sessions() {
			_ = ss.Close()
		}
	})
	mcp.AddTool(e.Server, &mcp.Tool{Name: "echo"}, func(_ context.Context, _ *mcp.CallToolRequest, in echoIn) (*mcp.CallToolResult, any, error) {
		return textResult(in.Text), nil, nil
	})
	mcp.AddTool(e.Server, &mcp.Tool{Name: "progress"}, func(ctx context.Context, req *mcp.CallToolRequest, _ struct{}) (*mcp.CallToolResult, any, error) {
		for i := 1; i <= 3; i++ {
			if err := req.Session.NotifyProgress(ctx, &mcp.ProgressNotificationParams{
				ProgressToken: req.Params.GetProgressToken(), Progress: float64(i), Total: 3,
			}); err != nil {
				return nil, nil, err
			}
		}
		return textResult("done"), nil, nil
	})
	mcp.AddTool(e.Server, &mcp.Tool{Name: "sample"}, func(ctx context.Context, req *mcp.CallToolRequest, _ struct{}) (*mcp.CallToolResult, any, error) {
		res, err := req.Session.CreateMessage(ctx, &mcp.CreateMessageParams{
			MaxTokens: 10,
			Messages:  []*mcp.SamplingMessage{{Role: "user", Content: &mcp.TextContent{Text: "hi"}}},
		})
		if err != nil {
			return nil, nil, err
		}
		return textResult("sampled: " + res.Content.(*mcp.TextContent).Text), nil, nil
	})
	mcp.AddTool(e.Server, &mcp.Tool{Name: "block"}, func(ctx context.Context, _ *mcp.CallToolRequest, _ struct{}) (*mcp.CallToolResult, any, error) {
		e.started <- struct{}{}
		<-ctx.Done()
		e.cancelled <- struct{}{}
		return nil, nil, ctx.Err()
	})
	mcp.AddTool(e.Server, &mcp.Tool{Name: "poll"}, func(ctx context.Context, req *mcp.CallToolRequest, _ struct{}) (*mcp.CallToolResult, any, error) {
		// SSE polling (2025-11-25): close the response stream, keep working,
		// answer on the stream the client resumes.
		req.Extra.CloseSSEStream(mcp.CloseSSEStreamArgs{RetryAfter: 20 * time.Millisecond})
		time.Sleep(30 * time.Millisecond)
		if err := req.Session.NotifyProgress(ctx, &mcp.ProgressNotificationParams{
			ProgressToken: req.Params.GetProgressToken(), Progress: 1, Total: 2,
		}); err != nil {
			return nil, nil, err
		}
		time.Sleep(30 * time.Millisecond)
		return textResult("polled"), nil, nil
	})
	e.AddResource(&mcp.Resource{URI: "test://r", Name: "r"}, func(context.Context, *mcp.ReadResourceRequest) (*mcp.ReadResourceResult, error) {
		return &mcp.ReadResourceResult{Contents: []*mcp.ResourceContents{{URI: "test://r", Text: "r"}}}, nil
	})
	return e
}
