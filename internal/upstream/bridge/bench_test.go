package bridge_test

import (
	"context"
	"encoding/json"
	"net/http/httptest"
	"testing"

	"github.com/mcpgate/mcpgate/internal/core"
	"github.com/mcpgate/mcpgate/internal/testutil/conformancefixture"
	"github.com/mcpgate/mcpgate/internal/upstream"
	"github.com/mcpgate/mcpgate/internal/upstream/bridge"
	"github.com/mcpgate/mcpgate/internal/upstream/httpup"
)

// BenchmarkToolCall measures one tools/call (test_simple_text) on a Conn,
// for each pairing of client era and server era, against the same go-sdk
// fixture over loopback HTTP: the native pairings are the baseline the
// translated ones are compared with.
//
//	go test ./internal/upstream/bridge -run '^$' -bench ToolCall
func BenchmarkToolCall(b *testing.B) {
	for _, bc := range []struct {
		name             string
		server, client   core.Era
		stateless        bool
		modernRequestsIn bool
	}{
		{"legacy-client/legacy-server", core.EraLegacy, core.EraLegacy, false, false},
		{"modern-client/legacy-server", core.EraLegacy, core.EraModern, false, true},
		{"modern-client/modern-server", core.EraModern, core.EraModern, true, true},
		{"legacy-client/modern-server", core.EraModern, core.EraLegacy, true, false},
	} {
		b.Run(bc.name, func(b *testing.B) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			srv := httptest.NewServer(conformancefixture.Handler(ctx, bc.stateless))
			defer srv.Close()
			inner, err := httpup.New(httpup.Options{URL: srv.URL + "/"}, "bench", nil)
			if err != nil {
				b.Fatal(err)
			}
			u := bridge.New(inner, bridge.Options{Era: bc.server})
			defer u.Close()
			info := &core.SessionInfo{ID: "bench", Era: bc.client}
			conn, err := u.Open(ctx, upstream.OpenParams{Session: info, Era: bc.client}, benchSink{})
			if err != nil {
				b.Fatal(err)
			}
			defer conn.Close(context.Background())
			if bc.client == core.EraLegacy {
				init := benchMsg(b, `{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"bench","version":"1"}}}`)
				if _, err := conn.RoundTrip(ctx, init, nil); err != nil {
					b.Fatal(err)
				}
				n, _ := core.Notification("notifications/initialized", nil)
				if err := conn.Send(ctx, n); err != nil {
					b.Fatal(err)
				}
			}
			call := `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"test_simple_text"}}`
			if bc.modernRequestsIn {
				call = `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"test_simple_text","_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{},"io.modelcontextprotocol/clientInfo":{"name":"bench","version":"1"}}}}`
			}
			raw := []byte(call)
			b.ReportAllocs()
			for b.Loop() {
				m, err := core.Decode(raw)
				if err != nil {
					b.Fatal(err)
				}
				resp, err := conn.RoundTrip(ctx, m, nil)
				if err != nil || resp.Kind != core.KindResponse {
					b.Fatalf("%v %v", resp, err)
				}
			}
		})
	}
}

type benchSink struct{}

func (benchSink) Deliver(*core.Message) {}
func (benchSink) Closed(error)          {}

func benchMsg(b *testing.B, s string) *core.Message {
	m, err := core.Decode(json.RawMessage(s))
	if err != nil {
		b.Fatal(err)
	}
	return m
}
