package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpgate/mcpgate/internal/config"
	"github.com/mcpgate/mcpgate/internal/core"
)

// recordingHandler is a slog handler that keeps every record's message
// and attributes as text, so a test can wait for an event the gateway
// logs and inspect what it logged.
type recordingHandler struct {
	mu      sync.Mutex
	attrs   []slog.Attr
	shared  *recordingLog
	minimum slog.Level
}

type recordingLog struct {
	mu      sync.Mutex
	lines   bytes.Buffer
	counts  map[string]int
	changed chan struct{}
}

func newRecordingLogger(level slog.Level) (*slog.Logger, *recordingLog) {
	rl := &recordingLog{counts: map[string]int{}, changed: make(chan struct{})}
	return slog.New(&recordingHandler{shared: rl, minimum: level}), rl
}

func (h *recordingHandler) Enabled(_ context.Context, l slog.Level) bool { return l >= h.minimum }

func (h *recordingHandler) Handle(_ context.Context, r slog.Record) error {
	var b strings.Builder
	b.WriteString(r.Level.String() + " " + r.Message)
	key := r.Message
	add := func(a slog.Attr) bool {
		b.WriteString(" " + a.Key + "=" + a.Value.String())
		if a.Key == "direction" || a.Key == "method" {
			key += " " + a.Value.String()
		}
		return true
	}
	h.mu.Lock()
	for _, a := range h.attrs {
		add(a)
	}
	h.mu.Unlock()
	r.Attrs(add)
	rl := h.shared
	rl.mu.Lock()
	rl.lines.WriteString(b.String() + "\n")
	rl.counts[key]++
	if key != r.Message {
		rl.counts[r.Message]++
	}
	close(rl.changed)
	rl.changed = make(chan struct{})
	rl.mu.Unlock()
	return nil
}

func (h *recordingHandler) WithAttrs(as []slog.Attr) slog.Handler {
	h.mu.Lock()
	defer h.mu.Unlock()
	return &recordingHandler{shared: h.shared, minimum: h.minimum, attrs: append(append([]slog.Attr(nil), h.attrs...), as...)}
}

func (h *recordingHandler) WithGroup(string) slog.Handler { return h }

// count returns how many records had message key (or "message direction
// method" for exchanges).
func (rl *recordingLog) count(key string) int {
	rl.mu.Lock()
	defer rl.mu.Unlock()
	return rl.counts[key]
}

// waitCount waits until count(key) reaches n, without polling.
func (rl *recordingLog) waitCount(t testing.TB, key string, n int) {
	t.Helper()
	deadline := time.After(30 * time.Second)
	for {
		rl.mu.Lock()
		got, ch := rl.counts[key], rl.changed
		rl.mu.Unlock()
		if got >= n {
			return
		}
		select {
		case <-ch:
		case <-deadline:
			t.Fatalf("timed out waiting for %d records %q (have %d)", n, key, got)
		}
	}
}

func (rl *recordingLog) text() string {
	rl.mu.Lock()
	defer rl.mu.Unlock()
	return rl.lines.String()
}

