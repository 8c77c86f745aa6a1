package httpup_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpgate/mcpgate/internal/core"
	"github.com/mcpgate/mcpgate/internal/upstream"
	"github.com/mcpgate/mcpgate/internal/upstream/httpup"
)

func TestLegacySession(t *testing.T) {
	for _, jsonResponse := range []bool{false, true} {
		t.Run(fmt.Sprintf("json=%v", jsonResponse), func(t *testing.T) {
			e := newEverything(t)
			ts, rec := sdkServer(t, e.Server, &mcp.StreamableHTTPOptions{JSONResponse: jsonResponse})
			u := newUpstream(t, ts.URL, map[string]string{"X-Api-Key": "k-123"})
			c := open(t, u, core.EraLegacy, newSink())

			if c.UpstreamSession() != "" {
				t.Fatal("session id before initialize")
			}
			init := initialize(t, c, core.Version20250618)
			sid := c.UpstreamSession()
			if sid == "" {
				t.Fatal("no upstream session id captured")
			}
			if init.Direction != core.ServerToClient || init.Era != core.EraLegacy || init.Session != testSession || init.Received.IsZero() {
				t.Errorf("response not stamped: dir=%v era=%v session=%v received=%v", init.Direction, init.Era, init.Session, init.Received)
			}
			resp, err := c.RoundTrip(ctxT(t), msg(t, `{"jsonrpc":"2.0","id":"a-1","method":"tools/call","params":{"name":"echo","arguments":{"text":"hello"}}}`), nil)
			if err != nil {
				t.Fatal(err)
			}
			if resp.ID != `"a-1"` || toolText(t, resp) != "hello" {
				t.Fatalf("tools/call: %s", resp.Raw)
			}

			for i, s := range rec.find(all) {
				if s.Header.Get("X-Api-Key") != "k-123" {
					t.Errorf("request %d lacks the configured header", i)
				}
				if s.Header.Get("Authorization") != "" || s.Header.Get("Cookie") != "" {
					t.Errorf("request %d carries client credentials", i)
				}
				first := i == 0
				if got := s.Header.Get("Mcp-Session-Id"); (got == "") != first || (!first && got != sid) {
					t.Errorf("request %d: Mcp-Session-Id %q", i, got)
				}
				if got := s.Header.Get("Mcp-Protocol-Version"); (got == "") != first || (!first && got != core.Version20250618) {
					t.Errorf("request %d: MCP-Protocol-Version %q", i, got)
				}
			}
		})
	}
}

func TestLegacyProgressReachesRelated(t *testing.T) {
	e := newEverything(t)
	ts, _ := sdkServer(t, e.Server, nil)
	c := open(t, newUpstream(t, ts.URL, nil), core.EraLegacy, newSink())
	initialize(t, c, core.Version20251125)

	var mu sync.Mutex
	var got []string
	resp, err := c.RoundTrip(ctxT(t), msg(t, `{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"progress","arguments":{},"_meta":{"progressToken":"tok"}}}`),
		func(m *core.Message) {
			mu.Lock()
			defer mu.Unlock()
			if m.Direction != core.ServerToClient || m.Session != testSession {
				t.Errorf("related message not stamped")
			}
			got = append(got, m.Method+" "+string(m.Params))
		})
	if err != nil {
		t.Fatal(err)
	}
	if toolText(t, resp) != "done" {
		t.Fatalf("result %s", resp.Raw)
	}
	want := []string{
		`notifications/progress {"progressToken":"tok","progress":1,"total":3}`,
		`notifications/progress {"progressToken":"tok","progress":2,"total":3}`,
		`notifications/progress {"progressToken":"tok","progress":3,"total":3}`,
	}
	mu.Lock()
	defer mu.Unlock()
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("related (-want +got):\n%s", diff)
	}
}

