package inproc_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpgate/mcpgate/internal/core"
	"github.com/mcpgate/mcpgate/internal/upstream"
	"github.com/mcpgate/mcpgate/internal/upstream/inproc"
)

type echoIn struct {
	Text string `json:"text"`
}

func newServer(versions []string) *mcp.Server {
	s := mcp.NewServer(&mcp.Implementation{Name: "echo", Version: "1"}, &mcp.ServerOptions{SupportedProtocolVersions: versions})
	mcp.AddTool(s, &mcp.Tool{Name: "echo"}, func(ctx context.Context, req *mcp.CallToolRequest, in echoIn) (*mcp.CallToolResult, any, error) {
		id := "none"
		if si := inproc.SessionOf(ctx); si != nil {
			id = si.ID
		}
		return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: in.Text + "@" + id}}}, nil, nil
	})
	return s
}

type sink struct {
	mu     sync.Mutex
	closed error
}

func (s *sink) Deliver(*core.Message) {}
func (s *sink) Closed(err error)      { s.mu.Lock(); s.closed = err; s.mu.Unlock() }

func msg(t *testing.T, raw string) *core.Message {
	t.Helper()
	m, err := core.Decode([]byte(raw))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestProbeEras(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name       string
		versions   []string
		era        core.Era
		modernOnly bool
	}{
		{"both", nil, core.EraModern, false},
		{"modern only", []string{core.Version20260728}, core.EraModern, true},
		{"legacy only", []string{core.Version20251125, core.Version20250618}, core.EraLegacy, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			u, err := inproc.New(inproc.Options{Server: func(context.Context, *core.SessionInfo) *mcp.Server { return newServer(tc.versions) }}, "r", nil)
			if err != nil {
				t.Fatal(err)
			}
			info, err := u.Probe(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if info.Era != tc.era || info.ModernOnly != tc.modernOnly {
				t.Fatalf("probe = %+v, want era %v modern only %v", info, tc.era, tc.modernOnly)
			}
		})
	}
}

func TestLegacySession(t *testing.T) {
	t.Parallel()
	u, _ := inproc.New(inproc.Options{Server: func(context.Context, *core.SessionInfo) *mcp.Server { return newServer(nil) }}, "r", nil)
	sk := &sink{}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := u.Open(ctx, upstream.OpenParams{Session: &core.SessionInfo{ID: "s1"}, Era: core.EraLegacy}, sk)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := c.RoundTrip(ctx, msg(t, `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}`), nil)
	if err != nil || resp.Kind != core.KindResponse || string(resp.ID) != "1" {
		t.Fatalf("initialize: %v %+v", err, resp)
	}
	if err := c.Send(ctx, msg(t, `{"jsonrpc":"2.0","method":"notifications/initialized"}`)); err != nil {
		t.Fatal(err)
	}
	resp, err = c.RoundTrip(ctx, msg(t, `{"jsonrpc":"2.0","id":"a","method":"tools/call","params":{"name":"echo","arguments":{"text":"hi"}}}`), nil)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(resp.Result), "hi@s1") {
		t.Fatalf("tools/call result %s, want the text and the session id from the handler's context", resp.Result)
	}
	if err := c.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := c.RoundTrip(ctx, msg(t, `{"jsonrpc":"2.0","id":2,"method":"ping"}`), nil); err == nil {
		t.Fatal("a request after Close succeeded")
	}
	sk.mu.Lock()
	defer sk.mu.Unlock()
	if sk.closed != nil {
		t.Fatalf("the Sink was told of an end Close started: %v", sk.closed)
	}
}
