package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpgate/mcpgate/internal/config"
	"github.com/mcpgate/mcpgate/internal/session"
	"github.com/mcpgate/mcpgate/internal/sse"
	"github.com/mcpgate/mcpgate/internal/testutil/conformancefixture"
	"github.com/mcpgate/mcpgate/internal/testutil/nodetool"
)

const simpleText = "This is a simple text response for testing."

// TestBoundsEvictOldestGoSDK: with sessions.max=2 and evict-oldest, real
// go-sdk clients see the oldest session go (its id answers 404) when a
// third connects, a fourth client connects and works, and the cap is never
// exceeded.
func TestBoundsEvictOldestGoSDK(t *testing.T) {
	t.Parallel()
	g := startGateway(t, func(c *config.Config) { c.Sessions.Max = 2; c.Sessions.WhenFull = "evict-oldest" },
		httpRoute("fixture", "/mcp", fixtureHTTP(t, false)))
	url := g.URL + "/mcp"
	watch := watchGlobalCount(g.Sessions())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	const v = "2025-11-25"
	call := func(cs *mcp.ClientSession) error {
		res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "test_simple_text"})
		if err != nil {
			return err
		}
		if got := textOf(t, res); res.IsError || got != simpleText {
			return fmt.Errorf("unexpected result %q (isError %v)", got, res.IsError)
		}
		return nil
	}
	checkLen := func(step string) {
		t.Helper()
		if n := g.Sessions().Len(); n > 2 {
			t.Fatalf("%s: %d live sessions, cap is 2", step, n)
		}
	}

	var clients []*mcp.ClientSession
	for i := range 3 {
		cs := connectSDK(ctx, t, url, v, nil)
		if err := call(cs); err != nil {
			t.Fatalf("client %d: %v", i+1, err)
		}
		clients = append(clients, cs)
		checkLen(fmt.Sprintf("after client %d", i+1))
	}
	first := clients[0]
	if err := call(first); err == nil {
		t.Fatal("the evicted first client's call succeeded")
	} else {
		t.Logf("evicted client's call: %v", err)
	}
	if r := pingAs(t, url, first.ID(), v); r.Status != http.StatusNotFound || r.Code != -32011 {
		t.Fatalf("raw POST with the evicted session id: %d %s", r.Status, r.Body)
	}
	for i, cs := range clients[1:] {
		if err := call(cs); err != nil {
			t.Fatalf("client %d after the eviction: %v", i+2, err)
		}
	}

	// A new client connects and works; the oldest remaining (client 2) goes.
	fourth := connectSDK(ctx, t, url, v, nil)
	if err := call(fourth); err != nil {
		t.Fatalf("client 4: %v", err)
	}
	checkLen("after client 4")
	if r := pingAs(t, url, clients[1].ID(), v); r.Status != http.StatusNotFound {
		t.Fatalf("client 2 should have been evicted by client 4: %d %s", r.Status, r.Body)
	}
	if err := call(clients[2]); err != nil {
		t.Fatalf("client 3 after client 4 connected: %v", err)
	}
	if n := g.Sessions().Len(); n != 2 {
		t.Errorf("live sessions = %d, want 2", n)
	}
	if m := watch.Max(); m != 2 {
		t.Errorf("largest global count (live plus reserved) = %d, want exactly the cap, 2", m)
	}
}

