package shared

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
	"go.uber.org/goleak"

	"github.com/mcpgate/mcpgate/internal/core"
	"github.com/mcpgate/mcpgate/internal/upstream"
	"github.com/mcpgate/mcpgate/internal/upstream/inproc"
)

// The stdio package spawns processes from one locked thread of its own
// (spawnLoop), which lives as long as the test binary.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.IgnoreTopFunction("github.com/mcpgate/mcpgate/internal/upstream/stdio.spawnLoop"))
}

// server is a go-sdk server in the test's process, one server session
// per real Conn; it counts them, and the subscribe calls it gets.
type server struct {
	opens, subs, unsubs atomic.Int32
	srv                 *mcp.Server
	cancelled           chan struct{} // a "block" call saw its cancellation
	started             chan struct{} // a "block" call began
}

func newServer(t testing.TB) (*server, *Upstream, func(o Options) *Upstream) {
	t.Helper()
	s := &server{cancelled: make(chan struct{}, 4), started: make(chan struct{}, 4)}
	s.srv = mcp.NewServer(&mcp.Implementation{Name: "t", Version: "1"}, &mcp.ServerOptions{
		SubscribeHandler:   func(context.Context, *mcp.SubscribeRequest) error { s.subs.Add(1); return nil },
		UnsubscribeHandler: func(context.Context, *mcp.UnsubscribeRequest) error { s.unsubs.Add(1); return nil },
	})
	mcp.AddTool(s.srv, &mcp.Tool{Name: "work"}, func(ctx context.Context, req *mcp.CallToolRequest, in struct {
		Tag    string `json:"tag"`
		Sample bool   `json:"sample"`
	}) (*mcp.CallToolResult, any, error) {
		tok := req.Params.GetProgressToken()
		if tok != nil {
			_ = req.Session.NotifyProgress(ctx, &mcp.ProgressNotificationParams{ProgressToken: tok, Progress: 1, Message: in.Tag})
		}
		_ = req.Session.Log(ctx, &mcp.LoggingMessageParams{Meta: mcp.Meta{"progressToken": tok}, Level: "info", Data: in.Tag})
		reply := ""
		if in.Sample {
			res, err := req.Session.CreateMessage(ctx, &mcp.CreateMessageParams{Meta: mcp.Meta{"progressToken": tok}, MaxTokens: 1,
				Messages: []*mcp.SamplingMessage{{Role: "user", Content: &mcp.TextContent{Text: in.Tag}}}})
			if err != nil {
				return nil, nil, err
			}
			reply = res.Content.(*mcp.TextContent).Text
		}
		return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: in.Tag + "|" + reply}}}, nil, nil
	})
	mcp.AddTool(s.srv, &mcp.Tool{Name: "block"}, func(ctx context.Context, _ *mcp.CallToolRequest, _ struct{}) (*mcp.CallToolResult, any, error) {
		s.started <- struct{}{}
		<-ctx.Done()
		s.cancelled <- struct{}{}
		return nil, nil, ctx.Err()
	})
	mcp.AddTool(s.srv, &mcp.Tool{Name: "ask"}, func(ctx context.Context, req *mcp.CallToolRequest, _ struct{}) (*mcp.CallToolResult, any, error) {
		// A sampling request that names no request of the gateway's.
		_, err := req.Session.CreateMessage(ctx, &mcp.CreateMessageParams{MaxTokens: 1,
			Messages: []*mcp.SamplingMessage{{Role: "user", Content: &mcp.TextContent{Text: "whose?"}}}})
		text := "answered"
		if err != nil {
			text = "refused: " + err.Error()
		}
		return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: text}}}, nil, nil
	})
	mcp.AddTool(s.srv, &mcp.Tool{Name: "touch"}, func(ctx context.Context, _ *mcp.CallToolRequest, in struct {
		URI string `json:"uri"`
	}) (*mcp.CallToolResult, any, error) {
		return &mcp.CallToolResult{}, nil, s.srv.ResourceUpdated(ctx, &mcp.ResourceUpdatedNotificationParams{URI: in.URI})
	})
	s.srv.AddResource(&mcp.Resource{URI: "res://a", Name: "a"}, func(context.Context, *mcp.ReadResourceRequest) (*mcp.ReadResourceResult, error) {
		return &mcp.ReadResourceResult{}, nil
	})
	inner, err := inproc.New(inproc.Options{Server: func(context.Context, *core.SessionInfo) *mcp.Server {
		s.opens.Add(1)
		return s.srv
	}}, "t", nil)
	if err != nil {
		t.Fatal(err)
	}
	mk := func(o Options) *Upstream {
		u := New(inner, o)
		t.Cleanup(func() { _ = u.Close() })
		return u
	}
	return s, mk(Options{Share: "route"}), mk
}