// floodServer is a go-sdk server whose "flood" tool sends n progress
// notifications of about 1 KiB, then one marked "last". Outside any
// request (they travel on the session's GET stream), or with "related"
// as part of the call, once the test closes clientGone.
func floodServer(t testing.TB, clientGone <-chan struct{}) string {
	t.Helper()
	s := mcp.NewServer(&mcp.Implementation{Name: "flood", Version: "1"}, nil)
	type in struct {
		N       int  `json:"n"`
		Related bool `json:"related,omitempty"`
	}
	mcp.AddTool(s, &mcp.Tool{Name: "flood"}, func(ctx context.Context, req *mcp.CallToolRequest, a in) (*mcp.CallToolResult, any, error) {
		token := any("bg")
		if a.Related {
			<-clientGone
			token = req.Params.GetProgressToken()
		} else {
			ctx = context.Background()
		}
		pad := strings.Repeat("x", 1000)
		for i := range a.N {
			if err := req.Session.NotifyProgress(ctx, &mcp.ProgressNotificationParams{ProgressToken: token, Progress: float64(i), Message: pad}); err != nil {
				return nil, nil, err
			}
		}
		if err := req.Session.NotifyProgress(ctx, &mcp.ProgressNotificationParams{ProgressToken: token, Progress: float64(a.N), Message: "last"}); err != nil {
			return nil, nil, err
		}
		return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: "flooded"}}}, nil, nil
	})
	mcp.AddTool(s, &mcp.Tool{Name: "mark"}, func(_ context.Context, req *mcp.CallToolRequest, _ struct{}) (*mcp.CallToolResult, any, error) {
		if err := req.Session.NotifyProgress(context.Background(), &mcp.ProgressNotificationParams{ProgressToken: "bg", Progress: 1, Message: "last"}); err != nil {
			return nil, nil, err
		}
		return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: "marked"}}}, nil, nil
	})
	// "settle" sends one progress notification of its own request, then
	// answers: the gateway writes the answer only once its dispatcher has
	// placed that notification, so every server message that reached the
	// gateway before it has been placed or dropped by then.
	mcp.AddTool(s, &mcp.Tool{Name: "settle"}, func(ctx context.Context, req *mcp.CallToolRequest, _ struct{}) (*mcp.CallToolResult, any, error) {
		if err := req.Session.NotifyProgress(ctx, &mcp.ProgressNotificationParams{ProgressToken: req.Params.GetProgressToken(), Progress: 1, Message: "settling"}); err != nil {
			return nil, nil, err
		}
		return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: "settled"}}}, nil, nil
	})
	up := httptest.NewServer(mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return s }, nil))
	t.Cleanup(up.Close)
	return up.URL
}

// readEventsUntil reads SSE data lines from body until one contains
// marker, and returns how many message events came and their bytes.
func readEventsUntil(t testing.TB, body *bufio.Reader, marker string) (events, bytes int) {
	t.Helper()
	for {
		line, err := body.ReadString('\n')
		if err != nil {
			t.Errorf("GET stream ended before %q after %d events: %v", marker, events, err)
			return events, bytes
		}
		data, ok := strings.CutPrefix(line, "data: ")
		if !ok || strings.TrimSpace(data) == "" {
			continue
		}
		events++
		bytes += len(data)
		if strings.Contains(data, marker) {
			return events, bytes
		}
	}
}

