package shared

import (
	"context"
	"testing"

	"github.com/mcpgate/mcpgate/internal/core"
	"github.com/mcpgate/mcpgate/internal/upstream"
)

// BenchmarkRoundTrip: one tools/call on an in-process go-sdk server,
// straight to its Conn (what share: session does) and through a shared
// Conn (share: route), for what the multiplexer adds per call.
func BenchmarkRoundTrip(b *testing.B) {
	_, u, _ := newServer(b)
	ctx := context.Background()
	init := func(c upstream.Conn) {
		m, _ := core.Decode([]byte(`{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"b","version":"1"}}}`))
		m.Direction, m.Era = core.ClientToServer, core.EraLegacy
		if _, err := c.RoundTrip(ctx, m, nil); err != nil {
			b.Fatal(err)
		}
		n, _ := core.Notification("notifications/initialized", nil)
		n.Direction, n.Era = core.ClientToServer, core.EraLegacy
		_ = c.Send(ctx, n)
	}
	call := []byte(`{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"work","arguments":{"tag":"x","sample":false}}}`)
	for _, side := range []struct {
		name string
		up   upstream.Upstream
	}{{"direct", u.Inner()}, {"shared", u}} {
		b.Run(side.name, func(b *testing.B) {
			c, err := side.up.Open(ctx, upstream.OpenParams{Session: &core.SessionInfo{ID: side.name}, Era: core.EraLegacy}, newSink())
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close(ctx)
			init(c)
			b.ReportAllocs()
			for b.Loop() {
				m, _ := core.Decode(call)
				m.Direction, m.Era = core.ClientToServer, core.EraLegacy
				resp, err := c.RoundTrip(ctx, m, nil)
				if err != nil || resp.Kind != core.KindResponse {
					b.Fatal(err)
				}
			}
		})
	}
}