// sink records what a session gets outside its requests.
type sink struct {
	mu     sync.Mutex
	got    []*core.Message
	closed error
	ch     chan *core.Message
}

func newSink() *sink { return &sink{ch: make(chan *core.Message, 64)} }

func (s *sink) Deliver(m *core.Message) {
	s.mu.Lock()
	s.got = append(s.got, m)
	s.mu.Unlock()
	s.ch <- m
}

func (s *sink) Closed(err error) { s.mu.Lock(); s.closed = err; s.mu.Unlock() }

func msg(t *testing.T, format string, args ...any) *core.Message {
	t.Helper()
	m, err := core.Decode([]byte(fmt.Sprintf(format, args...)))
	if err != nil {
		t.Fatal(err)
	}
	m.Direction, m.Era = core.ClientToServer, core.EraLegacy
	return m
}

const caps = `{"sampling":{}}`

// session opens and initializes one client session.
func session(t *testing.T, u *Upstream, principal, version, capabilities string) (upstream.Conn, *sink) {
	t.Helper()
	ctx := context.Background()
	sk := newSink()
	c, err := u.Open(ctx, upstream.OpenParams{Session: &core.SessionInfo{ID: principal + version, Principal: principal}, Era: core.EraLegacy}, sk)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close(context.Background()) })
	resp, err := c.RoundTrip(ctx, msg(t, `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":%q,"capabilities":%s,"clientInfo":{"name":"c","version":"1"}}}`, version, capabilities), nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.ID != "1" || resp.Kind != core.KindResponse {
		t.Fatalf("initialize: %s", resp.Raw)
	}
	if err := c.Send(ctx, msg(t, `{"jsonrpc":"2.0","method":"notifications/initialized"}`)); err != nil {
		t.Fatal(err)
	}
	return c, sk
}

// TestShareKeys: sessions of one scope and one initialize share a server
// session; another version, other capabilities or (share: principal)
// another principal get their own; max_shared opens more.
func TestShareKeys(t *testing.T) {
	t.Parallel()
	s, u, mk := newServer(t)
	session(t, u, "alice", "2025-06-18", caps)
	session(t, u, "bob", "2025-06-18", `{ "sampling" : { } }`)
	if n := s.opens.Load(); n != 1 {
		t.Fatalf("server sessions = %d, want 1", n)
	}
	session(t, u, "alice", "2025-11-25", caps)
	session(t, u, "alice", "2025-06-18", `{"roots":{}}`)
	if n := s.opens.Load(); n != 3 {
		t.Fatalf("server sessions = %d, want 3 (version and capabilities keep them apart)", n)
	}
	p := mk(Options{Share: "principal", MaxShared: 2})
	session(t, p, "alice", "2025-06-18", caps)
	session(t, p, "bob", "2025-06-18", caps)
	session(t, p, "alice", "2025-06-18", caps)
	session(t, p, "alice", "2025-06-18", caps)
	if n := s.opens.Load(); n != 6 {
		t.Fatalf("server sessions = %d, want 6 (alice twice for max_shared 2, bob once)", n)
	}
	if conns, sessions := p.Shared(); conns != 3 || sessions != 4 {
		t.Fatalf("Shared() = %d, %d; want 3, 4", conns, sessions)
	}
}

