package httpup_test

import (
	"context"
	"net/http"
	"strconv"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpgate/mcpgate/internal/core"
)

// BenchmarkLegacyRoundTrip measures one tools/call through a legacy Conn.
// Allocations count the whole process: the go-sdk rows include the server's
// own work; the static row isolates the client side.
func BenchmarkLegacyRoundTrip(b *testing.B) {
	static := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"text","text":"hi"}]}}`))
	})
	cases := []struct {
		name string
		h    func(b *testing.B) http.Handler
		init bool
	}{
		{name: "go-sdk-sse", init: true, h: func(b *testing.B) http.Handler {
			s := newEverything(b).Server
			return mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return s }, nil)
		}},
		{name: "go-sdk-json", init: true, h: func(b *testing.B) http.Handler {
			s := newEverything(b).Server
			return mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return s }, &mcp.StreamableHTTPOptions{JSONResponse: true})
		}},
		{name: "static-json", h: func(*testing.B) http.Handler { return static }},
	}
	for _, bc := range cases {
		b.Run(bc.name, func(b *testing.B) {
			ts, _ := serve(b, bc.h(b))
			c := open(b, newUpstream(b, ts.URL, nil), core.EraLegacy, newSink())
			if bc.init {
				initialize(b, c, core.Version20251125)
			}
			ctx := context.Background()
			// Distinct ids, built before the loop: a gateway gets decoded messages.
			const n = 1 << 12
			reqs := make([]*core.Message, n)
			for i := range reqs {
				id := "1"
				if bc.init {
					id = strconv.Itoa(i + 1)
				}
				reqs[i] = msg(b, `{"jsonrpc":"2.0","id":`+id+`,"method":"tools/call","params":{"name":"echo","arguments":{"text":"hi"}}}`)
			}
			i := 0
			b.ReportAllocs()
			for b.Loop() {
				resp, err := c.RoundTrip(ctx, reqs[i%n], nil)
				if err != nil {
					b.Fatal(err)
				}
				if resp.Kind != core.KindResponse {
					b.Fatalf("%s", resp.Raw)
				}
				i++
			}
		})
	}
}
