package mcpgate_test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync/atomic"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpgate/mcpgate"
)

type benchIn struct {
	Text string `json:"text"`
}

func benchServer(*http.Request) *mcp.Server {
	s := mcp.NewServer(&mcp.Implementation{Name: "bench", Version: "1"}, nil)
	mcp.AddTool(s, &mcp.Tool{Name: "echo"}, func(_ context.Context, _ *mcp.CallToolRequest, in benchIn) (*mcp.CallToolResult, any, error) {
		return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: in.Text}}}, nil, nil
	})
	return s
}

// post sends one JSON-RPC message in session sid and drains the answer.
func post(b *testing.B, c *http.Client, url, sid string, body []byte) string {
	req, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	req.Header.Set("Mcp-Protocol-Version", "2025-11-25")
	if sid != "" {
		req.Header.Set("Mcp-Session-Id", sid)
	}
	resp, err := c.Do(req)
	if err != nil {
		b.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		b.Fatalf("HTTP %d for %s", resp.StatusCode, body)
	}
	return resp.Header.Get("Mcp-Session-Id")
}

// benchCalls runs tools/call in parallel, one legacy session per worker.
func benchCalls(b *testing.B, h http.Handler) {
	srv := httptest.NewServer(h)
	defer srv.Close()
	url := srv.URL + "/mcp"
	c := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	init := []byte(`{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"bench","version":"1"}}}`)
	initialized := []byte(`{"jsonrpc":"2.0","method":"notifications/initialized"}`)
	var ids atomic.Int64
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		sid := post(b, c, url, "", init)
		post(b, c, url, sid, initialized)
		n := ids.Add(1) << 32
		for pb.Next() {
			n++
			post(b, c, url, sid, []byte(`{"jsonrpc":"2.0","id":`+strconv.FormatInt(n, 10)+`,"method":"tools/call","params":{"name":"echo","arguments":{"text":"hello"}}}`))
		}
	})
}

// BenchmarkPlainHandler is go-sdk's own Streamable HTTP handler (JSON
// responses, its fastest setting) serving the server directly. Both
// benchmarks share one server across sessions: go-sdk's handler calls
// getServer on every request.
func BenchmarkPlainHandler(b *testing.B) {
	s := benchServer(nil)
	benchCalls(b, mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return s }, &mcp.StreamableHTTPOptions{JSONResponse: true}))
}

// BenchmarkHandler is the same server wrapped by mcpgate.NewHandler with
// the zero Options (caps, idle timeout, creation rate, memory store), but
// for the per-address cap, off so that the workers' sessions, all from one
// address, stay below it.
func BenchmarkHandler(b *testing.B) {
	s := benchServer(nil)
	h, err := mcpgate.NewHandler(func(*http.Request) *mcp.Server { return s }, &mcpgate.Options{Sessions: mcpgate.Sessions{PerAddress: &mcpgate.Cap{}}})
	if err != nil {
		b.Fatal(err)
	}
	defer h.Close(context.Background())
	benchCalls(b, h)
}