// TestShareRouting: two sessions send the same id with the same progress
// token at once; each gets its own response and progress, and its own
// sampling request, which the other cannot answer.
func TestShareRouting(t *testing.T) {
	t.Parallel()
	_, u, _ := newServer(t)
	a, sa := session(t, u, "a", "2025-06-18", caps)
	b, sb := session(t, u, "b", "2025-06-18", caps)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	for _, c := range []struct {
		tag   string
		conn  upstream.Conn
		other upstream.Conn
		sink  *sink
	}{{"A", a, b, sa}, {"B", b, a, sb}} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var progress atomic.Int32
			related := func(m *core.Message) {
				switch {
				case m.Method == "notifications/progress":
					if string(m.ProgressToken) != `"tok"` || !strings.Contains(string(m.Params), `"message":"`+c.tag+`"`) {
						t.Errorf("%s got progress %s", c.tag, m.Raw)
					}
					progress.Add(1)
				case m.Method == "sampling/createMessage":
					if !strings.Contains(string(m.Params), `"text":"`+c.tag+`"`) || !strings.Contains(string(m.Params), `"progressToken":"tok"`) {
						t.Errorf("%s got sampling %s", c.tag, m.Raw)
					}
					// The other session's answer is dropped; this one's goes through.
					_ = c.other.Send(ctx, msg(t, `{"jsonrpc":"2.0","id":%s,"result":{"role":"assistant","model":"m","content":{"type":"text","text":"wrong"}}}`, m.ID))
					_ = c.conn.Send(ctx, msg(t, `{"jsonrpc":"2.0","id":%s,"result":{"role":"assistant","model":"m","content":{"type":"text","text":"ok-%s"}}}`, m.ID, c.tag))
				default:
					t.Errorf("%s got %s", c.tag, m.Raw)
				}
			}
			// What the server sends outside the call's own delivery (a
			// request while both sessions have calls in flight) comes
			// through the Sink.
			done := make(chan struct{})
			defer close(done)
			go func() {
				for {
					select {
					case m := <-c.sink.ch:
						related(m)
					case <-done:
						return
					}
				}
			}()
			resp, err := c.conn.RoundTrip(ctx, msg(t, `{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"work","arguments":{"tag":%q,"sample":true},"_meta":{"progressToken":"tok"}}}`, c.tag), related)
			if err != nil {
				t.Errorf("%s: %v", c.tag, err)
				return
			}
			if resp.ID != "7" || !strings.Contains(string(resp.Result), c.tag+"|ok-"+c.tag) {
				t.Errorf("%s: response %s", c.tag, resp.Raw)
			}
			if progress.Load() != 1 {
				t.Errorf("%s: %d progress notifications, want 1", c.tag, progress.Load())
			}
		}()
	}
	wg.Wait()
}

// TestShareSubscriptions: the server is subscribed once for two
// subscribers and unsubscribed when the last leaves; an update reaches
// subscribers only; logging/setLevel is answered per session.
func TestShareSubscriptions(t *testing.T) {
	t.Parallel()
	s, u, _ := newServer(t)
	a, sa := session(t, u, "a", "2025-06-18", caps)
	b, sb := session(t, u, "b", "2025-06-18", caps)
	c, sc := session(t, u, "c", "2025-06-18", caps)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	call := func(conn upstream.Conn, id int, method, params string) *core.Message {
		t.Helper()
		resp, err := conn.RoundTrip(ctx, msg(t, `{"jsonrpc":"2.0","id":%d,"method":%q,"params":%s}`, id, method, params), nil)
		if err != nil {
			t.Fatal(err)
		}
		if resp.ID != core.ID(fmt.Sprint(id)) || resp.Kind != core.KindResponse {
			t.Fatalf("%s: %s", method, resp.Raw)
		}
		return resp
	}
	call(a, 2, "resources/subscribe", `{"uri":"res://a"}`)
	call(b, 2, "resources/subscribe", `{"uri":"res://a"}`)
	if n := s.subs.Load(); n != 1 {
		t.Fatalf("upstream subscribes = %d, want 1", n)
	}
	call(c, 3, "tools/call", `{"name":"touch","arguments":{"uri":"res://a"}}`)
	for _, sk := range []*sink{sa, sb} {
		select {
		case m := <-sk.ch:
			if m.Method != "notifications/resources/updated" {
				t.Fatalf("subscriber got %s", m.Raw)
			}
		case <-ctx.Done():
			t.Fatal("a subscriber got no update")
		}
	}
	call(a, 4, "resources/unsubscribe", `{"uri":"res://a"}`)
	if n := s.unsubs.Load(); n != 0 {
		t.Fatalf("upstream unsubscribes = %d with a subscriber left, want 0", n)
	}
	call(b, 4, "resources/unsubscribe", `{"uri":"res://a"}`)
	if n := s.unsubs.Load(); n != 1 {
		t.Fatalf("upstream unsubscribes = %d, want 1", n)
	}
	sc.mu.Lock()
	if len(sc.got) != 0 {
		t.Errorf("the non-subscriber got %s", sc.got[0].Raw)
	}
	sc.mu.Unlock()
	call(a, 5, "logging/setLevel", `{"level":"debug"}`)
	call(b, 5, "logging/setLevel", `{"level":"error"}`)
}