// TestBacklogBoundedAfterStreamLost: a session's client stream is lost —
// its GET stream stalls until the write timeout cuts it, or it leaves a
// tools/call whose server then floods it — while the server sends
// thousands of messages. What the gateway keeps for the session stays
// within the documented bounds (256 messages per stream or backlog, 1 MiB
// per session), whatever the protocol version: the next GET stream
// receives at most that, and the drops are logged once per interval with
// a count, not once per message.
func TestBacklogBoundedAfterStreamLost(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, version string
		related       bool // flood the lost tools/call stream, not the GET stream
		flood         int
	}{
		// Beyond what the kernel's socket buffers absorb before the
		// write timeout cuts the stalled stream.
		{"GET stream stalled/2025-06-18", "2025-06-18", false, 20000},
		{"GET stream stalled/2025-11-25", "2025-11-25", false, 20000},
		// ~3 MiB, 3000 messages: beyond both bounds. (A resumable request
		// stream keeps them in its own bounded history, and a resume from
		// before what it dropped gets 410.)
		{"request stream lost/2025-06-18", "2025-06-18", true, 3000},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			v := tc.version
			log, rec := newRecordingLogger(slog.LevelDebug)
			clientGone := make(chan struct{})
			// A slow answer starts streaming at once, so the client sees
			// it start; a stalled stream is cut quickly.
			opts := func(c *config.Config) {
				c.Server.StreamAfter = time.Millisecond
				c.Server.WriteTimeout = 300 * time.Millisecond
			}
			g := startGatewayLogging(t, log, opts, httpRoute("flood", "/mcp", floodServer(t, clientGone)))
			url := g.URL + "/mcp"
			sid := sessionAt(t, url, v)
			hdr := sessHdr(sid, v)
			// call retries while the upstream refuses messages for its GET
			// stream because the gateway's own GET stream to it is not yet
			// connected; once the client's stream was lost, the refusal is
			// the answer.
			// Each attempt has an id of its own: the spec forbids reusing
			// one within a session, and the gateway may not have retired
			// the previous attempt's id yet when its answer has arrived.
			ids := 0
			call := func(params string, mark bool) rawResp {
				deadline := time.Now().Add(20 * time.Second)
				for {
					lost := rec.count("get_stream_lost")
					ids++
					r := do(t, "POST", url, `{"jsonrpc":"2.0","id":`+strconv.Itoa(ids)+`,"method":"tools/call","params":`+params+`}`, hdr)
					// The marker may also go to the stream the gateway
					// closed, before the upstream noticed the close.
					refused := strings.Contains(r.Body, "stream not connected") ||
						mark && (strings.Contains(r.Body, "broken pipe") || strings.Contains(r.Body, "connection reset"))
					if !refused || rec.count("get_stream_lost") > lost {
						return r
					}
					if time.Now().After(deadline) {
						t.Fatalf("the upstream's GET stream never connected: %s", r.Body)
					}
				}
			}
			if tc.related {
				// Call, see the answer start, and leave; the server floods
				// the call's stream afterwards.
				ctx, cancel := context.WithCancel(context.Background())
				resp := openStream(t, ctx, "POST", url, `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"flood","arguments":{"n":`+strconv.Itoa(tc.flood)+`,"related":true},"_meta":{"progressToken":"p"}}}`, hdr)
				_ = resp.Body.Close()
				cancel()
				close(clientGone)
				// Every notification has been through the gateway's chain.
				rec.waitCount(t, "mcp_exchange server_to_client notifications/progress", tc.flood+1)
			} else {
				// A GET stream whose client reads its headers, then nothing.
				conn, err := net.Dial("tcp", strings.TrimPrefix(g.URL, "http://"))
				if err != nil {
					t.Fatal(err)
				}
				defer conn.Close()
				_ = conn.(*net.TCPConn).SetReadBuffer(4 << 10)
				fmt.Fprintf(conn, "GET /mcp HTTP/1.1\r\nHost: %s\r\nAccept: text/event-stream\r\nMcp-Session-Id: %s\r\nMCP-Protocol-Version: %s\r\n\r\n", strings.TrimPrefix(g.URL, "http://"), sid, v)
				if line, err := bufio.NewReaderSize(conn, 16).ReadString('\n'); err != nil || !strings.Contains(line, "200") {
					t.Fatalf("stalled GET: %q %v", line, err)
				}
				// The flood ends when the write timeout (or, as often, the
				// full outbound queue) cuts the stream and the gateway
				// stops listening upstream (the server is then
				// told its stream is gone), or when it is all sent.
				call(`{"name":"flood","arguments":{"n":`+strconv.Itoa(tc.flood)+`}}`, false)
				rec.waitCount(t, "get_stream_lost", 1)
				// The flood is over upstream, but what the gateway read of
				// it before it stopped listening may still wait for the
				// session's dispatcher (its inbound queue takes a burst of
				// up to 4096 messages, 4 MiB, when the dispatcher lags):
				// those would be placed on the next GET stream as live
				// messages, beyond the bounds under test. Wait until the
				// dispatcher has placed them (on this call's stream, the
				// session's latest, or in the backlog). A call whose
				// stream the gateway closed, its queue overflowing with
				// them, is made again.
				for i := 0; ; i++ {
					ids++
					settle := `{"jsonrpc":"2.0","id":` + strconv.Itoa(ids) + `,"method":"tools/call","params":{"name":"settle","arguments":{},"_meta":{"progressToken":"s"}}}`
					if strings.Contains(do(t, "POST", url, settle, hdr).Body, `"settled"`) {
						break
					}
					if i == 20 {
						t.Fatal("the settle call never got its answer")
					}
				}
			}

			// A new GET (resuming the lost stream where the protocol allows)
			// receives what the gateway kept, then, for the GET stream, a
			// marker the server sends once it is open.
			if v >= "2025-11-25" {
				hdr["Last-Event-ID"] = "0_0"
			}
			ctx2, cancel2 := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel2()
			resp2 := openStream(t, ctx2, "GET", url, "", hdr)
			defer resp2.Body.Close()
			delete(hdr, "Last-Event-ID")
			if resp2.StatusCode != http.StatusOK {
				t.Fatalf("second GET: %d", resp2.StatusCode)
			}
			// Read while the marker is sent, so the stream never stalls.
			type count struct{ events, size int }
			got := make(chan count, 1)
			go func() {
				e, n := readEventsUntil(t, bufio.NewReader(resp2.Body), `"last"`)
				got <- count{e, n}
			}()
			if !tc.related {
				if r := call(`{"name":"mark","arguments":{}}`, true); !strings.Contains(r.Body, "marked") {
					t.Fatalf("mark: %d %s", r.Status, r.Body)
				}
			}
			c := <-got
			events, size := c.events, c.size
			// A resumed stream replays its own bounded history, then the
			// bounded backlog; both within the session's 1 MiB.
			maxEvents := 256 + 1
			if v >= "2025-11-25" {
				maxEvents = 2*256 + 1
			}
			if events > maxEvents || size > 1<<20+1<<10 {
				t.Errorf("the next GET stream received %d events (%d bytes); want at most %d and 1 MiB", events, size, maxEvents)
			}
			n := rec.count("server_message_backlog_full")
			if n > 3 || (n == 0 && tc.related && v < "2025-11-25") {
				t.Errorf("%d server_message_backlog_full records; want one per interval:\n%s", n, grepLines(rec.text(), "backlog"))
			}
			t.Logf("the next GET stream received %d events (%d bytes); %d drop records", events, size, n)
		})
	}
}

