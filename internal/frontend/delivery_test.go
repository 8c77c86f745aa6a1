package frontend

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/internal/core"
	"github.com/mcpgate/mcpgate/internal/pipeline"
	"github.com/mcpgate/mcpgate/internal/session"
	"github.com/mcpgate/mcpgate/internal/sse"
	"github.com/mcpgate/mcpgate/internal/upstream/stdio"
)

// stdioGateway serves one route whose upstream is the test binary's own
// go-sdk stdio server (helperServer), one process per session.
type stdioGateway struct {
	f   *Frontend
	mgr *session.Manager
	url string
}

func newStdioGateway(t testing.TB, opts Options, stages ...pipeline.Stage) *stdioGateway {
	t.Helper()
	return newStdioGatewayRoute(t, opts, func(rt *Route) { rt.Stages = stages })
}

// newStdioGatewayRoute is newStdioGateway with the route set up by tune.
func newStdioGatewayRoute(t testing.TB, opts Options, tune func(*Route)) *stdioGateway {
	t.Helper()
	up := stdio.New(stdio.Options{
		Command: os.Args[0], Env: map[string]string{helperServerEnv: "1"}, ShutdownGrace: time.Second,
	}, "r", nil)
	mgr := session.NewManager(session.Options{})
	opts.Sessions = mgr
	rt := &Route{Name: "r", Path: "/mcp", Upstream: up, Local: true}
	tune(rt)
	f, err := New(opts, []*Route{rt})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(f.Handler(ListenerPolicy{}))
	t.Cleanup(func() {
		mgr.Close(context.Background()) // ends the sessions: streams, processes
		srv.Close()
		_ = up.Close()
	})
	return &stdioGateway{f: f, mgr: mgr, url: srv.URL + "/mcp"}
}