// TestShareClose: the real Conn closes with its last session, and the
// pool opens a new one for the next.
func TestShareClose(t *testing.T) {
	t.Parallel()
	s, u, _ := newServer(t)
	a, _ := session(t, u, "a", "2025-06-18", caps)
	b, _ := session(t, u, "b", "2025-06-18", caps)
	_ = a.Close(context.Background())
	if conns, n := u.Shared(); conns != 1 || n != 1 {
		t.Fatalf("Shared() = %d, %d after one left; want 1, 1", conns, n)
	}
	_ = b.Close(context.Background())
	if conns, n := u.Shared(); conns != 0 || n != 0 {
		t.Fatalf("Shared() = %d, %d after all left; want 0, 0", conns, n)
	}
	session(t, u, "c", "2025-06-18", caps)
	if n := s.opens.Load(); n != 2 {
		t.Fatalf("server sessions = %d, want 2", n)
	}
	resp, err := a.RoundTrip(context.Background(), msg(t, `{"jsonrpc":"2.0","id":9,"method":"ping"}`), nil)
	if err == nil {
		t.Fatalf("a closed session's request: %s", resp.Raw)
	}
}

func TestFingerprint(t *testing.T) {
	t.Parallel()
	a, _ := fingerprint(json.RawMessage(`{"protocolVersion":"2025-06-18","capabilities":{"a":{},"b":{"x":1}}}`))
	b, _ := fingerprint(json.RawMessage(`{"capabilities":{"b":{"x":1},"a":{}},"protocolVersion":"2025-06-18","clientInfo":{"name":"other"}}`))
	c, _ := fingerprint(json.RawMessage(`{"protocolVersion":"2025-06-18","capabilities":{"a":{}}}`))
	if a != b || a == c {
		t.Fatalf("fingerprints %s %s %s: want the first two equal, the third different", a, b, c)
	}
	if _, err := fingerprint(json.RawMessage(`[1]`)); err == nil {
		t.Fatal("want an error for params that are not an object")
	}
}

// TestShareLogLevels: each session gets the log messages at or above its
// own level, whatever level the shared upstream runs at.
func TestShareLogLevels(t *testing.T) {
	t.Parallel()
	_, u, _ := newServer(t)
	quiet, sq := session(t, u, "q", "2025-06-18", caps)
	loud, sl := session(t, u, "l", "2025-06-18", caps)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, c := range []struct {
		conn  upstream.Conn
		level string
	}{{quiet, "error"}, {loud, "debug"}} {
		resp, err := c.conn.RoundTrip(ctx, msg(t, `{"jsonrpc":"2.0","id":1,"method":"logging/setLevel","params":{"level":%q}}`, c.level), nil)
		if err != nil || resp.Kind != core.KindResponse {
			t.Fatalf("setLevel %s: %v %v", c.level, resp, err)
		}
	}
	for _, c := range []struct {
		tag  string
		conn upstream.Conn
	}{{"Q", quiet}, {"L", loud}} {
		var logs []string
		related := func(m *core.Message) {
			if m.Method == "notifications/message" {
				logs = append(logs, string(m.Params))
			}
		}
		if _, err := c.conn.RoundTrip(ctx, msg(t, `{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"work","arguments":{"tag":%q,"sample":false},"_meta":{"progressToken":"p"}}}`, c.tag), related); err != nil {
			t.Fatal(err)
		}
		for _, sk := range []*sink{sq, sl} {
			sk.mu.Lock()
			for _, m := range sk.got {
				logs = append(logs, "sink:"+string(m.Params))
			}
			sk.got = nil
			sk.mu.Unlock()
		}
		want := 0
		if c.tag == "L" {
			want = 1
		}
		if len(logs) != want || want == 1 && !strings.Contains(logs[0], `"data":"L"`) {
			t.Errorf("session %s got logs %q, want %d of its own", c.tag, logs, want)
		}
	}
}