// TestBoundsEvictOldestTypeScript: the TypeScript SDK client sees its
// evicted session as HTTP 404 and recovers by connecting again.
func TestBoundsEvictOldestTypeScript(t *testing.T) {
	t.Parallel()
	script, nodeRoot := tsEvictedScript(t)
	g := startGateway(t, func(c *config.Config) { c.Sessions.Max = 2; c.Sessions.WhenFull = "evict-oldest" },
		httpRoute("fixture", "/mcp", fixtureHTTP(t, false)))
	url := g.URL + "/mcp"
	watch := watchGlobalCount(g.Sessions())
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	cmd := nodetool.Command(ctx, t, script, url, "test_simple_text")
	cmd.Env = append(cmd.Env, "MCPGATE_NODE_ROOT="+nodeRoot)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr lockedBuffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	lines := make(chan string, 4)
	go func() {
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
		exited <- cmd.Wait()
	}()
	t.Cleanup(func() {
		_ = stdin.Close()
		cancel()
		<-exited
		if t.Failed() {
			t.Logf("evicted.mjs stderr:\n%s", stderr.String())
		}
	})
	type report struct {
		Step, SessionID, ProtocolVersion, Text string
		OK                                     bool
		FirstSessionID, SecondSessionID        string
		EvictedStatus                          int
		EvictedError, Error                    string
		Failures                               []string
	}
	next := func(want string) report {
		t.Helper()
		select {
		case line, ok := <-lines:
			if !ok {
				t.Fatalf("evicted.mjs ended before step %q", want)
			}
			var r report
			if err := json.Unmarshal([]byte(line), &r); err != nil || r.Step != want {
				t.Fatalf("evicted.mjs printed %q, want step %q", line, want)
			}
			return r
		case <-ctx.Done():
			t.Fatalf("evicted.mjs: no step %q before the deadline", want)
		}
		return report{}
	}

	ready := next("ready")
	if ready.Text != simpleText || ready.SessionID == "" {
		t.Fatalf("first call: %+v", ready)
	}
	if _, err := g.Sessions().Get(ready.SessionID); err != nil {
		t.Fatalf("the TypeScript client's session %s is not live: %v", ready.SessionID, err)
	}
	// Two raw sessions: the first fills the cap, the second evicts the
	// TypeScript client's session, the oldest.
	raw1 := sessionAt(t, url, "2025-06-18")
	raw2 := sessionAt(t, url, "2025-06-18")
	if r := pingAs(t, url, ready.SessionID, ready.ProtocolVersion); r.Status != http.StatusNotFound || r.Code != -32011 {
		t.Fatalf("raw POST with the evicted TypeScript session id: %d %s", r.Status, r.Body)
	}
	if _, err := io.WriteString(stdin, "go\n"); err != nil {
		t.Fatal(err)
	}
	done := next("done")
	if !done.OK || len(done.Failures) > 0 {
		t.Fatalf("evicted.mjs failures: %v", done.Failures)
	}
	if done.EvictedStatus != http.StatusNotFound {
		t.Errorf("evicted call failed with status %d (%s), want 404", done.EvictedStatus, done.EvictedError)
	}
	if done.FirstSessionID != ready.SessionID || done.SecondSessionID == "" || done.SecondSessionID == ready.SessionID ||
		done.SecondSessionID == raw1 || done.SecondSessionID == raw2 {
		t.Errorf("session ids: first %q second %q (raw %q %q)", done.FirstSessionID, done.SecondSessionID, raw1, raw2)
	}
	if done.Text != simpleText {
		t.Errorf("call on the new session: %q", done.Text)
	}
	select {
	case err := <-exited:
		exited <- err // for the cleanup
		if err != nil {
			t.Fatalf("evicted.mjs exited: %v", err)
		}
	case <-ctx.Done():
		t.Fatal("evicted.mjs did not exit")
	}
	// The TypeScript client's new session evicted raw1, the oldest then.
	if r := pingAs(t, url, raw1, "2025-06-18"); r.Status != http.StatusNotFound {
		t.Errorf("raw1 should have been evicted: %d %s", r.Status, r.Body)
	}
	if r := pingAs(t, url, raw2, "2025-06-18"); r.Status != http.StatusOK {
		t.Errorf("raw2 should be live: %d %s", r.Status, r.Body)
	}
	if _, err := g.Sessions().Get(done.SecondSessionID); err != nil {
		t.Errorf("the TypeScript client's new session is not live: %v", err)
	}
	if n := g.Sessions().Len(); n != 2 {
		t.Errorf("live sessions = %d, want 2", n)
	}
	if m := watch.Max(); m != 2 {
		t.Errorf("largest global count = %d, want 2", m)
	}
}

