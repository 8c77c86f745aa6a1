// Command consumer is a program outside the mcpgate module that uses only
// its public package: if a signature named an internal type, or a name
// went missing, this would not build.
package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpgate/mcpgate"
)

func main() {
	var opts *mcpgate.Options = &mcpgate.Options{
		Server:   mcpgate.Server{MaxBodyBytes: 1 << 20, StreamAfter: 2 * time.Second},
		Log:      mcpgate.Log{Level: "info"},
		Admin:    mcpgate.Admin{Listen: ""},
		Store:    mcpgate.Store{Kind: "memory"},
		Sessions: mcpgate.Sessions{Max: 100, WhenFull: "evict-oldest", IdleTimeout: 4 * time.Hour, PerAddress: &mcpgate.Cap{Max: 8, WhenFull: "reject"}, CreationRate: mcpgate.CreationRate{PerAddress: &mcpgate.Window{Limit: 10, Window: time.Minute}}},
		Auth:     &mcpgate.Auth{Anonymous: true, APIKeys: []mcpgate.APIKey{}, OAuth: (*mcpgate.OAuth)(nil)},
		Logger:   slog.New(slog.DiscardHandler),
		Hooks: mcpgate.Hooks{
			Created: func(s *mcpgate.Session) {},
			Resumed: func(s *mcpgate.Session, how string) {},
			Evicted: func(s *mcpgate.Session) {},
			Ended:   func(s *mcpgate.Session, reason string) {},
		},
	}
	opts.Sessions.RequestRate.PerSecond = 50
	if len(os.Args) > 1 {
		loaded, err := mcpgate.LoadOptions(os.Args[1])
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		opts = loaded
	}
	var getServer func(*http.Request) *mcp.Server = func(*http.Request) *mcp.Server {
		s := mcp.NewServer(&mcp.Implementation{Name: "consumer", Version: "1"}, nil)
		mcp.AddTool(s, &mcp.Tool{Name: "who"}, func(ctx context.Context, _ *mcp.CallToolRequest, _ struct{}) (*mcp.CallToolResult, any, error) {
			var ss *mcpgate.Session = mcpgate.SessionFromContext(ctx)
			var usage []mcpgate.QuotaUsage
			usage, _ = ss.QuotaUsage(ctx)
			_ = usage
			return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: ss.ID + " " + ss.Principal + " " + ss.Tenant}}}, nil, nil
		})
		return s
	}
	h, err := mcpgate.NewHandler(getServer, opts)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	var _ http.Handler = h
	var n int = h.Sessions()
	var closeErr error = h.Close(context.Background())
	var run func(context.Context, *mcpgate.Options) error = mcpgate.Run
	_ = run
	fmt.Println("sessions:", n, "close:", closeErr)
}