// TestShareCancel: a client's notifications/cancelled reaches the server
// under the upstream's id of its request.
func TestShareCancel(t *testing.T) {
	t.Parallel()
	s, u, _ := newServer(t)
	a, _ := session(t, u, "a", "2025-06-18", caps)
	session(t, u, "b", "2025-06-18", caps)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	callCtx, stop := context.WithCancel(ctx)
	defer stop()
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, _ = a.RoundTrip(callCtx, msg(t, `{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"block","arguments":{}}}`), nil)
	}()
	// Sent until the call is in flight upstream (before, there is
	// nothing to cancel and it is dropped).
	for sent := false; !sent; {
		if err := a.Send(ctx, msg(t, `{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":5}}`)); err != nil {
			t.Fatal(err)
		}
		select {
		case <-s.cancelled:
			sent = true
		case <-time.After(20 * time.Millisecond):
		case <-ctx.Done():
			t.Fatal("the server never saw the cancellation")
		}
	}
	stop()
	<-done
}

// TestShareTap: what the multiplexer sends on its own is tapped: one
// notifications/initialized for two sessions, and the unsubscribe of a
// resource whose only subscriber left while another session stays.
func TestShareTap(t *testing.T) {
	t.Parallel()
	s, _, mk := newServer(t)
	tapped := make(chan string, 16)
	u := mk(Options{Share: "route", Tap: func(_ context.Context, _ *core.SessionInfo, m *core.Message) {
		if m.Direction == core.ClientToServer {
			tapped <- m.Method
		}
	}})
	a, _ := session(t, u, "a", "2025-06-18", caps)
	session(t, u, "b", "2025-06-18", caps)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if resp, err := a.RoundTrip(ctx, msg(t, `{"jsonrpc":"2.0","id":2,"method":"resources/subscribe","params":{"uri":"res://a"}}`), nil); err != nil || resp.Kind != core.KindResponse {
		t.Fatalf("subscribe: %v %v", resp, err)
	}
	_ = a.Close(ctx)
	for _, want := range []string{"notifications/initialized", "resources/unsubscribe"} {
		select {
		case got := <-tapped:
			if got != want {
				t.Fatalf("tapped %q, want %q", got, want)
			}
		case <-ctx.Done():
			t.Fatalf("%s was not tapped", want)
		}
	}
	for s.unsubs.Load() != 1 && ctx.Err() == nil {
		time.Sleep(time.Millisecond)
	}
	if n := s.unsubs.Load(); n != 1 {
		t.Fatalf("upstream unsubscribes = %d, want 1", n)
	}
}

// TestShareUnattributable: a server request that names no request, sent
// while several sessions have calls in flight, reaches none of them: the
// server gets an error.
func TestShareUnattributable(t *testing.T) {
	t.Parallel()
	s, u, _ := newServer(t)
	a, sa := session(t, u, "a", "2025-06-18", caps)
	b, sb := session(t, u, "b", "2025-06-18", caps)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	blockCtx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, _ = b.RoundTrip(blockCtx, msg(t, `{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"block","arguments":{}}}`), nil)
	}()
	select {
	case <-s.started: // b's call is in flight at the server
	case <-ctx.Done():
		t.Fatal("the blocking call never started")
	}
	var got []string
	resp, err := a.RoundTrip(ctx, msg(t, `{"jsonrpc":"2.0","id":6,"method":"tools/call","params":{"name":"ask","arguments":{}}}`), func(m *core.Message) {
		got = append(got, m.Method)
	})
	stop()
	<-done
	if err != nil || !strings.Contains(string(resp.Result), "refused") {
		t.Fatalf("ask: %v %v, want the server's request refused", resp, err)
	}
	for _, sk := range []*sink{sa, sb} {
		sk.mu.Lock()
		for _, m := range sk.got {
			got = append(got, m.Method)
		}
		sk.mu.Unlock()
	}
	if len(got) != 0 {
		t.Fatalf("the sessions got %q, want nothing", got)
	}
}