func TestLegacySampling(t *testing.T) {
	e := newEverything(t)
	ts, _ := sdkServer(t, e.Server, nil)
	c := open(t, newUpstream(t, ts.URL, nil), core.EraLegacy, newSink())
	initialize(t, c, core.Version20251125)

	var wg sync.WaitGroup
	defer wg.Wait()
	resp, err := c.RoundTrip(ctxT(t), msg(t, `{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"sample","arguments":{}}}`),
		func(m *core.Message) {
			if m.Kind != core.KindRequest || m.Method != "sampling/createMessage" {
				t.Errorf("related: %s", m.Raw)
				return
			}
			// The gateway answers later, through Send, never inside related.
			wg.Go(func() {
				answer := core.ResultResponse(m.ID, []byte(`{"role":"assistant","content":{"type":"text","text":"from the client"},"model":"m"}`))
				if err := c.Send(context.Background(), answer); err != nil {
					t.Errorf("send sampling result: %v", err)
				}
			})
		})
	if err != nil {
		t.Fatal(err)
	}
	if got := toolText(t, resp); got != "sampled: from the client" {
		t.Fatalf("tool result %q", got)
	}
}

func TestLegacyListen(t *testing.T) {
	e := newEverything(t)
	ts, rec := sdkServer(t, e.Server, nil)
	sk := newSink()
	c := open(t, newUpstream(t, ts.URL, nil), core.EraLegacy, sk)
	initialize(t, c, core.Version20251125)
	for range 3 {
		if err := c.Listen(ctxT(t)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.RoundTrip(ctxT(t), msg(t, `{"jsonrpc":"2.0","id":4,"method":"resources/subscribe","params":{"uri":"test://r"}}`), nil); err != nil {
		t.Fatal(err)
	}
	if err := e.ResourceUpdated(context.Background(), &mcp.ResourceUpdatedNotificationParams{URI: "test://r"}); err != nil {
		t.Fatal(err)
	}
	m := sk.next(t)
	if m.Method != "notifications/resources/updated" || m.Direction != core.ServerToClient || m.Era != core.EraLegacy || m.Session != testSession {
		t.Fatalf("sink got %s (dir %v era %v)", m.Raw, m.Direction, m.Era)
	}
	gets := rec.find(byMethod(http.MethodGet))
	if len(gets) != 1 {
		t.Fatalf("%d GET streams, want 1 (Listen repeats are no-ops)", len(gets))
	}
	if gets[0].Header.Get("Accept") != "text/event-stream" || gets[0].Header.Get("Mcp-Session-Id") != c.UpstreamSession() {
		t.Errorf("GET headers %v", gets[0].Header)
	}
}

// A stateless go-sdk server still answers initialize but mints no session
// and refuses GET with 405.
func TestLegacyWithoutSession(t *testing.T) {
	e := newEverything(t)
	ts, rec := sdkServer(t, e.Server, &mcp.StreamableHTTPOptions{Stateless: true})
	c := open(t, newUpstream(t, ts.URL, nil), core.EraLegacy, newSink())
	initialize(t, c, core.Version20250618)
	if c.UpstreamSession() != "" {
		t.Fatalf("session %q", c.UpstreamSession())
	}
	resp, err := c.RoundTrip(ctxT(t), msg(t, `{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"echo","arguments":{"text":"x"}}}`), nil)
	if err != nil || toolText(t, resp) != "x" {
		t.Fatalf("%v %v", resp, err)
	}
	for range 2 {
		if err := c.Listen(ctxT(t)); err != nil {
			t.Fatalf("Listen on a 405 upstream: %v", err)
		}
	}
	if n := len(rec.find(byMethod(http.MethodGet))); n != 1 {
		t.Fatalf("%d GETs, want 1", n)
	}
	if err := c.Close(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	if n := len(rec.find(byMethod(http.MethodDelete))); n != 0 {
		t.Fatalf("DELETE without a session")
	}
	for _, s := range rec.find(all) {
		if s.Header.Get("Mcp-Session-Id") != "" {
			t.Fatal("sent a session id the upstream never minted")
		}
	}
}

func closeUpstreamSessions(s *mcp.Server) {
	for ss := range s.Sessions() {
		_ = ss.Close()
	}
}

func TestLegacySessionLost(t *testing.T) {
	e := newEverything(t)
	ts, rec := sdkServer(t, e.Server, nil)
	sk := newSink()
	c := open(t, newUpstream(t, ts.URL, nil), core.EraLegacy, sk)
	initialize(t, c, core.Version20251125)
	closeUpstreamSessions(e.Server)

	_, err := c.RoundTrip(ctxT(t), msg(t, `{"jsonrpc":"2.0","id":6,"method":"tools/list"}`), nil)
	if !errors.Is(err, upstream.ErrSessionLost) {
		t.Fatalf("want ErrSessionLost, got %v", err)
	}
	select {
	case err := <-sk.closed:
		if !errors.Is(err, upstream.ErrSessionLost) {
			t.Fatalf("sink.Closed(%v)", err)
		}
	case <-time.After(wait):
		t.Fatal("sink not told")
	}
	// Later calls fail fast; Close sends no DELETE for a lost session.
	before := len(rec.find(all))
	if err := c.Send(ctxT(t), msg(t, `{"jsonrpc":"2.0","method":"notifications/roots/list_changed"}`)); !errors.Is(err, upstream.ErrSessionLost) {
		t.Fatalf("Send after loss: %v", err)
	}
	if err := c.Close(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	if after := len(rec.find(all)); after != before {
		t.Fatalf("%d requests after the session was lost", after-before)
	}
	select {
	case err := <-sk.closed:
		t.Fatalf("sink.Closed called twice: %v", err)
	default:
	}
}

func TestLegacySessionLostWhileListening(t *testing.T) {
	e := newEverything(t)
	ts, _ := sdkServer(t, e.Server, nil)
	sk := newSink()
	c := open(t, newUpstream(t, ts.URL, nil), core.EraLegacy, sk)
	initialize(t, c, core.Version20251125)
	if err := c.Listen(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	closeUpstreamSessions(e.Server) // ends the GET stream; the reconnect gets 404
	select {
	case err := <-sk.closed:
		if !errors.Is(err, upstream.ErrSessionLost) {
			t.Fatalf("sink.Closed(%v)", err)
		}
	case <-time.After(wait):
		t.Fatal("sink not told")
	}
}

func TestLegacyClose(t *testing.T) {
	e := newEverything(t)
	ts, rec := sdkServer(t, e.Server, nil)
	sk := newSink()
	c := open(t, newUpstream(t, ts.URL, map[string]string{"X-Api-Key": "k"}), core.EraLegacy, sk)
	initialize(t, c, core.Version20251125)
	if err := c.Listen(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	var sessions int
	for range e.Sessions() {
		sessions++
	}
	if sessions != 1 {
		t.Fatalf("%d upstream sessions", sessions)
	}
	sid := c.UpstreamSession()
	for range 2 {
		if err := c.Close(ctxT(t)); err != nil {
			t.Fatal(err)
		}
	}
	dels := rec.find(byMethod(http.MethodDelete))
	if len(dels) != 1 || dels[0].Header.Get("Mcp-Session-Id") != sid || dels[0].Header.Get("X-Api-Key") != "k" {
		t.Fatalf("DELETEs: %+v", dels)
	}
	for range e.Sessions() {
		t.Fatal("the upstream session survived Close")
	}
	if _, err := c.RoundTrip(ctxT(t), msg(t, `{"jsonrpc":"2.0","id":7,"method":"tools/list"}`), nil); !errors.Is(err, upstream.ErrClosed) {
		t.Fatalf("RoundTrip after Close: %v", err)
	}
	select {
	case err := <-sk.closed:
		t.Fatalf("sink.Closed after Conn.Close: %v", err)
	default:
	}
}

func TestLegacyCancel(t *testing.T) {
	e := newEverything(t)
	ts, rec := sdkServer(t, e.Server, nil)
	c := open(t, newUpstream(t, ts.URL, nil), core.EraLegacy, newSink())
	initialize(t, c, core.Version20251125)

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := c.RoundTrip(ctx, msg(t, `{"jsonrpc":"2.0","id":"call-9","method":"tools/call","params":{"name":"block","arguments":{}}}`), nil)
		done <- err
	}()
	select {
	case <-e.started:
	case <-time.After(wait):
		t.Fatal("tool did not start")
	}
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("RoundTrip: %v", err)
		}
	case <-time.After(wait):
		t.Fatal("RoundTrip did not return")
	}
	select {
	case <-e.cancelled:
	case <-time.After(wait):
		t.Fatal("the upstream tool never saw the cancellation")
	}
	notes := rec.find(byRPC("notifications/cancelled"))
	if len(notes) != 1 || !strings.Contains(notes[0].Body, `"requestId":"call-9"`) || notes[0].Header.Get("Mcp-Session-Id") == "" {
		t.Fatalf("notifications/cancelled: %+v", notes)
	}
}

// The client's own notifications/cancelled goes through Send; the
// RoundTrip it cancels then sends no second one.
func TestLegacyCancelNotDuplicated(t *testing.T) {
	e := newEverything(t)
	ts, rec := sdkServer(t, e.Server, nil)
	c := open(t, newUpstream(t, ts.URL, nil), core.EraLegacy, newSink())
	initialize(t, c, core.Version20251125)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := c.RoundTrip(ctx, msg(t, `{"jsonrpc":"2.0","id":10,"method":"tools/call","params":{"name":"block","arguments":{}}}`), nil)
		done <- err
	}()
	<-e.started
	if err := c.Send(ctxT(t), msg(t, `{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":10,"reason":"user"}}`)); err != nil {
		t.Fatal(err)
	}
	cancel()
	<-done
	<-e.cancelled
	if n := len(rec.find(byRPC("notifications/cancelled"))); n != 1 {
		t.Fatalf("%d notifications/cancelled, want 1", n)
	}
}

func TestLegacyInitializeNotCancelled(t *testing.T) {
	release := make(chan struct{})
	e := newEverything(t)
	sdk := mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return e.Server }, nil)
	ts, rec := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-release
		sdk.ServeHTTP(w, r)
	}))
	c := open(t, newUpstream(t, ts.URL, nil), core.EraLegacy, newSink())
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err := c.RoundTrip(ctx, msg(t, `{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}`), nil)
	close(release)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("RoundTrip: %v", err)
	}
	if n := len(rec.find(byRPC("notifications/cancelled"))); n != 0 {
		t.Fatal("initialize was cancelled upstream")
	}
}