// TestBoundsRejectWhenFull: a full cap with the reject policy answers 503
// with Retry-After and -32013 naming the cap; refusals give back their
// creation-rate slots; ending a session makes room; a route cap names its
// route and leaves other routes alone.
func TestBoundsRejectWhenFull(t *testing.T) {
	t.Parallel()
	t.Run("gateway-wide", func(t *testing.T) {
		g := startGateway(t, func(c *config.Config) {
			c.Sessions.Max = 1
			c.Sessions.WhenFull = "reject"
			// Two creations per minute: the second session below is only
			// admitted if none of the refused creations kept its slot.
			c.Sessions.CreationRate.PerAddress = &config.Window{Limit: 2, Window: time.Minute}
		}, httpRoute("fixture", "/mcp", fixtureHTTP(t, false)))
		url := g.URL + "/mcp"
		first := legacySession(t, url)
		for i := range 5 {
			r := do(t, "POST", url, initBody, nil)
			if r.Status != http.StatusServiceUnavailable || r.Code != -32013 {
				t.Fatalf("initialize %d over the cap: %d %s", i+2, r.Status, r.Body)
			}
			if ra := retryAfter(r.Header); ra < 1 {
				t.Errorf("Retry-After = %q, want whole seconds >= 1", r.Header.Get("Retry-After"))
			}
			if !strings.Contains(r.Msg, "gateway-wide") {
				t.Errorf("message %q does not name the gateway-wide cap", r.Msg)
			}
			if string(r.ID) != "1" || r.Header.Get("Mcp-Session-Id") != "" {
				t.Errorf("refusal id %s, Mcp-Session-Id %q", r.ID, r.Header.Get("Mcp-Session-Id"))
			}
			var data struct {
				Cap string `json:"cap"`
				Max int    `json:"max"`
			}
			if json.Unmarshal(r.Data, &data) != nil || data.Cap != "global" || data.Max != 1 {
				t.Errorf("error data = %s", r.Data)
			}
		}
		if n := g.Sessions().Len(); n != 1 {
			t.Fatalf("live sessions = %d, want 1", n)
		}
		if r := pingAs(t, url, first, "2025-06-18"); r.Status != http.StatusOK {
			t.Fatalf("the admitted session was disturbed: %d %s", r.Status, r.Body)
		}
		if r := do(t, "DELETE", url, "", map[string]string{"Mcp-Session-Id": first}); r.Status != http.StatusNoContent {
			t.Fatalf("DELETE: %d %s", r.Status, r.Body)
		}
		second := legacySession(t, url)
		if r := pingAs(t, url, second, "2025-06-18"); r.Status != http.StatusOK {
			t.Fatalf("new session after DELETE: %d %s", r.Status, r.Body)
		}
	})

	t.Run("route", func(t *testing.T) {
		fx := fixtureHTTP(t, false)
		capped := httpRoute("capped", "/capped/mcp", fx)
		capped.MaxSessions = 1
		g := startGateway(t, nil, capped, httpRoute("free", "/free/mcp", fx))
		url := g.URL + "/capped/mcp"
		first := legacySession(t, url)
		r := do(t, "POST", url, initBody, nil)
		if r.Status != http.StatusServiceUnavailable || r.Code != -32013 {
			t.Fatalf("initialize over the route cap: %d %s", r.Status, r.Body)
		}
		if retryAfter(r.Header) < 1 {
			t.Errorf("Retry-After = %q", r.Header.Get("Retry-After"))
		}
		if !strings.Contains(r.Msg, `route "capped"`) || strings.Contains(r.Msg, "gateway-wide") {
			t.Errorf("message %q does not name the route cap", r.Msg)
		}
		var data struct {
			Cap string `json:"cap"`
			Max int    `json:"max"`
		}
		if json.Unmarshal(r.Data, &data) != nil || data.Cap != "route" || data.Max != 1 {
			t.Errorf("error data = %s", r.Data)
		}
		// Other routes are not capped by it.
		for range 2 {
			legacySession(t, g.URL+"/free/mcp")
		}
		if r := do(t, "DELETE", url, "", map[string]string{"Mcp-Session-Id": first}); r.Status != http.StatusNoContent {
			t.Fatalf("DELETE: %d %s", r.Status, r.Body)
		}
		legacySession(t, url)
		if n := g.Sessions().Len(); n != 3 {
			t.Errorf("live sessions = %d, want 3", n)
		}
	})
}

// TestBoundsCreationRate: sessions.creation_rate.per_address refuses the
// fourth creation in the window with 429, Retry-After and -32012; creations
// that fail after admission (an unreachable upstream) give their slot back.
func TestBoundsCreationRate(t *testing.T) {
	t.Parallel()
	down := httpRoute("down", "/down/mcp", "http://127.0.0.1:1/")
	down.Upstream.Era = config.EraLegacy
	g := startGateway(t, func(c *config.Config) {
		c.Sessions.CreationRate.PerAddress = &config.Window{Limit: 3, Window: time.Minute}
	}, httpRoute("good", "/mcp", fixtureHTTP(t, false)), down)
	good, bad := g.URL+"/mcp", g.URL+"/down/mcp"

	for i := range 5 {
		if r := do(t, "POST", bad, initBody, nil); r.Status != http.StatusBadGateway || r.Code != -32010 {
			t.Fatalf("initialize %d at an unreachable upstream: %d %s", i+1, r.Status, r.Body)
		}
	}
	for i := range 3 {
		r := do(t, "POST", good, initBody, nil)
		if r.Status != http.StatusOK || r.Header.Get("Mcp-Session-Id") == "" {
			t.Fatalf("initialize %d (after 5 failed creations) was refused: %d %s", i+1, r.Status, r.Body)
		}
	}
	for _, url := range []string{good, bad} {
		r := do(t, "POST", url, initBody, nil)
		if r.Status != http.StatusTooManyRequests || r.Code != -32012 {
			t.Fatalf("fourth creation in the window at %s: %d %s", url, r.Status, r.Body)
		}
		if ra := retryAfter(r.Header); ra < 1 || ra > 60 {
			t.Errorf("Retry-After = %q, want 1..60 seconds", r.Header.Get("Retry-After"))
		}
		if !strings.Contains(r.Msg, "per client address") || r.Header.Get("Mcp-Session-Id") != "" {
			t.Errorf("refusal: %s (Mcp-Session-Id %q)", r.Body, r.Header.Get("Mcp-Session-Id"))
		}
	}
	if n := g.Sessions().Len(); n != 3 {
		t.Errorf("live sessions = %d, want 3", n)
	}
}

