package logging_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/mcpgate/mcpgate/internal/core"
	"github.com/mcpgate/mcpgate/internal/interceptors/logging"
)

// Secrets planted in message bodies; none may ever reach the log.
const (
	paramSecret  = "param-s3cret"
	resultSecret = "result-s3cret"
	errorSecret  = "error-s3cret"
)

func decode(t testing.TB, raw string) *core.Message {
	t.Helper()
	m, err := core.Decode([]byte(raw))
	if err != nil {
		t.Fatalf("Decode(%s): %v", raw, err)
	}
	return m
}

var legacySession = &core.SessionInfo{ID: "sess-1", Route: "github", Era: core.EraLegacy, Principal: "alice"}

// records decodes the JSON log lines in buf.
func records(t *testing.T, buf *bytes.Buffer) []map[string]any {
	t.Helper()
	var out []map[string]any
	for line := range strings.Lines(buf.String()) {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("log line is not JSON: %q: %v", line, err)
		}
		out = append(out, rec)
	}
	return out
}

func TestRecords(t *testing.T) {
	resultFor := func(m *core.Message) *core.Message {
		return core.ResultResponse(m.ID, []byte(`{"content":[{"type":"text","text":"`+resultSecret+`"}]}`))
	}
	// As an upstream sends it: decoded, so its error member is parsed.
	upstreamErr := decode(t, `{"jsonrpc":"2.0","id":8,"error":{"code":-32602,"message":"bad `+errorSecret+`","data":"`+errorSecret+`"}}`)
	handlerErr := core.NewError(core.CodeUpstreamError, "upstream unavailable").Wrap(errors.New("dial tcp 127.0.0.1:9: connection refused"))
	tests := []struct {
		name    string
		msg     func(t *testing.T) *core.Message
		handler core.Handler
		want    map[string]any // without time and duration
	}{
		{
			name: "tools/call succeeds at debug",
			msg: func(t *testing.T) *core.Message {
				m := decode(t, `{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"create_issue","arguments":{"token":"`+paramSecret+`"}}}`)
				m.Session = legacySession
				return m
			},
			handler: func(_ context.Context, m *core.Message) (*core.Message, error) { return resultFor(m), nil },
			want: map[string]any{
				"level": "DEBUG", "msg": "mcp_exchange", "direction": "client_to_server", "kind": "request",
				"method": "tools/call", "tool": "create_issue", "session": core.Fingerprint("sess-1"), "route": "github", "principal": "alice",
				"era": "legacy", "id": "7",
			},
		},
		{
			name: "resources/read logs the uri",
			msg: func(t *testing.T) *core.Message {
				m := decode(t, `{"jsonrpc":"2.0","id":"r-1","method":"resources/read","params":{"uri":"file:///etc/motd"}}`)
				m.Session = &core.SessionInfo{ID: "sess-2", Route: "files", Era: core.EraModern, Principal: "alice"}
				return m
			},
			handler: func(_ context.Context, m *core.Message) (*core.Message, error) { return resultFor(m), nil },
			want: map[string]any{
				"level": "DEBUG", "msg": "mcp_exchange", "direction": "client_to_server", "kind": "request",
				"method": "resources/read", "uri": "file:///etc/motd", "session": core.Fingerprint("sess-2"), "route": "files", "principal": "alice",
				"era": "modern", "id": `"r-1"`,
			},
		},
		{
			name: "prompts/get logs the prompt",
			msg: func(t *testing.T) *core.Message {
				m := decode(t, `{"jsonrpc":"2.0","id":3,"method":"prompts/get","params":{"name":"summarize","arguments":{"text":"`+paramSecret+`"}}}`)
				m.Session = legacySession
				return m
			},
			handler: func(_ context.Context, m *core.Message) (*core.Message, error) { return resultFor(m), nil },
			want: map[string]any{
				"level": "DEBUG", "msg": "mcp_exchange", "direction": "client_to_server", "kind": "request",
				"method": "prompts/get", "prompt": "summarize", "session": core.Fingerprint("sess-1"), "route": "github", "principal": "alice",
				"era": "legacy", "id": "3",
			},
		},
		{
			name: "notification from the server has no id",
			msg: func(t *testing.T) *core.Message {
				m := decode(t, `{"jsonrpc":"2.0","method":"notifications/message","params":{"level":"info","data":"`+paramSecret+`"}}`)
				m.Direction = core.ServerToClient
				m.Session = legacySession
				return m
			},
			handler: func(context.Context, *core.Message) (*core.Message, error) { return nil, nil },
			want: map[string]any{
				"level": "DEBUG", "msg": "mcp_exchange", "direction": "server_to_client", "kind": "notification",
				"method": "notifications/message", "session": core.Fingerprint("sess-1"), "route": "github", "principal": "alice", "era": "legacy",
			},
		},
		{
			name: "initialize before any session",
			msg: func(t *testing.T) *core.Message {
				return decode(t, `{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"c","version":"1"}}}`)
			},
			handler: func(_ context.Context, m *core.Message) (*core.Message, error) { return resultFor(m), nil },
			want: map[string]any{
				"level": "DEBUG", "msg": "mcp_exchange", "direction": "client_to_server", "kind": "request",
				"method": "initialize", "id": "0",
			},
		},
		{
			name: "error response logs its code at info",
			msg: func(t *testing.T) *core.Message {
				m := decode(t, `{"jsonrpc":"2.0","id":8,"method":"tools/call","params":{"name":"create_issue","arguments":{"token":"`+paramSecret+`"}}}`)
				m.Session = legacySession
				return m
			},
			handler: func(context.Context, *core.Message) (*core.Message, error) { return upstreamErr, nil },
			want: map[string]any{
				"level": "INFO", "msg": "mcp_exchange", "direction": "client_to_server", "kind": "request",
				"method": "tools/call", "tool": "create_issue", "session": core.Fingerprint("sess-1"), "route": "github", "principal": "alice",
				"era": "legacy", "id": "8", "error_code": float64(core.CodeInvalidParams),
			},
		},
		{
			name: "handler error logs at warn with the error",
			msg: func(t *testing.T) *core.Message {
				m := decode(t, `{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"create_issue","arguments":{"token":"`+paramSecret+`"}}}`)
				m.Session = legacySession
				return m
			},
			handler: func(context.Context, *core.Message) (*core.Message, error) { return nil, handlerErr },
			want: map[string]any{
				"level": "WARN", "msg": "mcp_exchange", "direction": "client_to_server", "kind": "request",
				"method": "tools/call", "tool": "create_issue", "session": core.Fingerprint("sess-1"), "route": "github", "principal": "alice",
				"era": "legacy", "id": "9", "error": handlerErr.Error(),
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			logger := slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
			var called int
			next := func(ctx context.Context, m *core.Message) (*core.Message, error) {
				called++
				return tt.handler(ctx, m)
			}
			h := logging.New(logger)(next)
			m := tt.msg(t)
			wantResp, wantErr := tt.handler(context.Background(), m)
			resp, err := h(context.Background(), m)
			if called != 1 {
				t.Errorf("next called %d times, want 1", called)
			}
			// The interceptor only observes: the response and error pass
			// through unchanged.
			if !errors.Is(err, wantErr) || (wantErr == nil && err != nil) {
				t.Errorf("error = %v, want %v", err, wantErr)
			}
			if (resp == nil) != (wantResp == nil) || (resp != nil && !bytes.Equal(resp.Raw, wantResp.Raw)) {
				t.Errorf("response = %v, want %v", resp, wantResp)
			}

			recs := records(t, &buf)
			if len(recs) != 1 {
				t.Fatalf("got %d records, want 1:\n%s", len(recs), buf.String())
			}
			rec := recs[0]
			if _, ok := rec["time"]; !ok {
				t.Error("record has no time")
			}
			if d, ok := rec["duration"].(float64); !ok || d < 0 {
				t.Errorf("duration = %v, want non-negative nanoseconds", rec["duration"])
			}
			delete(rec, "time")
			delete(rec, "duration")
			if diff := cmp.Diff(tt.want, rec); diff != "" {
				t.Errorf("record (-want +got):\n%s", diff)
			}
			for _, secret := range []string{paramSecret, resultSecret, errorSecret} {
				if strings.Contains(buf.String(), secret) {
					t.Errorf("message body leaked into the log (%s):\n%s", secret, buf.String())
				}
			}
		})
	}
}