// grepLines returns the lines of s that contain sub.
func grepLines(s, sub string) string {
	var b strings.Builder
	for line := range strings.Lines(s) {
		if strings.Contains(line, sub) {
			b.WriteString(line)
		}
	}
	return b.String()
}

// TestRefusalsOfBadIDsAndHeaders: ids that are neither strings nor
// integers are the client's error (400, -32600) before anything goes
// upstream, in both eras; requests net/http refuses itself (headers past
// the limit, a malformed request) are JSON-RPC errors too.
func TestRefusalsOfBadIDsAndHeaders(t *testing.T) {
	t.Parallel()
	g := startGateway(t, nil,
		httpRoute("legacy", "/mcp", fixtureHTTP(t, false)),
		httpRoute("modern", "/modern/mcp", fixtureHTTP(t, true)))
	legacy, modern := g.URL+"/mcp", g.URL+"/modern/mcp"
	sid := legacySession(t, legacy)
	s := map[string]string{"Mcp-Session-Id": sid, "MCP-Protocol-Version": "2025-06-18"}
	mh := map[string]string{"MCP-Protocol-Version": "2026-07-28", "Mcp-Method": "tools/call", "Mcp-Name": "test_simple_text"}
	for _, id := range []string{"1.5", "1e999", "2.0", "1E2", "9223372036854775808"} {
		for _, tc := range []struct {
			name, url, body string
			hdr             map[string]string
		}{
			{"legacy ping", legacy, `{"jsonrpc":"2.0","id":` + id + `,"method":"ping"}`, s},
			{"legacy tools/call", legacy, `{"jsonrpc":"2.0","id":` + id + `,"method":"tools/call","params":{"name":"test_simple_text","arguments":{}}}`, s},
			{"initialize", legacy, strings.Replace(initBody, `"id":1`, `"id":`+id, 1), nil},
			{"modern tools/call", modern, `{"jsonrpc":"2.0","id":` + id + `,"method":"tools/call","params":{"name":"test_simple_text","arguments":{},"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}}}`, mh},
		} {
			r := do(t, "POST", tc.url, tc.body, tc.hdr)
			if r.Status != http.StatusBadRequest || r.Code != -32600 || !strings.Contains(r.Msg, "integer") {
				t.Errorf("%s with id %s: %d %d %q, want 400 -32600 (%s)", tc.name, id, r.Status, r.Code, r.Msg, r.Body)
			}
		}
	}

	raw := func(t *testing.T, req string) (*http.Response, string) {
		t.Helper()
		conn, err := net.Dial("tcp", strings.TrimPrefix(g.URL, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		if _, err := io.WriteString(conn, req); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, string(b)
	}
	host := strings.TrimPrefix(g.URL, "http://")
	for _, tc := range []struct {
		name, req string
		status    int
	}{
		{"headers too large", "POST /mcp HTTP/1.1\r\nHost: " + host + "\r\nX-Big: " + strings.Repeat("a", 80<<10) + "\r\nContent-Length: 0\r\n\r\n", http.StatusRequestHeaderFieldsTooLarge},
		{"malformed header", "POST /mcp HTTP/1.1\r\nHost: " + host + "\r\nno colon here\r\n\r\n", http.StatusBadRequest},
		{"unknown transfer coding", "POST /mcp HTTP/1.1\r\nHost: " + host + "\r\nTransfer-Encoding: zip\r\n\r\n", http.StatusNotImplemented},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := raw(t, tc.req)
			var env struct {
				JSONRPC string          `json:"jsonrpc"`
				ID      json.RawMessage `json:"id"`
				Error   struct {
					Code    int    `json:"code"`
					Message string `json:"message"`
				} `json:"error"`
			}
			if resp.StatusCode != tc.status || resp.Header.Get("Content-Type") != "application/json" ||
				json.Unmarshal([]byte(body), &env) != nil || env.JSONRPC != "2.0" || string(env.ID) != "null" || env.Error.Code != -32600 {
				t.Errorf("got %d %q %s, want %d with a JSON-RPC error", resp.StatusCode, resp.Header.Get("Content-Type"), body, tc.status)
			}
		})
	}
}