// TestBoundsRequestRate: sessions.request_rate is a token bucket per client
// address, not per session: once empty, requests get 429 with Retry-After
// and -32012, and a new session from the same address gets no new tokens.
//
// initialize is a request like any other and takes a token, so with burst
// 2 the session's first ping is the last one admitted. The bucket refills
// at one token per 1000 s there, so that what is counted does not depend on
// how fast the machine is; the refill itself is checked at 1/s on a gateway
// of its own.
func TestBoundsRequestRate(t *testing.T) {
	t.Parallel()
	const perToken = 1000 // seconds
	g := startGateway(t, func(c *config.Config) {
		c.Sessions.RequestRate = config.RequestRate{PerSecond: 1.0 / perToken, Burst: 2}
	}, httpRoute("fixture", "/mcp", fixtureHTTP(t, false)))
	url := g.URL + "/mcp"
	const v = "2025-06-18"
	id := sessionAt(t, url, v) // initialize: token 1; notifications are not limited
	// Ping until the bucket refuses (a -32012 error, whatever the status).
	var admitted int
	var refused rawResp
	for range 3 {
		r := pingAs(t, url, id, v)
		if r.Code == -32012 {
			refused = r
			break
		}
		if r.Status != http.StatusOK || !strings.Contains(r.Body, `"result"`) {
			t.Fatalf("ping: %d %s", r.Status, r.Body)
		}
		admitted++
	}
	if refused.Code != -32012 || admitted != 1 {
		t.Fatalf("%d pings admitted before a refusal (%s), want 1: burst 2, and initialize took one token", admitted, refused.Body)
	}
	if refused.Status != http.StatusTooManyRequests {
		t.Errorf("a request over the rate got HTTP %d, want 429: %s", refused.Status, refused.Body)
	}
	if string(refused.ID) != `"p"` || !strings.Contains(refused.Msg, "rate limit") {
		t.Errorf("refusal: %s", refused.Body)
	}
	// One token's time, less the little that has refilled since the
	// bucket emptied (a test that took minutes would be broken anyway).
	if ra := retryAfter(refused.Header); ra < perToken-60 || ra > perToken {
		t.Errorf("Retry-After = %q, want about %d (one token at 1/%ds)", refused.Header.Get("Retry-After"), perToken, perToken)
	}

	// A new session does not refill the bucket: its initialize, the new
	// session's first request, is refused too, and no session is created.
	r := do(t, "POST", url, initBody, nil)
	if r.Status != http.StatusTooManyRequests || r.Code != -32012 {
		t.Fatalf("initialize from the same address with an empty bucket: %d %s", r.Status, r.Body)
	}
	if r.Header.Get("Mcp-Session-Id") != "" {
		t.Errorf("refused initialize carries Mcp-Session-Id %q", r.Header.Get("Mcp-Session-Id"))
	}
	if ra := retryAfter(r.Header); ra < 1 {
		t.Errorf("refused initialize: Retry-After = %q, want whole seconds >= 1", r.Header.Get("Retry-After"))
	}
	if n := g.Sessions().Len(); n != 1 {
		t.Errorf("live sessions = %d, want 1", n)
	}

	// The bucket refills with time, not with sessions: at 1/s with burst 1,
	// once a ping is refused, the session is served again after
	// Retry-After (1 s: one token at 1/s).
	fast := startGateway(t, func(c *config.Config) {
		c.Sessions.RequestRate = config.RequestRate{PerSecond: 1, Burst: 1}
	}, httpRoute("fixture", "/mcp", fixtureHTTP(t, false)))
	furl := fast.URL + "/mcp"
	fid := sessionAt(t, furl, v)
	refused = rawResp{}
	for range 20 { // a refill between two pings only means one more try
		if r := pingAs(t, furl, fid, v); r.Code == -32012 {
			refused = r
			break
		}
	}
	if refused.Code != -32012 {
		t.Fatal("20 pings at 1/s with burst 1 were never refused")
	}
	if ra := retryAfter(refused.Header); ra != 1 {
		t.Errorf("Retry-After = %q, want 1 (one token at 1/s)", refused.Header.Get("Retry-After"))
	}
	time.Sleep(time.Duration(max(retryAfter(refused.Header), 1)) * time.Second)
	if r := pingAs(t, furl, fid, v); r.Status != http.StatusOK {
		t.Fatalf("after Retry-After: %d %s", r.Status, r.Body)
	}
}

