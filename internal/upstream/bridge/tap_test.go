package bridge_test

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

	"github.com/google/go-cmp/cmp"

	"github.com/mcpgate/mcpgate/internal/core"
	"github.com/mcpgate/mcpgate/internal/testutil/conformancefixture"
	"github.com/mcpgate/mcpgate/internal/upstream"
	"github.com/mcpgate/mcpgate/internal/upstream/bridge"
	"github.com/mcpgate/mcpgate/internal/upstream/httpup"
)

// tapped is what a Tap saw of one message.
type tapped struct {
	Dir    core.Direction
	Kind   core.Kind
	Method string
	ID     core.ID
	Raw    string
}

func (m tapped) String() string { return m.Dir.String() + " " + m.Kind.String() + " " + m.Method }

// tapRecorder is a Tap that keeps what it sees and wakes waiters.
type tapRecorder struct {
	t    *testing.T
	sess *core.SessionInfo

	mu   sync.Mutex
	seen []tapped
	more chan struct{} // signalled, without blocking, on every message
}

func newTapRecorder(t *testing.T, sess *core.SessionInfo) *tapRecorder {
	return &tapRecorder{t: t, sess: sess, more: make(chan struct{}, 1)}
}

func (r *tapRecorder) tap(_ context.Context, s *core.SessionInfo, m *core.Message) {
	if s != r.sess || m.Session != r.sess {
		r.t.Errorf("tapped %s for session %p (message %p), want %p", m.Raw, s, m.Session, r.sess)
	}
	r.mu.Lock()
	r.seen = append(r.seen, tapped{Dir: m.Direction, Kind: m.Kind, Method: m.Method, ID: m.ID, Raw: string(m.Raw)})
	r.mu.Unlock()
	select {
	case r.more <- struct{}{}:
	default:
	}
}

// take returns what was tapped since the last take.
func (r *tapRecorder) take() []tapped {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := r.seen
	r.seen = nil
	return out
}

// expect checks that what was tapped since the last take is want (by
// direction, kind and method, in order), waiting for messages still to
// come (a Tap runs on the goroutine that sends them).
func (r *tapRecorder) expect(t *testing.T, want ...string) []tapped {
	t.Helper()
	deadline := time.After(loWait)
	for {
		r.mu.Lock()
		n := len(r.seen)
		r.mu.Unlock()
		if n >= len(want) {
			break
		}
		select {
		case <-r.more:
		case <-deadline:
			t.Fatalf("tapped %v; want %v", r.take(), want)
		}
	}
	got := r.take()
	var names []string
	for _, m := range got {
		names = append(names, m.String())
	}
	if diff := cmp.Diff(want, names); diff != "" {
		t.Fatalf("tapped (-want +got):\n%s", diff)
	}
	return got
}

// arrival signals when a POST whose body contains mark arrives (the
// request is in flight: cancelling it now abandons it).
type arrival struct {
	next http.Handler
	mark []byte
	once sync.Once
	seen chan struct{}
}

func (a *arrival) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodPost {
		body, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytes.NewReader(body))
		if bytes.Contains(body, a.mark) {
			a.once.Do(func() { close(a.seen) })
		}
	}
	a.next.ServeHTTP(w, r)
}

// tapUpstream serves the conformance fixture (stateless: the modern era;
// with sessions: the legacy era) and puts one Tap on both the HTTP
// upstream and the bridge over it, pinned to era.
func tapUpstream(t *testing.T, stateless bool, era core.Era, tap upstream.Tap) (*bridge.Upstream, *arrival) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	a := &arrival{next: conformancefixture.Handler(ctx, stateless), mark: []byte("test_wait_for_cancellation"), seen: make(chan struct{})}
	srv := httptest.NewServer(a)
	t.Cleanup(func() { cancel(); srv.Close() })
	inner, err := httpup.New(httpup.Options{URL: srv.URL + "/", Tap: tap}, "fixture", nil)
	if err != nil {
		t.Fatal(err)
	}
	u := bridge.New(inner, bridge.Options{Era: era, Tap: tap, StateKey: []byte("0123456789abcdef0123456789abcdef")})
	t.Cleanup(func() { _ = u.Close() })
	return u, a
}