// startFixtureHTTPProcess runs the conformance fixture as its own process
// serving Streamable HTTP with sessions, so what it holds per session is
// not counted as the gateway's.
func startFixtureHTTPProcess(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	cmd := exec.Command(fixtureBin, "-http", addr)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	waitFor(t, "the fixture to listen", func() bool {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			_ = c.Close()
		}
		return err == nil
	})
	return "http://" + addr + "/"
}

func openFDs(t testing.TB) int {
	t.Helper()
	es, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatalf("counting descriptors: %v", err)
	}
	return len(es)
}

// TestIdleSessionCost: idle legacy sessions over an HTTP upstream whose
// clients hold no stream cost the gateway no file descriptor and no
// goroutine each (connections to the upstream are shared by the route);
// the upstream's GET stream is open only while the client holds its own.
// Not parallel: it counts the process's descriptors and goroutines.
func TestIdleSessionCost(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("counts descriptors in /proc")
	}
	const n = 200
	g := startGateway(t, func(c *config.Config) {
		c.Sessions.CreationRate.PerAddress = &config.Window{} // off: the test creates many
		c.Sessions.PerAddress = &config.Cap{}                 // from one address
	}, httpRoute("idle", "/mcp", startFixtureHTTPProcess(t)))
	url := g.URL + "/mcp"
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1}}
	t.Cleanup(client.CloseIdleConnections)
	post := func(body string, hdr map[string]string) *http.Response {
		req, _ := http.NewRequest("POST", url, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json, text/event-stream")
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
		return resp
	}
	open := func() string {
		r := post(initBody, nil)
		id := r.Header.Get("Mcp-Session-Id")
		if r.StatusCode != http.StatusOK || id == "" {
			t.Fatalf("initialize: %d", r.StatusCode)
		}
		if r := post(`{"jsonrpc":"2.0","method":"notifications/initialized"}`, sessHdr(id, "2025-06-18")); r.StatusCode != http.StatusAccepted {
			t.Fatalf("initialized: %d", r.StatusCode)
		}
		return id
	}
	settle := func() (fds, goroutines int) {
		// Goroutines of finished exchanges exit soon after their answer.
		var last int
		for range 50 {
			runtime.GC()
			g := runtime.NumGoroutine()
			if g == last {
				break
			}
			last = g
			time.Sleep(20 * time.Millisecond)
		}
		return openFDs(t), runtime.NumGoroutine()
	}
	open() // warm the route's connection pool
	fd0, gr0 := settle()
	var ms0, ms1 runtime.MemStats
	runtime.ReadMemStats(&ms0)
	ids := make([]string, n)
	for i := range ids {
		ids[i] = open()
	}
	fd1, gr1 := settle()
	runtime.ReadMemStats(&ms1)
	t.Logf("%d idle sessions: %+d descriptors, %+d goroutines, %+d heap bytes per session", n, fd1-fd0, gr1-gr0, (int64(ms1.HeapAlloc)-int64(ms0.HeapAlloc))/n)
	// A pool of shared connections may grow a little; one per session is what must not happen.
	if d := fd1 - fd0; d > n/20 {
		t.Errorf("%d idle sessions hold %d more descriptors; want none per session", n, d)
	}
	if d := gr1 - gr0; d > n/20 {
		t.Errorf("%d idle sessions hold %d more goroutines; want none per session", n, d)
	}

	// A client that opens its GET stream gets the upstream's too; when it
	// leaves, both close.
	ctx, cancel := context.WithCancel(context.Background())
	resp := openStream(t, ctx, "GET", url, "", sessHdr(ids[0], "2025-06-18"))
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET: %d", resp.StatusCode)
	}
	waitFor(t, "the upstream GET stream to open", func() bool { return openFDs(t) >= fd1+2 })
	_ = resp.Body.Close()
	cancel()
	waitFor(t, "both GET streams to close", func() bool { return openFDs(t) <= fd1+1 })
}