type progressParams struct {
	ProgressToken string  `json:"progressToken"`
	Progress      float64 `json:"progress"`
	Total         float64 `json:"total"`
}

type sseMsg struct {
	ID     json.RawMessage `json:"id"`
	Method string          `json:"method"`
	Params json.RawMessage `json:"params"`
	Result *struct {
		Content []struct {
			Text string `json:"text"`
		} `json:"content"`
	} `json:"result"`
	Error json.RawMessage `json:"error"`
}

// TestBoundsResumeExactly: a 2025-11-25 client that drops a tools/call
// stream after the first progress notification resumes it with GET and
// Last-Event-ID and gets exactly the rest: no duplicate, no gap, then the
// response, then the end of the stream. Resuming a forgotten or unknown
// stream is 410; a malformed Last-Event-ID is 400.
func TestBoundsResumeExactly(t *testing.T) {
	t.Parallel()
	route := stdioRoute("echo", "/mcp", buildEchoServer(t))
	route.Upstream.Era = config.EraLegacy
	g := startGateway(t, nil, route)
	url := g.URL + "/mcp"
	const v = "2025-11-25"
	id := sessionAt(t, url, v)
	h := sessHdr(id, v)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	const from = 6
	resp := openStream(t, ctx, "POST", url, `{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"countdown","arguments":{"from":`+strconv.Itoa(from)+`},"_meta":{"progressToken":"cd"}}}`, h)
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("tools/call: %d %s %s", resp.StatusCode, resp.Header.Get("Content-Type"), b)
	}
	rd := sse.NewReader(resp.Body, 0)
	priming, err := rd.Next()
	if err != nil || !priming.HasID || len(priming.Data) != 0 {
		t.Fatalf("first event is not a priming event: %+v %v", priming, err)
	}
	streamID, seq0, ok := strings.Cut(priming.ID, "_")
	if !ok || seq0 != "0" {
		t.Fatalf("priming event id %q", priming.ID)
	}
	ev, err := rd.Next()
	if err != nil || !ev.HasID {
		t.Fatalf("second event: %+v %v", ev, err)
	}
	lastID := ev.ID
	var first sseMsg
	var p progressParams
	if err := json.Unmarshal(ev.Data, &first); err != nil || first.Method != "notifications/progress" ||
		json.Unmarshal(first.Params, &p) != nil || p.ProgressToken != "cd" || p.Progress != 1 || p.Total != from {
		t.Fatalf("first event after priming: %s", ev.Data)
	}
	if lastID != streamID+"_1" {
		t.Fatalf("first progress event id %q, want %s_1", lastID, streamID)
	}
	resp.Body.Close() // drop the connection mid-stream

	get := openStream(t, ctx, "GET", url, "", map[string]string{"Mcp-Session-Id": id, "MCP-Protocol-Version": v, "Last-Event-ID": lastID})
	defer get.Body.Close()
	if get.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(get.Body)
		t.Fatalf("resume GET: %d %s", get.StatusCode, b)
	}
	rd = sse.NewReader(get.Body, 0)
	wantSeq, wantProgress := 2, 2.0
	gotResponse := false
	for {
		ev, err := rd.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("reading the resumed stream: %v", err)
		}
		if gotResponse {
			t.Fatalf("event after the response: %q %s", ev.ID, ev.Data)
		}
		if !ev.HasID || ev.ID != streamID+"_"+strconv.Itoa(wantSeq) {
			t.Fatalf("event id %q (has id %v), want %s_%d: %s", ev.ID, ev.HasID, streamID, wantSeq, ev.Data)
		}
		wantSeq++
		var m sseMsg
		if err := json.Unmarshal(ev.Data, &m); err != nil {
			t.Fatalf("event %q: %v: %s", ev.ID, err, ev.Data)
		}
		switch {
		case m.Method == "notifications/progress":
			var p progressParams
			if err := json.Unmarshal(m.Params, &p); err != nil || p.ProgressToken != "cd" {
				t.Fatalf("progress %s", m.Params)
			}
			if p.Progress != wantProgress {
				t.Fatalf("progress %v after %v: duplicate or gap", p.Progress, wantProgress-1)
			}
			wantProgress++
		case string(m.ID) == "7":
			if m.Result == nil || len(m.Result.Content) != 1 || m.Result.Content[0].Text != "liftoff" {
				t.Fatalf("response: %s", ev.Data)
			}
			gotResponse = true
		default:
			t.Fatalf("unexpected event %q: %s", ev.ID, ev.Data)
		}
	}
	if !gotResponse || wantProgress != from+1 {
		t.Fatalf("resumed stream ended after progress %v (response %v), want progress 2..%d then the response", wantProgress-1, gotResponse, from)
	}

	resume := func(last string) rawResp {
		return do(t, "GET", url, "", map[string]string{"Mcp-Session-Id": id, "MCP-Protocol-Version": v, "Last-Event-ID": last, "Content-Type": ""})
	}
	// The stream was delivered to its end and forgotten.
	if r := resume(lastID); r.Status != http.StatusGone || r.Code != -32600 {
		t.Errorf("resuming the finished stream again: %d %s", r.Status, r.Body)
	}
	if r := resume("999_1"); r.Status != http.StatusGone {
		t.Errorf("resuming an unknown stream: %d %s", r.Status, r.Body)
	}
	for _, bad := range []string{"nonsense", streamID + "_x", streamID + "_-1"} {
		if r := resume(bad); r.Status != http.StatusBadRequest || r.Code != -32600 {
			t.Errorf("Last-Event-ID %q: %d %s", bad, r.Status, r.Body)
		}
	}
	// The session is unharmed.
	if r := pingAs(t, url, id, v); r.Status != http.StatusOK {
		t.Fatalf("ping after resumption: %d %s", r.Status, r.Body)
	}
}