// cancelWaiting starts a call of test_wait_for_cancellation, cancels it
// once the server has it, and waits for RoundTrip to give up.
func cancelWaiting(t *testing.T, conn upstream.Conn, a *arrival, req *core.Message) {
	t.Helper()
	ctx, cancel := context.WithCancel(loCtx(t))
	defer cancel()
	done := make(chan error, 1)
	go func() {
		_, err := conn.RoundTrip(ctx, req, nil)
		done <- err
	}()
	select {
	case <-a.seen:
	case <-time.After(loWait):
		t.Fatal("the call never reached the server")
	}
	cancel()
	if err := <-done; err == nil {
		t.Fatal("the cancelled call succeeded")
	}
}

// TestTapSameEra: a legacy client of a legacy server is served by the
// inner Conn as it is; its own traffic is never tapped, while the
// notifications/cancelled httpup sends for the abandoned call is.
func TestTapSameEra(t *testing.T) {
	t.Parallel()
	rec := newTapRecorder(t, loSession)
	u, a := tapUpstream(t, false, core.EraLegacy, rec.tap)
	conn, err := u.Open(t.Context(), upstream.OpenParams{Session: loSession, Era: core.EraLegacy}, nopSink{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close(context.Background()) })
	e := &loEnv{conn: conn}
	e.initialize(t, core.Version20251125)
	e.call(t, `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"test_simple_text","arguments":{}}}`, nil)
	rec.expect(t) // nothing: all of it was the client's

	cancelWaiting(t, conn, a, loMsg(t, `{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"test_wait_for_cancellation","arguments":{}}}`))
	got := rec.expect(t, "client_to_server notification notifications/cancelled")
	if !strings.Contains(got[0].Raw, `"requestId":2`) {
		t.Fatalf("cancelled %s; want the client's id", got[0].Raw)
	}
}

// TestTapLegacyClientModernServer: what the bridge sends of its own for a
// legacy client — a tools/list refresh and the tools/call sent again after
// a header mismatch, the retry of an input_required call — is tapped with
// its answers; the client's translated requests are not.
func TestTapLegacyClientModernServer(t *testing.T) {
	t.Parallel()
	rec := newTapRecorder(t, loSession)
	u, _ := tapUpstream(t, true, core.EraModern, rec.tap)
	sink := &loSink{msgs: make(chan *core.Message, 64), closed: make(chan error, 4)}
	conn, err := u.Open(t.Context(), upstream.OpenParams{Session: loSession, Era: core.EraLegacy}, sink)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close(context.Background()) })
	e := &loEnv{conn: conn, sink: sink}

	e.initialize(t, core.Version20251125)
	e.call(t, `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"test_simple_text","arguments":{}}}`, nil)
	rec.expect(t) // translated, but the client's

	// An x-mcp-header tool nothing listed yet: refused for the missing
	// header, so the bridge lists the tools and sends the call again.
	resp := e.call(t, `{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"test_x_mcp_header","arguments":{"region":"us-west1"}}}`, nil)
	if got := loText(t, resp); got != "region=us-west1 level=0" {
		t.Fatalf("result %q", got)
	}
	got := rec.expect(t,
		"client_to_server request tools/list", "server_to_client response ",
		"client_to_server request tools/call", "server_to_client response ")
	if !strings.HasPrefix(string(got[0].ID), `"mcpgate-list-`) || got[1].ID != got[0].ID {
		t.Fatalf("tools/list under id %s, answered under %s; want an id of the bridge's", got[0].ID, got[1].ID)
	}

	// input_required: the bridge asks the client, then retries the call
	// with the answers under an id of its own.
	c := &loClient{t: t, conn: conn, answer: func(m *core.Message) string { return loAnswers(m.ID, m.Method, m.Params) }}
	resp = e.call(t, `{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"test_input_required_result_elicitation","arguments":{}}}`, c.related)
	if got := loText(t, resp); got != "Hello, Ada!" {
		t.Fatalf("result %q", got)
	}
	got = rec.expect(t, "client_to_server request tools/call", "server_to_client response ")
	if !strings.HasPrefix(string(got[0].ID), `"mcpgate-retry-`) || !strings.Contains(got[0].Raw, `"inputResponses"`) || got[1].ID != got[0].ID {
		t.Fatalf("retry %s answered by %s", got[0].Raw, got[1].Raw)
	}
}