// go-sdk closes the response stream (SSE polling, 2025-11-25) with a retry
// field; the Conn resumes it with GET and Last-Event-ID and reads on.
func TestLegacyResumeAfterServerClose(t *testing.T) {
	e := newEverything(t)
	ts, rec := sdkServer(t, e.Server, &mcp.StreamableHTTPOptions{EventStore: mcp.NewMemoryEventStore(nil)})
	c := open(t, newUpstream(t, ts.URL, nil), core.EraLegacy, newSink())
	initialize(t, c, core.Version20251125)

	var related []string
	var mu sync.Mutex
	start := time.Now()
	resp, err := c.RoundTrip(ctxT(t), msg(t, `{"jsonrpc":"2.0","id":11,"method":"tools/call","params":{"name":"poll","arguments":{},"_meta":{"progressToken":7}}}`),
		func(m *core.Message) {
			mu.Lock()
			related = append(related, m.Method)
			mu.Unlock()
		})
	if err != nil {
		t.Fatal(err)
	}
	if toolText(t, resp) != "polled" {
		t.Fatalf("result %s", resp.Raw)
	}
	if d := time.Since(start); d > 900*time.Millisecond {
		t.Errorf("took %v: the server's retry (20ms) was not honoured", d)
	}
	mu.Lock()
	if diff := cmp.Diff([]string{"notifications/progress"}, related); diff != "" {
		t.Errorf("related (-want +got):\n%s", diff)
	}
	mu.Unlock()
	gets := rec.find(byMethod(http.MethodGet))
	if len(gets) == 0 || gets[0].Header.Get("Last-Event-Id") == "" {
		t.Fatalf("no resumption GET with Last-Event-ID: %+v", gets)
	}
}