// post sends one JSON-RPC message on session sid ("" for none) and
// returns the response, body unread.
func (g *stdioGateway) post(t testing.TB, sid, body string) *http.Response {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, g.url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	if sid != "" {
		req.Header.Set("Mcp-Session-Id", sid)
		req.Header.Set("MCP-Protocol-Version", "2025-11-25")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

// session initializes a 2025-11-25 session (with sampling) and returns
// its id.
func (g *stdioGateway) session(t testing.TB) string {
	t.Helper()
	resp := g.post(t, "", `{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{"sampling":{}},"clientInfo":{"name":"t","version":"1"}}}`)
	body, _ := io.ReadAll(resp.Body)
	sid := resp.Header.Get("Mcp-Session-Id")
	if resp.StatusCode != http.StatusOK || sid == "" {
		t.Fatalf("initialize: %d %s", resp.StatusCode, body)
	}
	if r := g.post(t, sid, `{"jsonrpc":"2.0","method":"notifications/initialized"}`); r.StatusCode != http.StatusAccepted {
		t.Fatalf("notifications/initialized: %d", r.StatusCode)
	}
	return sid
}

// messages reads the JSON-RPC messages of a response, JSON or SSE, until
// it ends.
func messages(t *testing.T, resp *http.Response) []*core.Message {
	t.Helper()
	var out []*core.Message
	if !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return append(out, mustDecode(t, string(body)))
	}
	r := sse.NewReader(resp.Body, 16<<20)
	for {
		ev, err := r.Next()
		if err != nil {
			return out
		}
		if len(ev.Data) > 0 {
			out = append(out, mustDecode(t, string(ev.Data)))
		}
	}
}

// ping times one ping on session sid.
func (g *stdioGateway) ping(t *testing.T, sid string, id int) time.Duration {
	t.Helper()
	start := time.Now()
	resp := g.post(t, sid, fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":"ping"}`, id))
	ms := messages(t, resp)
	took := time.Since(start)
	if resp.StatusCode != http.StatusOK || len(ms) == 0 || ms[len(ms)-1].Kind != core.KindResponse {
		t.Fatalf("ping %d: %d %v", id, resp.StatusCode, ms)
	}
	return took
}

// stallCall sends a tools/call on a raw connection that never reads its
// response, with a tiny receive buffer: the client of a stream that has
// stopped reading.
func (g *stdioGateway) stallCall(t *testing.T, sid, body string) {
	t.Helper()
	host := strings.TrimPrefix(strings.TrimSuffix(g.url, "/mcp"), "http://")
	conn, err := net.Dial("tcp", host)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	if tc, ok := conn.(*net.TCPConn); ok {
		_ = tc.SetReadBuffer(4 << 10)
	}
	fmt.Fprintf(conn, "POST /mcp HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nAccept: application/json, text/event-stream\r\nMcp-Session-Id: %s\r\nMCP-Protocol-Version: 2025-11-25\r\nContent-Length: %d\r\n\r\n%s",
		host, sid, len(body), body)
}

// gwOf is the transport state of live session sid.
func (g *stdioGateway) gwOf(t *testing.T, sid string) *gwSession {
	t.Helper()
	s, err := g.mgr.Get(sid)
	if err != nil {
		t.Fatal(err)
	}
	return s.Value.(*gwSession)
}

// TestSlowStreamDoesNotDelayPing: one request's client stops reading
// while the server floods its stream with megabytes of progress; a ping
// of the same session — the same stdio process, read by the same reader
// goroutine — is still answered at once, well within the write timeout
// the flooded stream would otherwise hold the reader for.
func TestSlowStreamDoesNotDelayPing(t *testing.T) {
	t.Parallel()
	g := newStdioGateway(t, Options{WriteTimeout: time.Minute})
	sid := g.session(t)
	g.stallCall(t, sid, `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"flood","arguments":{"n":200},"_meta":{"progressToken":"f"}}}`)

	// Wait until the flood has filled the stalled stream: its queue then
	// overflows and the stream is closed (resumable, kept for
	// Last-Event-ID) — the reader never waited for it.
	gs := g.gwOf(t, sid)
	deadline := time.Now().Add(30 * time.Second)
	for {
		gs.mu.Lock()
		var st *stream
		for _, c := range gs.inflight {
			st = c.st
		}
		gs.mu.Unlock()
		if st != nil && st.missed() {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the stalled stream was never closed")
		}
		time.Sleep(10 * time.Millisecond)
	}
	var worst time.Duration
	for i := range 20 {
		worst = max(worst, g.ping(t, sid, 100+i))
	}
	if worst > time.Second {
		t.Fatalf("a ping of the same session took %s while one of its streams stalled", worst)
	}
	t.Logf("worst ping while a stream of the session stalled: %s", worst)
}

// blockingStage is a logging-stage interceptor that holds every
// server→client progress notification until release is closed, telling
// entered when it starts holding one.
func blockingStage(entered chan<- struct{}, release <-chan struct{}) pipeline.Stage {
	return pipeline.Stage{Name: "logging", Interceptor: func(next core.Handler) core.Handler {
		return func(ctx context.Context, m *core.Message) (*core.Message, error) {
			if m.Direction == core.ServerToClient && m.Method == "notifications/progress" {
				entered <- struct{}{}
				<-release
			}
			return next(ctx, m)
		}
	}}
}

// TestSlowInterceptorDoesNotBlockReader: a server→client interceptor
// that holds a progress notification delays neither the upstream's reader
// nor another request of the same session (ping, answered by the same
// process); the held notification still reaches its request's stream
// before that request's response.
func TestSlowInterceptorDoesNotBlockReader(t *testing.T) {
	t.Parallel()
	entered, release := make(chan struct{}, 1), make(chan struct{})
	g := newStdioGateway(t, Options{}, blockingStage(entered, release))
	sid := g.session(t)
	done := make(chan []*core.Message, 1)
	go func() {
		resp := g.post(t, sid, `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"notify","arguments":{},"_meta":{"progressToken":"p"}}}`)
		done <- messages(t, resp)
	}()
	select {
	case <-entered:
	case <-time.After(30 * time.Second):
		t.Fatal("the progress notification never reached the interceptor")
	}
	if took := g.ping(t, sid, 2); took > time.Second {
		t.Fatalf("a ping took %s while an interceptor held a notification of the same session", took)
	}
	select {
	case ms := <-done:
		t.Fatalf("the call was answered before its held notification: %v", ms)
	default:
	}
	close(release)
	ms := <-done
	if len(ms) != 2 || ms[0].Method != "notifications/progress" || ms[1].Kind != core.KindResponse {
		var b bytes.Buffer
		for _, m := range ms {
			b.Write(m.Raw)
			b.WriteByte('\n')
		}
		t.Fatalf("want the progress notification, then the response; got\n%s", b.String())
	}
}

// TestServerRequestDoesNotBlockDispatcher: a sampling request the client
// has not answered yet holds neither the session's dispatcher nor the
// reader: another call's progress and response come through meanwhile;
// the answer, when it comes, completes the first call.
func TestServerRequestDoesNotBlockDispatcher(t *testing.T) {
	t.Parallel()
	g := newStdioGateway(t, Options{})
	sid := g.session(t)
	resp := g.post(t, sid, `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"sample","arguments":{}}}`)
	if !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		t.Fatalf("the sampling call's response is not a stream: %q", resp.Header.Get("Content-Type"))
	}
	r := sse.NewReader(resp.Body, 1<<20)
	var req *core.Message
	for req == nil {
		ev, err := r.Next()
		if err != nil {
			t.Fatalf("stream ended before the sampling request: %v", err)
		}
		if len(ev.Data) > 0 {
			req = mustDecode(t, string(ev.Data))
		}
	}
	if req.Method != "sampling/createMessage" {
		t.Fatalf("got %s, want the sampling request", req.Raw)
	}

	// Unanswered: another call of the session goes through, progress first.
	start := time.Now()
	ms := messages(t, g.post(t, sid, `{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"notify","arguments":{},"_meta":{"progressToken":"p"}}}`))
	if len(ms) != 2 || ms[0].Method != "notifications/progress" || ms[1].Kind != core.KindResponse {
		t.Fatalf("the other call, while sampling waits: %v", ms)
	}
	if took := time.Since(start); took > time.Second {
		t.Fatalf("the other call took %s while a sampling request waited for the client", took)
	}

	answer := `{"jsonrpc":"2.0","id":` + string(req.ID) + `,"result":{"role":"assistant","model":"m","content":{"type":"text","text":"pong"}}}`
	if r := g.post(t, sid, answer); r.StatusCode != http.StatusAccepted {
		t.Fatalf("answer: %d", r.StatusCode)
	}
	var final *core.Message
	for {
		ev, err := r.Next()
		if err != nil {
			break
		}
		if len(ev.Data) > 0 {
			final = mustDecode(t, string(ev.Data))
		}
	}
	if final == nil || final.Kind != core.KindResponse || !bytes.Contains(final.Result, []byte("sampled: pong")) {
		t.Fatalf("the sampling call ended with %v", final)
	}
}

// stallWriter is a ResponseWriter whose client has stopped reading: every
// write blocks until unblock is closed (then fails, as on a dead
// connection), and entered tells when the first write started.
type stallWriter struct {
	h       http.Header
	entered chan struct{}
	unblock chan struct{}
}

func newStallWriter() *stallWriter {
	return &stallWriter{h: http.Header{}, entered: make(chan struct{}, 1), unblock: make(chan struct{})}
}

func (w *stallWriter) Header() http.Header { return w.h }
func (w *stallWriter) WriteHeader(int)     {}
func (w *stallWriter) Write(p []byte) (int, error) {
	select {
	case w.entered <- struct{}{}:
	default:
	}
	<-w.unblock
	return 0, net.ErrClosed
}
func (w *stallWriter) Flush() {}

// syncRecorder is an httptest.ResponseRecorder safe to read while a
// stream writes to it.
type syncRecorder struct {
	*httptest.ResponseRecorder
	buf lockedBuf
}

func (r *syncRecorder) Write(p []byte) (int, error) { return r.buf.Write(p) }

// TestStreamQueueFull: a client that stops reading makes its stream's
// queue fill while producers (the dispatcher) go on without waiting; past
// the bound the stream is closed and its handler released (once the write
// under way returns). A resumable stream is then resumed from its history
// on a new response; a plain one refuses further messages, so they can go
// elsewhere.
func TestStreamQueueFull(t *testing.T) {
	t.Parallel()
	opts := &Options{}
	opts.setDefaults()
	maxEvents, _ := opts.queueBounds()
	msg := func(i int) *core.Message {
		return mustDecode(t, fmt.Sprintf(`{"jsonrpc":"2.0","method":"notifications/message","params":{"data":%d}}`, i))
	}
	for _, resumable := range []bool{true, false} {
		t.Run(fmt.Sprint("resumable=", resumable), func(t *testing.T) {
			t.Parallel()
			w := newStallWriter()
			st := newStream(w, opts, "3", resumable)
			if err := st.place(msg(0)); err != nil {
				t.Fatal(err)
			}
			<-w.entered // the writer is stuck in the first batch
			start := time.Now()
			var refused int
			for i := 1; i <= maxEvents+10; i++ {
				if err := st.place(msg(i)); err != nil {
					refused++
				}
			}
			if took := time.Since(start); took > time.Second {
				t.Fatalf("queueing for a stalled client took %s", took)
			}
			if !st.missed() || st.attached() {
				t.Fatal("the overflowing stream is still open")
			}
			select {
			case <-st.releasedCh():
				t.Fatal("the handler was released while a write to its ResponseWriter was under way")
			default:
			}
			close(w.unblock)
			<-st.releasedCh()
			if !resumable {
				if refused == 0 {
					t.Fatal("a closed plain stream still accepts messages")
				}
				return
			}
			if refused != 0 {
				t.Fatalf("a resumable stream refused %d messages; it keeps them for resumption", refused)
			}
			rec := &syncRecorder{ResponseRecorder: httptest.NewRecorder()}
			from := maxEvents - 50 // within the last maxHistoryEvents
			released, ok := st.attach(rec, from)
			if !ok {
				t.Fatal("resume refused")
			}
			st.finish(nil, 0)
			<-released
			body := rec.buf.String()
			// Event seq i carries data i-1 (the first was msg(0)).
			if !strings.HasPrefix(body, fmt.Sprintf("id: 3_%d\n", from+1)) || !strings.Contains(body, fmt.Sprintf(`"data":%d}`, maxEvents+10)) ||
				strings.Count(body, "\n\n") != maxEvents+11-from {
				t.Fatalf("resumed stream does not replay every event after %d:\n%.300s", from, body)
			}
		})
	}
}

// TestInboundQueueBounds: while the dispatcher is held (an interceptor
// taking its time), the upstream's reader goes on queueing without
// waiting; past maxInbound the oldest notifications give way, a server
// request never does, drops are logged once per interval, and what is
// kept is delivered in arrival order once the interceptor lets go.
func TestInboundQueueBounds(t *testing.T) {
	t.Parallel()
	var logs lockedBuf
	entered, release := make(chan struct{}, 1), make(chan struct{})
	mgr := session.NewManager(session.Options{})
	t.Cleanup(func() { mgr.Close(context.Background()) })
	f, err := New(Options{Sessions: mgr, Logger: slog.New(slog.NewTextHandler(&logs, nil))},
		[]*Route{{Name: "r", Path: "/mcp", RequestTimeout: time.Minute, Stages: []pipeline.Stage{blockingStage(entered, release)}}})
	if err != nil {
		t.Fatal(err)
	}
	g := newGWSession(f, f.routes().byPath["/mcp"], &core.SessionInfo{ID: session.NewID(), Route: "r", Era: core.EraLegacy, ProtocolVersion: "2025-06-18"})
	t.Cleanup(func() { g.teardown(context.Background(), session.ReasonDeleted) })
	note := func(i int) *core.Message {
		return mustDecode(t, fmt.Sprintf(`{"jsonrpc":"2.0","method":"notifications/message","params":{"data":%d}}`, i))
	}
	g.fromUpstream(g.ctx, mustDecode(t, `{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":"x","progress":1}}`), nil)
	<-entered // the dispatcher is held
	g.fromUpstream(g.ctx, mustDecode(t, `{"jsonrpc":"2.0","id":"s1","method":"roots/list"}`), nil)
	start := time.Now()
	const extra = 500
	for i := range maxInbound + extra {
		g.fromUpstream(g.ctx, note(i), nil)
	}
	if took := time.Since(start); took > time.Second {
		t.Fatalf("queueing behind a held dispatcher took %s", took)
	}
	g.dmu.Lock()
	n := g.in.len()
	first := g.in.q[g.in.head]
	g.dmu.Unlock()
	if n != maxInbound || first.m.Method != "roots/list" {
		t.Fatalf("inbound holds %d messages, first %s; want %d, the server request first", n, first.m.Raw, maxInbound)
	}
	if got := strings.Count(logs.String(), "server_message_inbound_full"); got != 1 {
		t.Fatalf("%d drop records within one interval; want 1:\n%s", got, logs.String())
	}
	close(release)
	// No stream: everything lands in the backlog, newest kept, in order.
	deadline := time.Now().Add(10 * time.Second)
	for {
		g.dmu.Lock()
		idle := !g.in.running
		g.dmu.Unlock()
		if idle {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the dispatcher did not drain its queue")
		}
		time.Sleep(time.Millisecond)
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	last := g.backlog[len(g.backlog)-1]
	if want := note(maxInbound + extra - 1); !bytes.Equal(last.Raw, want.Raw) {
		t.Fatalf("last delivered %s, want %s", last.Raw, want.Raw)
	}
	prev := -1
	for _, m := range g.backlog {
		var n int
		if _, err := fmt.Sscanf(string(m.Raw), `{"jsonrpc":"2.0","method":"notifications/message","params":{"data":%d}}`, &n); err != nil {
			continue // the request and the first notification
		}
		if n <= prev {
			t.Fatalf("delivered out of order: %d after %d", n, prev)
		}
		prev = n
	}
}