// statusRecorder records the HTTP status of every POST carrying a
// tools/call, for clients whose API hides it.
type statusRecorder struct {
	mu       sync.Mutex
	statuses []int
}

func (s *statusRecorder) RoundTrip(req *http.Request) (*http.Response, error) {
	isCall := false
	if req.Method == http.MethodPost && req.GetBody != nil {
		if b, err := req.GetBody(); err == nil {
			body, _ := io.ReadAll(b)
			isCall = bytes.Contains(body, []byte(`"method":"tools/call"`))
		}
	}
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err == nil && isCall {
		s.mu.Lock()
		s.statuses = append(s.statuses, resp.StatusCode)
		s.mu.Unlock()
	}
	return resp, err
}

func (s *statusRecorder) last() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.statuses) == 0 {
		return 0
	}
	return s.statuses[len(s.statuses)-1]
}

// TestBoundsUpstreamSessionLoss: when a go-sdk upstream forgets its session
// (404, as after a restart), mcpgate re-initializes it with the client's
// original initialize and repeats reads transparently; a side-effecting
// tool is not repeated (a JSON-RPC error, HTTP 200, and the session goes
// on) unless the route lists it in retry_tools.
func TestBoundsUpstreamSessionLoss(t *testing.T) {
	t.Parallel()
	up := startLossyUpstream(t)
	strict := httpRoute("strict", "/strict/mcp", up.URL)
	strict.Upstream.Era = config.EraLegacy
	retrying := httpRoute("retrying", "/retrying/mcp", up.URL)
	retrying.Upstream.Era = config.EraLegacy
	retrying.RetryTools = []string{"bump"}
	g := startGateway(t, nil, strict, retrying)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	const v = "2025-11-25"
	rec := &statusRecorder{}
	cs := connectSDK(ctx, t, g.URL+"/strict/mcp", v, &http.Client{Transport: rec})
	if n := up.Inits(); n != 1 {
		t.Fatalf("upstream saw %d initializes after connecting, want 1", n)
	}
	text := func(res *mcp.CallToolResult, err error) string {
		t.Helper()
		if err != nil {
			t.Fatalf("tools/call: %v", err)
		}
		if res.IsError {
			t.Fatalf("tools/call isError: %s", textOf(t, res))
		}
		return textOf(t, res)
	}

	// A read: retried on a new upstream session, transparently.
	up.arm("tools/list")
	tools, err := cs.ListTools(ctx, nil)
	if err != nil {
		t.Fatalf("tools/list across an upstream session loss: %v", err)
	}
	if len(tools.Tools) != 2 {
		t.Errorf("tools/list returned %d tools, want 2", len(tools.Tools))
	}
	if lost := up.Lost(); len(lost) != 1 || lost[0] != "POST tools/list" {
		t.Fatalf("requests answered 404: %v (the loss was not exercised)", lost)
	}
	if n := up.Inits(); n != 2 {
		t.Errorf("upstream saw %d initializes, want 2 (the original and the re-initialize)", n)
	}

	// A side-effecting tool not in retry_tools: not repeated.
	up.arm("tools/call")
	_, err = cs.CallTool(ctx, &mcp.CallToolParams{Name: "bump", Arguments: map[string]any{"by": 1}})
	if err == nil || !strings.Contains(err.Error(), "not safe to repeat") {
		t.Fatalf("bump across a loss: err = %v, want a JSON-RPC error saying it is not safe to repeat", err)
	}
	if st := rec.last(); st != http.StatusOK {
		t.Errorf("HTTP status of the refused call = %d, want 200 (a JSON-RPC error in a working session)", st)
	}
	if n := up.Bumps.Load(); n != 0 {
		t.Errorf("bump ran %d times, want 0 (the lost call never reached the server and must not be repeated)", n)
	}
	if n := up.Inits(); n != 3 {
		t.Errorf("upstream saw %d initializes, want 3", n)
	}
	if got := text(cs.CallTool(ctx, &mcp.CallToolParams{Name: "read_bumps"})); got != "0" {
		t.Errorf("read_bumps = %q, want 0", got)
	}
	if got := text(cs.CallTool(ctx, &mcp.CallToolParams{Name: "bump", Arguments: map[string]any{"by": 1}})); got != "bumped to 1" {
		t.Errorf("bump on the re-established session = %q", got)
	}
	if rec.last() != http.StatusOK {
		t.Errorf("last call status %d", rec.last())
	}

	// The same tool on a route that lists it in retry_tools: repeated.
	cs2 := connectSDK(ctx, t, g.URL+"/retrying/mcp", v, nil)
	up.arm("tools/call")
	if got := text(cs2.CallTool(ctx, &mcp.CallToolParams{Name: "bump", Arguments: map[string]any{"by": 1}})); got != "bumped to 2" {
		t.Errorf("bump (in retry_tools) across a loss = %q, want bumped to 2", got)
	}
	if lost := up.Lost(); len(lost) != 3 {
		t.Fatalf("requests answered 404: %v, want 3 losses", lost)
	}
	if n := up.Inits(); n != 5 {
		t.Errorf("upstream saw %d initializes, want 5", n)
	}
	if n := g.Sessions().Len(); n != 2 {
		t.Errorf("live sessions = %d, want 2 (losses end no gateway session)", n)
	}
}