// A hand-written server: priming event and retry, then the connection
// ends; the resumed GET replays a notification and the response.
func TestLegacyResumeTinyServer(t *testing.T) {
	var mu sync.Mutex
	var lastIDs []string
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.Method {
		case http.MethodPost:
			if strings.Contains(r.Header.Get("Accept"), "text/event-stream") && strings.Contains(r.Header.Get("Content-Type"), "json") {
				w.Header().Set("Content-Type", "text/event-stream")
				_, _ = fmt.Fprint(w, "id: s1-0\nretry: 10\ndata:\n\n")
				return
			}
			w.WriteHeader(http.StatusBadRequest)
		case http.MethodGet:
			mu.Lock()
			lastIDs = append(lastIDs, r.Header.Get("Last-Event-ID"))
			n := len(lastIDs)
			mu.Unlock()
			w.Header().Set("Content-Type", "text/event-stream")
			if n == 1 { // one more drop, with progress
				_, _ = fmt.Fprint(w, "id: s1-1\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/message\",\"params\":{\"level\":\"info\",\"data\":\"x\"}}\n\n")
				return
			}
			_, _ = fmt.Fprint(w, ": keep-alive\n\nid: s1-2\nevent: message\ndata: {\"jsonrpc\":\"2.0\",\n")
			_, _ = fmt.Fprint(w, "data: \"id\":1,\"result\":{\"ok\":true}}\n\n")
		}
	})
	ts, _ := serve(t, h)
	c := open(t, newUpstream(t, ts.URL, nil), core.EraLegacy, newSink())
	var got []string
	resp, err := c.RoundTrip(ctxT(t), msg(t, `{"jsonrpc":"2.0","id":1,"method":"tools/list"}`), func(m *core.Message) { got = append(got, m.Method) })
	if err != nil {
		t.Fatal(err)
	}
	if string(resp.Result) != `{"ok":true}` {
		t.Fatalf("result %s", resp.Raw)
	}
	mu.Lock()
	defer mu.Unlock()
	if diff := cmp.Diff([]string{"s1-0", "s1-1"}, lastIDs); diff != "" {
		t.Errorf("Last-Event-ID (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"notifications/message"}, got); diff != "" {
		t.Errorf("related (-want +got):\n%s", diff)
	}
}

