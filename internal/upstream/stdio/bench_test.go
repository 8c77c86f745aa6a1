package stdio

import (
	"context"
	"strconv"
	"sync/atomic"
	"testing"

	"github.com/mcpgate/mcpgate/internal/core"
)

// BenchmarkRoundTripEcho measures one tools/call echo through a Conn to the
// go-sdk server process: write, the server's work, read, decode, route.
// Allocations are mcpgate's side only (the server is another process).
func BenchmarkRoundTripEcho(b *testing.B) {
	u := newTestUpstream(b, Options{})
	c, _, _ := u.open(b, core.EraLegacy)
	initialize(b, c)
	req := toolCall(b, 1, "echo", map[string]any{"text": "hello"}, nil)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		// Sequential: id 1 is never in flight twice.
		resp, err := c.RoundTrip(ctx, req, nil)
		if err != nil || resp.Kind != core.KindResponse {
			b.Fatalf("RoundTrip: %v", err)
		}
	}
}

// BenchmarkRoundTripEchoParallel keeps several calls in flight on one Conn,
// as a busy session does.
func BenchmarkRoundTripEchoParallel(b *testing.B) {
	u := newTestUpstream(b, Options{})
	c, _, _ := u.open(b, core.EraLegacy)
	initialize(b, c)
	var next atomic.Int64
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		ctx := context.Background()
		for pb.Next() {
			id := next.Add(1)
			raw := `{"jsonrpc":"2.0","id":` + strconv.FormatInt(id, 10) + `,"method":"tools/call","params":{"name":"echo","arguments":{"text":"hello"}}}`
			req, err := core.Decode([]byte(raw))
			if err != nil {
				b.Fatal(err)
			}
			if _, err := c.RoundTrip(ctx, req, nil); err != nil {
				b.Fatalf("RoundTrip: %v", err)
			}
		}
	})
}

// BenchmarkWrite isolates the write path (no compaction needed) against a
// process that discards its input.
func BenchmarkWrite(b *testing.B) {
	for _, bc := range []struct {
		name string
		raw  string
	}{
		{"compact", `{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":1,"progress":2}}`},
		{"pretty", "{\n  \"jsonrpc\": \"2.0\",\n  \"method\": \"notifications/progress\",\n  \"params\": {\"progressToken\": 1, \"progress\": 2}\n}"},
	} {
		b.Run(bc.name, func(b *testing.B) {
			u := newTestUpstream(b, script(`cat >/dev/null`))
			c, _, _ := u.open(b, core.EraLegacy)
			m := decode(b, bc.raw)
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				if err := c.Send(ctx, m); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestRoundTripAllocs bounds what one round trip allocates on the Conn's
// side against a real go-sdk child: the response line copied out of the
// reader's buffer and its decoded message. The call record and its
// completion channel are pooled.
func TestRoundTripAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates on its own")
	}
	u := newTestUpstream(t, Options{})
	c, _, _ := u.open(t, core.EraLegacy)
	initialize(t, c)
	req := toolCall(t, 1, "echo", map[string]any{"text": "hello"}, nil)
	ctx := context.Background()
	call := func() {
		if resp, err := c.RoundTrip(ctx, req, nil); err != nil || resp.Kind != core.KindResponse {
			t.Fatalf("RoundTrip: %v", err)
		}
	}
	for range 20 {
		call()
	}
	const most = 4
	if n := testing.AllocsPerRun(100, call); n > most {
		t.Fatalf("%.1f allocations per round trip, want at most %d", n, most)
	} else {
		t.Logf("%.1f allocations per round trip", n)
	}
}
