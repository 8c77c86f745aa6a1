package frontend

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/internal/core"
	"github.com/mcpgate/mcpgate/internal/session"
	"github.com/mcpgate/mcpgate/internal/upstream"
)

// gatedUpstream is a modern upstream whose Open blocks until release is
// closed, counting the Opens under way.
type gatedUpstream struct {
	mu      sync.Mutex
	opening int
	opened  int
	entered chan struct{} // one send per Open that started
	release chan struct{}
}

func (u *gatedUpstream) Probe(context.Context) (upstream.Info, error) {
	return upstream.Info{Era: core.EraModern, ModernVersions: []string{"2026-07-28"}}, nil
}

func (u *gatedUpstream) Open(ctx context.Context, _ upstream.OpenParams, _ upstream.Sink) (upstream.Conn, error) {
	u.mu.Lock()
	u.opening++
	u.mu.Unlock()
	u.entered <- struct{}{}
	select {
	case <-u.release:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	u.mu.Lock()
	u.opened++
	u.mu.Unlock()
	return echoConn{}, nil
}

func (u *gatedUpstream) Close() error { return nil }

// echoConn answers every request with an empty result.
type echoConn struct{}

func (echoConn) RoundTrip(_ context.Context, req *core.Message, _ upstream.Related) (*core.Message, error) {
	return core.ResultResponse(req.ID, []byte(`{"resultType":"complete"}`)), nil
}
func (echoConn) Send(context.Context, *core.Message) error { return nil }
func (echoConn) Listen(context.Context) error              { return nil }
func (echoConn) UpstreamSession() string                   { return "" }
func (echoConn) Close(context.Context) error               { return nil }

func modernRequest(addr string) *http.Request {
	body := `{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}}}`
	r := httptest.NewRequest(http.MethodPost, "/mcp", strings.NewReader(body))
	r.RemoteAddr = addr
	r.Header.Set("Content-Type", "application/json")
	r.Header.Set("Accept", "application/json, text/event-stream")
	r.Header.Set("MCP-Protocol-Version", "2026-07-28")
	r.Header.Set("Mcp-Method", "tools/list")
	return r
}

func newModernFrontend(t *testing.T, up upstream.Upstream) (*Frontend, *session.Manager) {
	t.Helper()
	mgr := session.NewManager(session.Options{})
	t.Cleanup(func() { mgr.Close(context.Background()) })
	f, err := New(Options{Sessions: mgr}, []*Route{{Name: "r", Path: "/mcp", Clients: EraAuto, Upstream: up}})
	if err != nil {
		t.Fatal(err)
	}
	return f, mgr
}

// TestModernCreationSingleFlight: creating modern sessions for clients at
// different addresses runs in parallel (no route-wide lock across
// admission and Upstream.Open): four Opens are under way at once. Requests
// from one address wait for that address's single creation.
func TestModernCreationSingleFlight(t *testing.T) {
	up := &gatedUpstream{entered: make(chan struct{}, 16), release: make(chan struct{})}
	f, mgr := newModernFrontend(t, up)
	h := f.Handler(ListenerPolicy{})
	var wg sync.WaitGroup
	codes := make(chan int, 8)
	for i := range 4 {
		for range 2 { // two requests per address: one creation
			wg.Go(func() {
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, modernRequest("10.0.0."+string(rune('1'+i))+":1000"))
				codes <- rec.Code
			})
		}
	}
	// Four creations, one per address, all under way before any ends.
	// With a route-wide lock the second Open never starts: fail then
	// instead of hanging.
	guard := time.NewTimer(10 * time.Second)
	defer guard.Stop()
	for n := range 4 {
		select {
		case <-up.entered:
		case <-guard.C:
			t.Fatalf("only %d of 4 session creations under way at once: creation is serialized", n)
		}
	}
	close(up.release)
	wg.Wait()
	close(codes)
	for c := range codes {
		if c != http.StatusOK {
			t.Errorf("status %d; want 200", c)
		}
	}
	if up.opened != 4 || mgr.Len() != 4 {
		t.Fatalf("opened %d upstream connections, %d sessions; want 4 and 4 (one per address)", up.opened, mgr.Len())
	}
}

// TestModernMessagesStayWithTheirRequest: in a modern session shared by
// clients without a key, a server message for a request whose stream is
// gone is dropped, never written to another client's request stream.
func TestModernMessagesStayWithTheirRequest(t *testing.T) {
	f, _ := newModernFrontend(t, &gatedUpstream{})
	g := newGWSession(f, f.routes().byPath["/mcp"], &core.SessionInfo{ID: "s", Era: core.EraModern})
	defer g.cancel()
	recA, recB := httptest.NewRecorder(), httptest.NewRecorder()
	stA := newStream(recA, &f.opts, "1", false)
	stB := newStream(recB, &f.opts, "2", false)
	if err := g.startCall("1", &call{st: stA, cancel: func() {}}); err != nil {
		t.Fatal(err)
	}
	if err := g.startCall("2", &call{st: stB, cancel: func() {}}); err != nil {
		t.Fatal(err)
	}
	stA.close() // client A went away; its call has not ended yet
	progress := mustDecode(t, `{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":"a-secret","progress":1}}`)
	g.write(progress, stA)
	g.write(mustDecode(t, `{"jsonrpc":"2.0","method":"notifications/message","params":{"level":"info","data":"for nobody"}}`), nil)
	stB.finish(mustDecode(t, `{"jsonrpc":"2.0","id":2,"result":{}}`), http.StatusOK)
	if body := recB.Body.String(); strings.Contains(body, "a-secret") || strings.Contains(body, "for nobody") {
		t.Fatalf("client B received a message that was not for its request:\n%s", body)
	}
}
