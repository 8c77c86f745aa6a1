package httpup_test

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpgate/mcpgate/internal/core"
	"github.com/mcpgate/mcpgate/internal/upstream"
)

const modernMeta = `"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{},"io.modelcontextprotocol/clientInfo":{"name":"t","version":"1"}}`

// modernReq builds a 2026-07-28 request; params holds the members other
// than _meta.
func modernReq(t testing.TB, id, method, params string) *core.Message {
	t.Helper()
	p := "{" + modernMeta + "}"
	if params != "" {
		p = "{" + params + "," + modernMeta + "}"
	}
	return msg(t, `{"jsonrpc":"2.0","id":`+id+`,"method":"`+method+`","params":`+p+`}`)
}

func TestModernRoundTrip(t *testing.T) {
	for _, jsonResponse := range []bool{false, true} {
		t.Run(fmt.Sprintf("json=%v", jsonResponse), func(t *testing.T) {
			e := newEverything(t)
			ts, rec := sdkServer(t, e.Server, &mcp.StreamableHTTPOptions{Stateless: true, JSONResponse: jsonResponse})
			c := open(t, newUpstream(t, ts.URL, nil), core.EraModern, newSink())
			resp, err := c.RoundTrip(ctxT(t), modernReq(t, "1", "tools/call", `"name":"echo","arguments":{"text":"hi"}`), nil)
			if err != nil {
				t.Fatal(err)
			}
			if toolText(t, resp) != "hi" || resp.Era != core.EraModern || resp.Direction != core.ServerToClient || resp.Session != testSession {
				t.Fatalf("%s era=%v", resp.Raw, resp.Era)
			}
			if c.UpstreamSession() != "" {
				t.Fatal("modern conn has an upstream session")
			}
			if err := c.Listen(ctxT(t)); err != nil {
				t.Fatal(err)
			}
			reqs := rec.find(all)
			if len(reqs) != 1 {
				t.Fatalf("%d requests, want 1 (no GET in the modern era)", len(reqs))
			}
			h := reqs[0].Header
			for k, v := range map[string]string{"Mcp-Protocol-Version": "2026-07-28", "Mcp-Method": "tools/call", "Mcp-Name": "echo", "Mcp-Session-Id": ""} {
				if h.Get(k) != v {
					t.Errorf("%s: %q, want %q", k, h.Get(k), v)
				}
			}
			resp, err = c.RoundTrip(ctxT(t), modernReq(t, "2", "resources/read", `"uri":"test://r"`), nil)
			if err != nil || resp.Kind != core.KindResponse {
				t.Fatalf("resources/read: %v %v", resp, err)
			}
			if got := rec.find(byRPC("resources/read"))[0].Header.Get("Mcp-Name"); got != "test://r" {
				t.Errorf("Mcp-Name %q", got)
			}
		})
	}
}

// decodeMcpName stands in front of go-sdk v1.8, which compares Mcp-Name
// with the body without decoding the =?base64?...?= form.
func decodeMcpName(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		v := r.Header.Get("Mcp-Name")
		if inner, ok := strings.CutPrefix(v, "=?base64?"); ok {
			if inner, ok = strings.CutSuffix(inner, "?="); ok {
				if b, err := base64.StdEncoding.DecodeString(inner); err == nil {
					r.Header.Set("Mcp-Name", string(b))
				}
			}
		}
		next.ServeHTTP(w, r)
	})
}