// TestHalfMadeSessionEnds: when the upstream (or the gateway itself, out
// of descriptors say) fails the handshake after initialize succeeded, the
// client's notifications/initialized gets a 5xx and the half-made session
// is ended, not left holding a place.
func TestHalfMadeSessionEnds(t *testing.T) {
	t.Parallel()
	s := mcp.NewServer(&mcp.Implementation{Name: "half", Version: "1"}, nil)
	sdk := mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return s }, nil)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost {
			b, _ := io.ReadAll(r.Body)
			if bytes.Contains(b, []byte(`"notifications/initialized"`)) {
				http.Error(w, "too many open files", http.StatusInternalServerError)
				return
			}
			r.Body = io.NopCloser(bytes.NewReader(b))
		}
		sdk.ServeHTTP(w, r)
	}))
	t.Cleanup(up.Close)
	g := startGateway(t, nil, httpRoute("half", "/mcp", up.URL))
	url := g.URL + "/mcp"
	r := do(t, "POST", url, initBody, nil)
	id := r.Header.Get("Mcp-Session-Id")
	if r.Status != http.StatusOK || id == "" {
		t.Fatalf("initialize: %d %s", r.Status, r.Body)
	}
	if n := do(t, "POST", url, `{"jsonrpc":"2.0","method":"notifications/initialized"}`, sessHdr(id, "2025-06-18")); n.Status != http.StatusBadGateway {
		t.Fatalf("initialized: %d %s, want 502", n.Status, n.Body)
	}
	if p := pingAs(t, url, id, "2025-06-18"); p.Status != http.StatusNotFound {
		t.Errorf("the half-made session answers %d %s; want 404", p.Status, p.Body)
	}
	if n := g.Sessions().Len(); n != 0 {
		t.Errorf("%d sessions live after a failed handshake", n)
	}
}

