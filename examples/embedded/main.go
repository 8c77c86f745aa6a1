// Command embedded is a go-sdk MCP server that bounds its own sessions
// with mcpgate as a library: no second process. It serves a greet tool at
// /mcp, caps live sessions at 100 (the oldest evicted), admits 10 new
// sessions per minute per client address and ends sessions idle for 4 h.
// -config FILE reads the same settings from a mcpgate configuration file
// (without listeners or routes).
package main

import (
	"context"
	"errors"
	"flag"
	"log"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpgate/mcpgate"
)

type greetArgs struct {
	Name string `json:"name" jsonschema:"who to greet"`
}

func newServer(*http.Request) *mcp.Server {
	s := mcp.NewServer(&mcp.Implementation{Name: "embedded", Version: "1.0.0"}, nil)
	mcp.AddTool(s, &mcp.Tool{Name: "greet", Description: "greets, naming the caller's session"},
		func(ctx context.Context, _ *mcp.CallToolRequest, in greetArgs) (*mcp.CallToolResult, any, error) {
			text := "hello " + in.Name
			if ss := mcpgate.SessionFromContext(ctx); ss != nil {
				text += " (session of " + ss.Principal + ")"
			}
			return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: text}}}, nil, nil
		})
	return s
}

func main() {
	addr := flag.String("listen", "127.0.0.1:8080", "address to serve /mcp on")
	file := flag.String("config", "", "mcpgate configuration file (sessions, store, admin, auth)")
	flag.Parse()

	opts := &mcpgate.Options{Sessions: mcpgate.Sessions{
		Max: 100, WhenFull: "evict-oldest",
		CreationRate: mcpgate.CreationRate{PerAddress: &mcpgate.Window{Limit: 10, Window: time.Minute}},
		IdleTimeout:  4 * time.Hour,
	}}
	if *file != "" {
		var err error
		if opts, err = mcpgate.LoadOptions(*file); err != nil {
			log.Fatal(err)
		}
	}
	opts.Logger = slog.New(slog.NewTextHandler(os.Stderr, nil))
	opts.Hooks.Ended = func(s *mcpgate.Session, reason string) {
		opts.Logger.Info("session ended", "client", s.ClientName, "reason", reason)
	}
	h, err := mcpgate.NewHandler(newServer, opts)
	if err != nil {
		log.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/mcp", h)
	srv := &http.Server{Addr: *addr, Handler: mux, ReadHeaderTimeout: 10 * time.Second}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		// Ending the sessions first closes their streams, which Shutdown
		// would otherwise wait for.
		_ = h.Close(sctx)
		_ = srv.Shutdown(sctx)
	}()
	log.Printf("serving MCP at http://%s/mcp", *addr)
	if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Fatal(err)
	}
}