// TestLevels checks which outcomes are logged at each logger level.
func TestLevels(t *testing.T) {
	ok := func(_ context.Context, m *core.Message) (*core.Message, error) {
		return core.ResultResponse(m.ID, []byte(`{}`)), nil
	}
	errResp := func(_ context.Context, m *core.Message) (*core.Message, error) {
		return core.ErrorResponse(m.ID, core.NewError(core.CodeMethodNotFound, "no")), nil
	}
	fail := func(context.Context, *core.Message) (*core.Message, error) { return nil, errors.New("boom") }
	outcomes := []struct {
		name    string
		handler core.Handler
	}{{"success", ok}, {"error response", errResp}, {"handler error", fail}}
	tests := []struct {
		level  slog.Level
		logged []string // outcomes that produce a record
	}{
		{slog.LevelDebug, []string{"success", "error response", "handler error"}},
		{slog.LevelInfo, []string{"error response", "handler error"}},
		{slog.LevelWarn, []string{"handler error"}},
		{slog.LevelError, nil},
	}
	for _, tt := range tests {
		t.Run(tt.level.String(), func(t *testing.T) {
			var got []string
			for _, o := range outcomes {
				var buf bytes.Buffer
				logger := slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: tt.level}))
				if _, _ = logging.New(logger)(o.handler)(context.Background(), decode(t, `{"jsonrpc":"2.0","id":1,"method":"ping"}`)); buf.Len() > 0 {
					got = append(got, o.name)
				}
			}
			if diff := cmp.Diff(tt.logged, got); diff != "" {
				t.Errorf("logged outcomes (-want +got):\n%s", diff)
			}
		})
	}
}