// TestBoundsIdleTimeout: an idle session ends after sessions.idle_timeout
// and its id answers 404; a session with an open GET stream (keep-alives
// flowing) is not reaped while the stream is open, and is once it closes.
func TestBoundsIdleTimeout(t *testing.T) {
	t.Parallel()
	g := startGateway(t, func(c *config.Config) {
		c.Sessions.IdleTimeout = time.Second
		c.Server.KeepAlive = 100 * time.Millisecond
	}, httpRoute("fixture", "/mcp", fixtureHTTP(t, false)))
	url := g.URL + "/mcp"
	const v = "2025-06-18"
	idle := sessionAt(t, url, v)
	streamed := sessionAt(t, url, v)
	start := time.Now()

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	get := openStream(t, ctx, "GET", url, "", sessHdr(streamed, v))
	if get.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(get.Body)
		t.Fatalf("GET: %d %s", get.StatusCode, b)
	}
	var keepAlives atomic.Int32
	ended := make(chan struct{})
	go func() {
		defer close(ended)
		sc := bufio.NewScanner(get.Body)
		for sc.Scan() {
			if strings.HasPrefix(sc.Text(), ":") {
				keepAlives.Add(1)
			}
		}
	}()

	// Polling the manager does not touch the session.
	waitFor(t, "the idle session to end", func() bool { _, err := g.Sessions().Get(idle); return err != nil })
	if d := time.Since(start); d < 800*time.Millisecond {
		t.Errorf("idle session ended after %s, before its 1s idle timeout", d)
	}
	if r := pingAs(t, url, idle, v); r.Status != http.StatusNotFound || r.Code != -32011 {
		t.Fatalf("ping on the reaped session: %d %s", r.Status, r.Body)
	}

	// The streamed session outlives three idle timeouts with keep-alives flowing.
	waitFor(t, "3s of keep-alives", func() bool { return time.Since(start) > 3*time.Second && keepAlives.Load() >= 10 })
	select {
	case <-ended:
		t.Fatal("the GET stream ended while open")
	default:
	}
	if _, err := g.Sessions().Get(streamed); err != nil {
		t.Fatalf("the session with an open GET stream was reaped: %v", err)
	}

	// Once the stream closes, it is reaped like any idle session.
	get.Body.Close()
	<-ended
	closed := time.Now()
	waitFor(t, "the streamed session to end after its stream closed", func() bool { _, err := g.Sessions().Get(streamed); return err != nil })
	if d := time.Since(closed); d < 800*time.Millisecond {
		t.Errorf("session ended %s after its stream closed, before its idle timeout", d)
	}
	if r := pingAs(t, url, streamed, v); r.Status != http.StatusNotFound {
		t.Fatalf("ping on the reaped session: %d %s", r.Status, r.Body)
	}
}