// TestTapModernClientLegacyServer: for a modern client the bridge opens a
// legacy session of its own (initialize, notifications/initialized), sends
// the client's MRTR answers as responses to the server's requests, and
// httpup cancels an abandoned call; all of it is tapped, the client's
// calls are not.
func TestTapModernClientLegacyServer(t *testing.T) {
	t.Parallel()
	sess := &core.SessionInfo{ID: "sess-tap", Principal: "alice", Era: core.EraModern, ProtocolVersion: core.Version20260728}
	rec := newTapRecorder(t, sess)
	u, a := tapUpstream(t, false, core.EraLegacy, rec.tap)
	conn, err := u.Open(t.Context(), upstream.OpenParams{Session: sess, Era: core.EraModern}, nopSink{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close(context.Background()) })
	ctx := loCtx(t)
	const caps = `{"sampling":{}}`

	if _, err := conn.RoundTrip(ctx, modernRequest(t, 1, "server/discover", nil, caps), nil); err != nil {
		t.Fatal(err)
	}
	got := rec.expect(t, "client_to_server request initialize", "server_to_client response ",
		"client_to_server notification notifications/initialized")
	if got[0].ID != got[1].ID {
		t.Fatalf("initialize %s answered under %s", got[0].ID, got[1].ID)
	}
	if _, err := conn.RoundTrip(ctx, modernRequest(t, 2, "tools/call", map[string]any{"name": "test_simple_text"}, caps), nil); err != nil {
		t.Fatal(err)
	}
	rec.expect(t) // the client's call, translated

	// MRTR: the server's sampling request becomes input_required; the
	// retry's answer goes upstream as the bridge's response.
	resp, err := conn.RoundTrip(ctx, modernRequest(t, 3, "tools/call", map[string]any{
		"name": "test_sampling", "arguments": map[string]any{"prompt": "Capital of France?"},
	}, caps), nil)
	if err != nil {
		t.Fatal(err)
	}
	var ir struct {
		InputRequests map[string]json.RawMessage `json:"inputRequests"`
		RequestState  string                     `json:"requestState"`
	}
	if err := json.Unmarshal(resp.Result, &ir); err != nil || len(ir.InputRequests) != 1 {
		t.Fatalf("first answer %s", resp.Result)
	}
	rec.expect(t) // the question reached the client, in its result
	answers := map[string]any{}
	for k := range ir.InputRequests {
		answers[k] = map[string]any{"role": "assistant", "content": map[string]any{"type": "text", "text": "Paris"}, "model": "m", "stopReason": "endTurn"}
	}
	resp, err = conn.RoundTrip(ctx, modernRequest(t, 4, "tools/call", map[string]any{
		"name": "test_sampling", "arguments": map[string]any{"prompt": "Capital of France?"},
		"requestState": ir.RequestState, "inputResponses": answers,
	}, caps), nil)
	if err != nil || !strings.Contains(string(resp.Result), "Paris") {
		t.Fatalf("retry: %v %v", resp, err)
	}
	got = rec.expect(t, "client_to_server response ")
	if !strings.Contains(got[0].Raw, `"Paris"`) {
		t.Fatalf("answer upstream %s", got[0].Raw)
	}

	// The client gives up on a call: httpup tells the server, under the
	// id the call has upstream.
	cancelWaiting(t, conn, a, modernRequest(t, 5, "tools/call", map[string]any{"name": "test_wait_for_cancellation"}, caps))
	got = rec.expect(t, "client_to_server notification notifications/cancelled")
	if !strings.Contains(got[0].Raw, `"requestId":"mcpgate-r`) {
		t.Fatalf("cancelled %s; want the bridge's upstream id", got[0].Raw)
	}
}