func TestLegacyErrors(t *testing.T) {
	tests := []struct {
		name       string
		status     int
		ctype      string
		body       string
		wantCode   int // JSON-RPC code of a returned error response
		wantStatus int // its Status
		wantErr    int // upstream HTTP status inside an error, 0 for any error
	}{
		{name: "json-rpc error body", status: 400, ctype: "application/json",
			body: `{"jsonrpc":"2.0","id":null,"error":{"code":-32600,"message":"Bad Request: Server not initialized"}}`, wantCode: -32600, wantStatus: 400},
		{name: "json-rpc error in 200", status: 200, ctype: "application/json",
			body: `{"jsonrpc":"2.0","id":1,"error":{"code":-32602,"message":"bad params"}}`, wantCode: -32602},
		{name: "plain 500", status: 500, ctype: "text/plain", body: "boom", wantErr: 500},
		{name: "404 without session", status: 404, ctype: "text/plain", body: "no", wantErr: 404},
		{name: "202 to a request", status: 202, wantErr: 202},
		{name: "bad content type", status: 200, ctype: "text/html", body: "<html>", wantErr: -1},
		{name: "notification instead of response", status: 200, ctype: "application/json",
			body: `{"jsonrpc":"2.0","method":"notifications/message"}`, wantErr: -1},
		{name: "invalid json", status: 200, ctype: "application/json", body: `{"jsonrpc":`, wantErr: -1},
		{name: "sse ends before response", status: 200, ctype: "text/event-stream",
			body: "data: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/message\",\"params\":{}}\n\n", wantErr: -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ts, _ := serve(t, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
				if tt.ctype != "" {
					w.Header().Set("Content-Type", tt.ctype)
				}
				w.WriteHeader(tt.status)
				_, _ = w.Write([]byte(tt.body))
			}))
			c := open(t, newUpstream(t, ts.URL, nil), core.EraLegacy, newSink())
			resp, err := c.RoundTrip(ctxT(t), msg(t, `{"jsonrpc":"2.0","id":1,"method":"tools/list"}`), nil)
			if tt.wantErr != 0 {
				var ce *core.Error
				if !errors.As(err, &ce) || ce.Code != core.CodeUpstreamError || ce.HTTPStatus() != http.StatusBadGateway {
					t.Fatalf("want an upstream error, got %v, %v", resp, err)
				}
				var he *httpup.HTTPError
				if tt.wantErr > 0 && (!errors.As(err, &he) || he.StatusCode != tt.wantErr) {
					t.Fatalf("want the upstream status %d in %v", tt.wantErr, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if errorCode(t, resp) != tt.wantCode || resp.ID != "1" || resp.Status != tt.wantStatus {
				t.Fatalf("got %s status %d", resp.Raw, resp.Status)
			}
		})
	}
}

