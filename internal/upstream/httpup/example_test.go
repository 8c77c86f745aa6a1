package httpup_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpgate/mcpgate/internal/core"
	"github.com/mcpgate/mcpgate/internal/upstream"
	"github.com/mcpgate/mcpgate/internal/upstream/httpup"
)

func ExampleUpstream_Probe() {
	s := mcp.NewServer(&mcp.Implementation{Name: "weather", Version: "1"}, nil)
	srv := httptest.NewServer(mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return s },
		&mcp.StreamableHTTPOptions{Stateless: true}))
	defer srv.Close()

	up, err := httpup.New(httpup.Options{URL: srv.URL}, "weather", nil)
	if err != nil {
		panic(err)
	}
	defer up.Close()
	ctx := context.Background()
	info, err := up.Probe(ctx)
	if err != nil {
		panic(err)
	}
	fmt.Println(info.Era, info.ModernVersions)

	conn, err := up.Open(ctx, upstream.OpenParams{Era: info.Era}, nil)
	if err != nil {
		panic(err)
	}
	defer conn.Close(ctx)
	req, _ := core.Decode([]byte(`{"jsonrpc":"2.0","id":1,"method":"no/such","params":{"_meta":{` +
		`"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}}}`))
	resp, err := conn.RoundTrip(ctx, req, nil)
	if err != nil {
		panic(err)
	}
	fmt.Println(resp.ErrorCode(), resp.Status)
	// Output:
	// modern [2026-07-28]
	// -32601 404
}