// lockedBuffer is a bytes.Buffer safe for a writer and a reader.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestBoundsEvictionThenRefusal: a creation that one cap would admit by
// evicting and another cap refuses must not leave the first cap's victim
// half-ended. Gateway-wide max 2 with evict-oldest, and a route capped at 1
// with reject: a second session on the capped route is refused (503). The
// session on the other route should survive (nothing was admitted to make
// room for); if it is evicted anyway, it must at least be torn down: its
// upstream GET stream closed and its upstream session deleted.
func TestBoundsEvictionThenRefusal(t *testing.T) {
	t.Parallel()
	var deletes, openGETs atomic.Int32
	fctx, fcancel := context.WithCancel(context.Background())
	fx := conformancefixture.Handler(fctx, false)
	counting := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.Method {
		case http.MethodDelete:
			deletes.Add(1)
		case http.MethodGet:
			openGETs.Add(1)
			defer openGETs.Add(-1)
		}
		fx.ServeHTTP(w, r)
	}))
	// A stream a leaked session keeps open would make Close wait forever:
	// cut client connections first.
	t.Cleanup(func() { fcancel(); counting.CloseClientConnections(); counting.Close() })
	free := httpRoute("free", "/free/mcp", counting.URL+"/")
	free.Upstream.Era = config.EraLegacy
	capped := httpRoute("capped", "/capped/mcp", counting.URL+"/")
	capped.Upstream.Era = config.EraLegacy
	capped.MaxSessions = 1
	g := startGateway(t, func(c *config.Config) { c.Sessions.Max = 2; c.Sessions.WhenFull = "evict-oldest" }, free, capped)
	a := legacySession(t, g.URL+"/free/mcp")
	b := legacySession(t, g.URL+"/capped/mcp")
	// The upstream GET stream is open while the client holds its own.
	sctx, scancel := context.WithCancel(context.Background())
	t.Cleanup(scancel)
	for _, s := range []struct{ url, id string }{{g.URL + "/free/mcp", a}, {g.URL + "/capped/mcp", b}} {
		resp := openStream(t, sctx, "GET", s.url, "", sessHdr(s.id, "2025-06-18"))
		t.Cleanup(func() { _ = resp.Body.Close() })
	}
	waitFor(t, "both upstream GET streams", func() bool { return openGETs.Load() == 2 })

	r := do(t, "POST", g.URL+"/capped/mcp", initBody, nil)
	if r.Status != http.StatusServiceUnavailable || r.Code != -32013 || !strings.Contains(r.Msg, `route "capped"`) {
		t.Fatalf("second session on the capped route: %d %s", r.Status, r.Body)
	}
	if p := pingAs(t, g.URL+"/free/mcp", a, "2025-06-18"); p.Status == http.StatusOK {
		return // nothing was evicted: correct
	}
	t.Errorf("the refused creation evicted the session on the other route (it answers 404) and admitted nothing")
	deadline := time.Now().Add(5 * time.Second)
	for (deletes.Load() == 0 || openGETs.Load() != 1) && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if deletes.Load() == 0 || openGETs.Load() != 1 {
		t.Errorf("the evicted session was never torn down: after 5s, %d upstream DELETEs (want 1) and %d upstream GET streams open (want 1)",
			deletes.Load(), openGETs.Load())
	}
	t.Logf("live sessions %d, global count %d", g.Sessions().Len(), g.Sessions().Count(session.ScopeGlobal, ""))
}