func TestDurationCoversTheHandler(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var buf bytes.Buffer
		logger := slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
		const took = 1500 * time.Millisecond
		slow := func(_ context.Context, m *core.Message) (*core.Message, error) {
			time.Sleep(took) // fake time inside the bubble
			return core.ResultResponse(m.ID, []byte(`{}`)), nil
		}
		if _, err := logging.New(logger)(slow)(context.Background(), decode(t, `{"jsonrpc":"2.0","id":1,"method":"ping"}`)); err != nil {
			t.Fatal(err)
		}
		recs := records(t, &buf)
		if len(recs) != 1 {
			t.Fatalf("got %d records", len(recs))
		}
		if got := recs[0]["duration"]; got != float64(took) {
			t.Errorf("duration = %v, want %d", got, took)
		}
	})
}

func TestNilLoggerDiscards(t *testing.T) {
	h := logging.New(nil)(func(_ context.Context, m *core.Message) (*core.Message, error) {
		return nil, errors.New("boom")
	})
	if _, err := h(context.Background(), decode(t, `{"jsonrpc":"2.0","id":1,"method":"ping"}`)); err == nil || err.Error() != "boom" {
		t.Errorf("err = %v, want the handler's error", err)
	}
}

// TestNoAllocationsWhenDisabled: with the level above the outcome's, the
// interceptor must cost no allocation on the request path.
func TestNoAllocationsWhenDisabled(t *testing.T) {
	msg := decode(t, `{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"echo","arguments":{"text":"hi"}}}`)
	msg.Session = legacySession
	okResp := core.ResultResponse("7", []byte(`{}`))
	errResp := decode(t, `{"jsonrpc":"2.0","id":7,"error":{"code":-32602,"message":"bad"}}`)
	failure := errors.New("boom")
	tests := []struct {
		name   string
		level  slog.Level
		handle core.Handler
	}{
		{"success at info", slog.LevelInfo,
			func(context.Context, *core.Message) (*core.Message, error) { return okResp, nil }},
		{"success at error", slog.LevelError,
			func(context.Context, *core.Message) (*core.Message, error) { return okResp, nil }},
		{"error response at warn", slog.LevelWarn,
			func(context.Context, *core.Message) (*core.Message, error) { return errResp, nil }},
		{"handler error at error", slog.LevelError,
			func(context.Context, *core.Message) (*core.Message, error) { return nil, failure }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			logger := slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: tt.level}))
			wrapped := logging.New(logger)(tt.handle)
			ctx := context.Background()
			bare := testing.AllocsPerRun(1000, func() { _, _ = tt.handle(ctx, msg) })
			with := testing.AllocsPerRun(1000, func() { _, _ = wrapped(ctx, msg) })
			if with != bare {
				t.Errorf("allocations per exchange: %v with the interceptor, %v without", with, bare)
			}
			if buf.Len() != 0 {
				t.Errorf("logged at a disabled level:\n%s", buf.String())
			}
		})
	}
}

func BenchmarkInterceptor(b *testing.B) {
	msg := decode(b, `{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"echo","arguments":{"text":"hi"}}}`)
	msg.Session = legacySession
	resp := core.ResultResponse("7", []byte(`{}`))
	next := func(context.Context, *core.Message) (*core.Message, error) { return resp, nil }
	for _, bc := range []struct {
		name  string
		level slog.Level
	}{{"disabled", slog.LevelInfo}, {"enabled", slog.LevelDebug}} {
		b.Run(bc.name, func(b *testing.B) {
			logger := slog.New(slog.NewJSONHandler(discard{}, &slog.HandlerOptions{Level: bc.level}))
			h := logging.New(logger)(next)
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				_, _ = h(ctx, msg)
			}
		})
	}
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }
