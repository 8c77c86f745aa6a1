package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpgate/mcpgate/internal/config"
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
			t.Fatalf("GET stream ended before %q after %d events: %v", marker, events, err)
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

// TestBacklogBoundedAfterStreamLost: a session's client stream is gone —
// its GET stream was opened and closed, or it left a tools/call whose
// server then floods it — and the server sends thousands of messages. What
// the gateway keeps for the session stays within the documented bounds
// (256 messages, 1 MiB), whatever the protocol version: the next GET stream
// receives at most that, newest included, and the drops are logged once
// per interval with a count, not once per message.
func TestBacklogBoundedAfterStreamLost(t *testing.T) {
	const flood = 3000 // ~3 MiB, 3000 messages: beyond both bounds
	for _, tc := range []struct {
		name, version string
		related       bool // flood the lost tools/call stream, not the GET stream
	}{
		{"GET stream lost/2025-06-18", "2025-06-18", false},
		{"GET stream lost/2025-11-25", "2025-11-25", false},
		{"request stream lost/2025-06-18", "2025-06-18", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			v := tc.version
			log, rec := newRecordingLogger(slog.LevelDebug)
			clientGone := make(chan struct{})
			// A slow answer starts streaming at once, so the client sees it start.
			fast := func(c *config.Config) { c.Server.StreamAfter = time.Millisecond }
			g := startGatewayLogging(t, log, fast, httpRoute("flood", "/mcp", floodServer(t, clientGone)))
			url := g.URL + "/mcp"
			sid := sessionAt(t, url, v)
			hdr := sessHdr(sid, v)

			if tc.related {
				// Call, see the answer start, and leave; the server floods
				// the call's stream afterwards.
				ctx, cancel := context.WithCancel(context.Background())
				resp := openStream(t, ctx, "POST", url, `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"flood","arguments":{"n":`+strconv.Itoa(flood)+`,"related":true},"_meta":{"progressToken":"p"}}}`, hdr)
				_ = resp.Body.Close()
				cancel()
				close(clientGone)
			} else {
				// Open the GET stream, see it start, and leave.
				ctx, cancel := context.WithCancel(context.Background())
				resp := openStream(t, ctx, "GET", url, "", hdr)
				if resp.StatusCode != http.StatusOK {
					t.Fatalf("GET: %d", resp.StatusCode)
				}
				_ = resp.Body.Close()
				cancel()
				rec.waitCount(t, "get_stream_lost", 1)
				body := `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"flood","arguments":{"n":` + strconv.Itoa(flood) + `}}}`
				for {
					call := do(t, "POST", url, body, hdr)
					if call.Status == http.StatusOK && strings.Contains(call.Body, "flooded") {
						break
					}
					// The upstream refuses messages for its GET stream until
					// the gateway's own GET stream to it is connected.
					if !strings.Contains(call.Body, "stream not connected") {
						t.Fatalf("flood call: %d %s", call.Status, call.Body)
					}
				}
			}
			// Every notification has been through the gateway's chain.
			rec.waitCount(t, "mcp_exchange server_to_client notifications/progress", flood+1)

			// A new GET stream (resuming the old one where the protocol
			// allows) receives what the gateway kept: the newest messages,
			// within the bounds.
			if v >= "2025-11-25" {
				hdr["Last-Event-ID"] = "0_0"
			}
			ctx2, cancel2 := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel2()
			resp2 := openStream(t, ctx2, "GET", url, "", hdr)
			defer resp2.Body.Close()
			if resp2.StatusCode != http.StatusOK {
				t.Fatalf("second GET: %d", resp2.StatusCode)
			}
			events, size := readEventsUntil(t, bufio.NewReader(resp2.Body), `"last"`)
			if events > 256 || size > 1<<20 {
				t.Errorf("the next GET stream received %d events (%d bytes); want at most 256 and 1 MiB", events, size)
			}
			if n := rec.count("server_message_backlog_full"); n == 0 || n > 3 {
				t.Errorf("%d server_message_backlog_full records for %d dropped messages; want one per interval:\n%s", n, flood+1-events, grepLines(rec.text(), "backlog"))
			}
			t.Logf("the next GET stream received %d events (%d bytes)", events, size)
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