// go-sdk v1.8 in JSONResponse mode sends a request's notifications on the
// GET stream, not with the response: they reach the sink, not related.
func TestLegacyJSONResponseNotificationsGoToGETStream(t *testing.T) {
	e := newEverything(t)
	ts, _ := sdkServer(t, e.Server, &mcp.StreamableHTTPOptions{JSONResponse: true})
	sk := newSink()
	c := open(t, newUpstream(t, ts.URL, nil), core.EraLegacy, sk)
	initialize(t, c, core.Version20251125)
	if err := c.Listen(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	var related int
	resp, err := c.RoundTrip(ctxT(t), msg(t, `{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"progress","arguments":{},"_meta":{"progressToken":"tok"}}}`),
		func(*core.Message) { related++ })
	if err != nil || toolText(t, resp) != "done" {
		t.Fatalf("%v %v", resp, err)
	}
	for range 3 {
		if m := sk.next(t); m.Method != "notifications/progress" {
			t.Fatalf("sink got %s", m.Raw)
		}
	}
	if related != 0 {
		t.Fatalf("%d related messages on a JSON response", related)
	}
}

// The GET stream is reopened with Last-Event-ID after the server's retry
// delay, until Close; Close leaves no reader behind.
func TestLegacyListenReconnects(t *testing.T) {
	var mu sync.Mutex
	var lastIDs []string
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.Method {
		case http.MethodPost:
			w.Header().Set("Mcp-Session-Id", "up-1")
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write([]byte(`{"jsonrpc":"2.0","id":0,"result":{"protocolVersion":"2025-11-25","capabilities":{},"serverInfo":{"name":"tiny","version":"1"}}}`))
		case http.MethodGet:
			mu.Lock()
			lastIDs = append(lastIDs, r.Header.Get("Last-Event-ID"))
			n := len(lastIDs)
			mu.Unlock()
			w.Header().Set("Content-Type", "text/event-stream")
			w.WriteHeader(http.StatusOK)
			_, _ = fmt.Fprintf(w, "id: g-%d\nretry: 10\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/tools/list_changed\",\"params\":{\"n\":%d}}\n\n", n, n)
			w.(http.Flusher).Flush()
			if n >= 2 {
				<-r.Context().Done() // stay open until the client goes
			}
		case http.MethodDelete:
			w.WriteHeader(http.StatusMethodNotAllowed)
		}
	})
	ts, _ := serve(t, h)
	sk := newSink()
	c := open(t, newUpstream(t, ts.URL, nil), core.EraLegacy, sk)
	if _, err := c.RoundTrip(ctxT(t), msg(t, `{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}`), nil); err != nil {
		t.Fatal(err)
	}
	if err := c.Listen(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 2; i++ {
		if m := sk.next(t); string(m.Params) != fmt.Sprintf(`{"n":%d}`, i) {
			t.Fatalf("message %d: %s", i, m.Raw)
		}
	}
	mu.Lock()
	if diff := cmp.Diff([]string{"", "g-1"}, lastIDs); diff != "" {
		t.Errorf("Last-Event-ID (-want +got):\n%s", diff)
	}
	mu.Unlock()
	if err := c.Close(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	// Close waits for the loop; its deferred calls may still be unwinding
	// for a moment after the WaitGroup is released.
	deadline := time.Now().Add(2 * time.Second)
	for goroutinesIn("httpup.(*legacyConn).listenLoop") != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d listen goroutines after Close", goroutinesIn("httpup.(*legacyConn).listenLoop"))
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// goroutinesIn counts goroutines with fn on their stack.
func goroutinesIn(fn string) int {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	n := 0
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, fn) {
			n++
		}
	}
	return n
}