// TestLogsCarryNoSessionID runs real sessions through every lifecycle
// event — legacy and modern, HTTP and stdio upstreams, created, spawned,
// resumed, evicted, ended — with the log at DEBUG, and checks that no
// session id (a bearer credential) appears in the log, only its
// fingerprint, nor in an error answered to another client.
func TestLogsCarryNoSessionID(t *testing.T) {
	t.Parallel()
	log, rec := newRecordingLogger(slog.LevelDebug)
	evict := httpRoute("evict", "/evict/mcp", fixtureHTTP(t, false))
	evict.MaxSessions, evict.WhenFull = 1, "evict-oldest"
	g := startGatewayLogging(t, log, nil,
		httpRoute("http", "/mcp", fixtureHTTP(t, false)),
		stdioRoute("stdio", "/stdio/mcp", fixtureBin),
		httpRoute("modern", "/modern/mcp", fixtureHTTP(t, true)),
		evict)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var ids []string
	var answers []string // bodies answered to clients that did not send the id

	// go-sdk clients over HTTP and stdio: created, spawned, tool calls on
	// their GET and POST streams, ended with DELETE.
	for _, path := range []string{"/mcp", "/stdio/mcp"} {
		cs := connectSDK(ctx, t, g.URL+path, "2025-11-25", nil)
		ids = append(ids, cs.ID())
		if _, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "test_simple_text", Arguments: map[string]any{}}); err != nil {
			t.Fatalf("%s: call: %v", path, err)
		}
		if err := cs.Close(); err != nil {
			t.Fatalf("%s: close: %v", path, err)
		}
	}

	// Resumed: a 2025-11-25 GET stream resumed with Last-Event-ID.
	url := g.URL + "/mcp"
	sid := sessionAt(t, url, "2025-11-25")
	ids = append(ids, sid)
	hdr := sessHdr(sid, "2025-11-25")
	gctx, gcancel := context.WithCancel(ctx)
	resp := openStream(t, gctx, "GET", url, "", hdr)
	_ = resp.Body.Close()
	gcancel()
	hdr["Last-Event-ID"] = "0_0"
	rctx, rcancel := context.WithCancel(ctx)
	resp = openStream(t, rctx, "GET", url, "", hdr)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("resume: %d", resp.StatusCode)
	}
	rec.waitCount(t, "session_resumed", 1)
	_ = resp.Body.Close()
	rcancel()

	// Evicted: a route capped at one session, evict-oldest.
	victim := sessionAt(t, g.URL+"/evict/mcp", "2025-06-18")
	ids = append(ids, victim)
	ids = append(ids, sessionAt(t, g.URL+"/evict/mcp", "2025-06-18"))
	if r := pingAs(t, g.URL+"/evict/mcp", victim, "2025-06-18"); r.Status != http.StatusNotFound {
		t.Fatalf("the evicted session answers %d", r.Status)
	}
	rec.waitCount(t, "session_evicted", 1)

	// Modern: a keyless request, then one echoing the key it was given.
	mh := map[string]string{"MCP-Protocol-Version": "2026-07-28", "Mcp-Method": "tools/call", "Mcp-Name": "test_simple_text"}
	modernCall := `{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"test_simple_text","arguments":{},"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}}}`
	m := do(t, "POST", g.URL+"/modern/mcp", modernCall, mh)
	if m.Status != http.StatusOK {
		t.Fatalf("modern call: %d %s", m.Status, m.Body)
	}
	if key := m.Header.Get("Mcpgate-Session"); key != "" {
		ids = append(ids, key)
		mh["Mcpgate-Session"] = key
		if m := do(t, "POST", g.URL+"/modern/mcp", modernCall, mh); m.Status != http.StatusOK {
			t.Fatalf("modern call with its key: %d %s", m.Status, m.Body)
		}
	}

	// Errors other clients get: a full route, unknown and malformed ids.
	for _, r := range []rawResp{
		do(t, "POST", g.URL+"/evict/mcp", initBody, nil),
		pingAs(t, url, "no-such-session", "2025-06-18"),
		do(t, "DELETE", url, "", map[string]string{"Mcp-Session-Id": "not a session id"}),
		do(t, "GET", url, "", map[string]string{"Mcp-Session-Id": victim[:len(victim)-1]}),
	} {
		answers = append(answers, r.Body)
	}
	if r := do(t, "DELETE", url, "", map[string]string{"Mcp-Session-Id": sid}); r.Status != http.StatusNoContent {
		t.Fatalf("DELETE: %d", r.Status)
	}
	rec.waitCount(t, "session_ended", 3)

	logs := rec.text()
	for _, want := range []string{"session_created", "stdio_spawn", "session_resumed", "session_evicted", "session_ended"} {
		if rec.count(want) == 0 {
			t.Errorf("no %s record: the test did not exercise it", want)
		}
	}
	for _, id := range ids {
		if strings.Contains(logs, id) {
			t.Errorf("session id %s… appears in the log:\n%s", id[:6], grepLines(logs, id))
		}
		if fp := core.Fingerprint(id); !strings.Contains(logs, fp) {
			t.Errorf("fingerprint %s of a session never logged", fp)
		}
		for _, a := range answers {
			if strings.Contains(a, id) {
				t.Errorf("session id %s… answered to another client: %s", id[:6], a)
			}
		}
	}
}