func TestModernHeaders(t *testing.T) {
	s := mcp.NewServer(&mcp.Implementation{Name: "s", Version: "1"}, nil)
	mcp.AddTool(s, &mcp.Tool{Name: "héllo"}, func(context.Context, *mcp.CallToolRequest, struct{}) (*mcp.CallToolResult, any, error) {
		return textResult("bonjour"), nil, nil
	})
	s.AddTool(&mcp.Tool{Name: "query", InputSchema: map[string]any{
		"type": "object",
		"properties": map[string]any{
			"region": map[string]any{"type": "string", "x-mcp-header": "Region"},
		},
	}}, func(_ context.Context, req *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		return textResult("region header " + req.Extra.Header.Get("Mcp-Param-Region")), nil
	})
	sdk := mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return s }, &mcp.StreamableHTTPOptions{Stateless: true})
	const name = `"name":"h\u00e9llo","arguments":{}`
	wantName := "=?base64?" + base64.StdEncoding.EncodeToString([]byte("héllo")) + "?="

	t.Run("go-sdk rejects the base64 form", func(t *testing.T) {
		ts, rec := serve(t, sdk)
		c := open(t, newUpstream(t, ts.URL, nil), core.EraModern, newSink())
		resp, err := c.RoundTrip(ctxT(t), modernReq(t, "1", "tools/call", name), nil)
		if err != nil {
			t.Fatal(err)
		}
		// The upstream's own error and HTTP status come back as they are.
		if errorCode(t, resp) != core.CodeHeaderMismatch || resp.Status != http.StatusBadRequest || resp.ID != "1" {
			t.Fatalf("%s status %d", resp.Raw, resp.Status)
		}
		if got := rec.find(all)[0].Header.Get("Mcp-Name"); got != wantName {
			t.Fatalf("Mcp-Name %q, want %q", got, wantName)
		}
	})
	t.Run("decoded by a spec-following front", func(t *testing.T) {
		ts, rec := serve(t, decodeMcpName(sdk))
		c := open(t, newUpstream(t, ts.URL, nil), core.EraModern, newSink())
		resp, err := c.RoundTrip(ctxT(t), modernReq(t, "1", "tools/call", name), nil)
		if err != nil {
			t.Fatal(err)
		}
		if toolText(t, resp) != "bonjour" {
			t.Fatalf("%s", resp.Raw)
		}
		if got := rec.find(all)[0].Header.Get("Mcp-Name"); got != wantName {
			t.Fatalf("Mcp-Name %q, want %q", got, wantName)
		}
	})
	t.Run("forwarded Mcp-Param and static headers, no client credentials", func(t *testing.T) {
		ts, rec := serve(t, sdk)
		u := newUpstream(t, ts.URL, map[string]string{"x-api-key": "upstream-key"})
		c := open(t, u, core.EraModern, newSink())
		req := modernReq(t, "1", "tools/call", `"name":"query","arguments":{"region":"us-west1"}`)
		req.Header = http.Header{
			"Mcp-Param-Region": {"us-west1"},
			"Traceparent":      {"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"},
			"Authorization":    {"Bearer client-token"},
			"Cookie":           {"session=client"},
			"Mcp-Session-Id":   {"client-session"},
		}
		resp, err := c.RoundTrip(ctxT(t), req, nil)
		if err != nil {
			t.Fatal(err)
		}
		if got := toolText(t, resp); got != "region header us-west1" {
			t.Fatalf("tool saw %q", got)
		}
		h := rec.find(all)[0].Header
		for k, v := range map[string]string{
			"X-Api-Key": "upstream-key", "Mcp-Param-Region": "us-west1", "Traceparent": req.Header.Get("Traceparent"),
			"Authorization": "", "Cookie": "", "Mcp-Session-Id": "",
		} {
			if h.Get(k) != v {
				t.Errorf("%s: %q, want %q", k, h.Get(k), v)
			}
		}
	})
}