// TestLegacyListenFollowsItsContext: the GET stream lasts as long as the
// ctx of the Listen that opened it (the gateway listens only while its
// client does), and a Listen made while an ended stream is still closing
// opens a new one rather than trusting the old.
func TestLegacyListenFollowsItsContext(t *testing.T) {
	e := newEverything(t)
	ts, rec := sdkServer(t, e.Server, nil)
	sk := newSink()
	c := open(t, newUpstream(t, ts.URL, nil), core.EraLegacy, sk)
	initialize(t, c, core.Version20251125)
	if _, err := c.RoundTrip(ctxT(t), msg(t, `{"jsonrpc":"2.0","id":4,"method":"resources/subscribe","params":{"uri":"test://r"}}`), nil); err != nil {
		t.Fatal(err)
	}
	first, cancel := context.WithCancel(ctxT(t))
	if err := c.Listen(first); err != nil {
		t.Fatal(err)
	}
	cancel()
	if err := c.Listen(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	if n := len(rec.find(openStreams)); n != 2 {
		t.Fatalf("%d GET streams, want 2: the second Listen must not reuse the ended stream", n)
	}
	if err := e.ResourceUpdated(context.Background(), &mcp.ResourceUpdatedNotificationParams{URI: "test://r"}); err != nil {
		t.Fatal(err)
	}
	if m := sk.next(t); m.Method != "notifications/resources/updated" {
		t.Fatalf("sink got %s", m.Raw)
	}
}

// cancelSink cancels a Listen's ctx from inside the first delivery, and
// counts what it gets.
type cancelSink struct {
	mu     sync.Mutex
	n      int
	cancel context.CancelFunc
}

func (s *cancelSink) Deliver(*core.Message) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.n++
	s.cancel()
}

func (s *cancelSink) Closed(error) {}

// TestLegacyListenStopsDeliveringWithItsContext: once the ctx of a Listen
// ends, nothing more of its GET stream reaches the sink, not even events
// already read into the reader's buffers. (The gateway stops listening
// when its client's stream is lost; what a starved reader parsed from its
// buffers later reached the client's next stream as fresh messages.)
func TestLegacyListenStopsDeliveringWithItsContext(t *testing.T) {
	var mu sync.Mutex
	gets := 0
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.Method {
		case http.MethodPost:
			w.Header().Set("Mcp-Session-Id", "up-1")
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write([]byte(`{"jsonrpc":"2.0","id":0,"result":{"protocolVersion":"2025-11-25","capabilities":{},"serverInfo":{"name":"tiny","version":"1"}}}`))
		case http.MethodGet:
			mu.Lock()
			gets++
			first := gets == 1
			mu.Unlock()
			w.Header().Set("Content-Type", "text/event-stream")
			w.WriteHeader(http.StatusOK)
			if first {
				// Ten events in one write: the reader has them all
				// buffered when it delivers the first.
				var b strings.Builder
				for i := range 10 {
					fmt.Fprintf(&b, "data: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/message\",\"params\":{\"n\":%d}}\n\n", i)
				}
				_, _ = w.Write([]byte(b.String()))
			}
			w.(http.Flusher).Flush()
			<-r.Context().Done()
		case http.MethodDelete:
			w.WriteHeader(http.StatusMethodNotAllowed)
		}
	})
	ts, _ := serve(t, h)
	ctx, cancel := context.WithCancel(ctxT(t))
	sk := &cancelSink{cancel: cancel}
	c := open(t, newUpstream(t, ts.URL, nil), core.EraLegacy, sk)
	if _, err := c.RoundTrip(ctxT(t), msg(t, `{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}`), nil); err != nil {
		t.Fatal(err)
	}
	if err := c.Listen(ctx); err != nil {
		t.Fatal(err)
	}
	<-ctx.Done()
	// A new Listen waits until the ended stream's reader is gone.
	if err := c.Listen(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	sk.mu.Lock()
	defer sk.mu.Unlock()
	if sk.n != 1 {
		t.Fatalf("the sink got %d messages; want 1: nothing after the Listen's ctx ended", sk.n)
	}
}