func TestModernErrorStatus(t *testing.T) {
	e := newEverything(t)
	ts, _ := sdkServer(t, e.Server, &mcp.StreamableHTTPOptions{Stateless: true})
	c := open(t, newUpstream(t, ts.URL, nil), core.EraModern, newSink())
	tests := []struct {
		name       string
		req        *core.Message
		wantCode   int
		wantStatus int
	}{
		{name: "unknown method", req: modernReq(t, "1", "no/such", ""), wantCode: core.CodeMethodNotFound, wantStatus: 404},
		{name: "unsupported version", req: msg(t, `{"jsonrpc":"2.0","id":2,"method":"tools/list","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2099-01-01","io.modelcontextprotocol/clientCapabilities":{}}}}`),
			wantCode: core.CodeUnsupportedProtocolVersion, wantStatus: 400},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := c.RoundTrip(ctxT(t), tt.req, nil)
			if err != nil {
				t.Fatal(err)
			}
			if errorCode(t, resp) != tt.wantCode || resp.Status != tt.wantStatus || resp.ID != tt.req.ID {
				t.Fatalf("%s status %d", resp.Raw, resp.Status)
			}
		})
	}
}

// In the modern era closing the stream is the cancellation.
func TestModernCancel(t *testing.T) {
	e := newEverything(t)
	ts, rec := sdkServer(t, e.Server, &mcp.StreamableHTTPOptions{Stateless: true, PropagateRequestCancellation: true})
	c := open(t, newUpstream(t, ts.URL, nil), core.EraModern, newSink())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := c.RoundTrip(ctx, modernReq(t, "1", "tools/call", `"name":"block","arguments":{}`), nil)
		done <- err
	}()
	<-e.started
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("RoundTrip: %v", err)
	}
	select {
	case <-e.cancelled:
	case <-time.After(wait):
		t.Fatal("the upstream tool kept running")
	}
	if n := len(rec.find(byRPC("notifications/cancelled"))); n != 0 {
		t.Fatal("notifications/cancelled sent over HTTP in the modern era")
	}
}

// subscriptions/listen: a long-lived response stream delivering to related
// until ctx ends.
func TestModernSubscriptionsListen(t *testing.T) {
	e := newEverything(t)
	ts, _ := sdkServer(t, e.Server, &mcp.StreamableHTTPOptions{Stateless: true})
	c := open(t, newUpstream(t, ts.URL, nil), core.EraModern, newSink())
	got := make(chan *core.Message, 16)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := c.RoundTrip(ctx, modernReq(t, "1", "subscriptions/listen", `"notifications":{"toolsListChanged":true}`),
			func(m *core.Message) { got <- m })
		done <- err
	}()
	next := func() *core.Message {
		select {
		case m := <-got:
			return m
		case <-time.After(wait):
			t.Fatal("nothing on the listen stream")
			return nil
		}
	}
	if m := next(); m.Method != "notifications/subscriptions/acknowledged" {
		t.Fatalf("first message %s", m.Raw)
	}
	mcp.AddTool(e.Server, &mcp.Tool{Name: "late"}, func(context.Context, *mcp.CallToolRequest, struct{}) (*mcp.CallToolResult, any, error) {
		return textResult(""), nil, nil
	})
	if m := next(); m.Method != "notifications/tools/list_changed" || m.Era != core.EraModern {
		t.Fatalf("got %s", m.Raw)
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("RoundTrip: %v", err)
	}
}

func TestModernClose(t *testing.T) {
	e := newEverything(t)
	ts, _ := sdkServer(t, e.Server, &mcp.StreamableHTTPOptions{Stateless: true, PropagateRequestCancellation: true})
	c := open(t, newUpstream(t, ts.URL, nil), core.EraModern, newSink())
	done := make(chan error, 1)
	go func() {
		_, err := c.RoundTrip(context.Background(), modernReq(t, "1", "tools/call", `"name":"block","arguments":{}`), nil)
		done <- err
	}()
	<-e.started
	if err := c.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := <-done; !errors.Is(err, upstream.ErrClosed) {
		t.Fatalf("in-flight RoundTrip after Close: %v", err)
	}
	<-e.cancelled
	if _, err := c.RoundTrip(ctxT(t), modernReq(t, "2", "tools/list", ""), nil); err == nil {
		t.Fatal("RoundTrip after Close succeeded")
	}
}
