package mcpgate_test

import (
	"context"
	"fmt"
	"log"
	"net/http"
	"net/http/httptest"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpgate/mcpgate"
)

// A go-sdk server, bounded: the zero Options cap live sessions, end idle
// ones and rate-limit creation per client address.
func ExampleNewHandler() {
	h, err := mcpgate.NewHandler(func(*http.Request) *mcp.Server {
		return mcp.NewServer(&mcp.Implementation{Name: "bounded", Version: "1"}, nil)
	}, nil)
	if err != nil {
		log.Fatal(err)
	}
	defer h.Close(context.Background())
	http.Handle("/mcp", h) // then http.ListenAndServe as usual
}

// The Rust crate's bounded session manager, the Go way: at most 100 live
// sessions (the oldest evicted for a new one), 10 new sessions per minute
// per client address, sessions idle for 4 hours ended. Exact under
// concurrency, in both protocol eras.
func ExampleNewHandler_bounded() {
	opts := &mcpgate.Options{Sessions: mcpgate.Sessions{
		Max: 100, WhenFull: "evict-oldest",
		CreationRate: mcpgate.CreationRate{PerAddress: &mcpgate.Window{Limit: 10, Window: time.Minute}},
		IdleTimeout:  4 * time.Hour,
	}}
	h, err := mcpgate.NewHandler(newGreeter, opts)
	if err != nil {
		log.Fatal(err)
	}
	srv := httptest.NewServer(h)
	defer srv.Close()
	defer h.Close(context.Background())

	client := mcp.NewClient(&mcp.Implementation{Name: "client", Version: "1"}, nil)
	cs, err := client.Connect(context.Background(), &mcp.StreamableClientTransport{Endpoint: srv.URL + "/mcp"}, nil)
	if err != nil {
		log.Fatal(err)
	}
	defer cs.Close()
	res, err := cs.CallTool(context.Background(), &mcp.CallToolParams{Name: "greet", Arguments: map[string]any{"name": "gopher"}})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(res.Content[0].(*mcp.TextContent).Text)
	fmt.Println("live sessions:", h.Sessions())
	// Output:
	// hello gopher, from an anonymous session
	// live sessions: 1
}

type greetArgs struct {
	Name string `json:"name"`
}

// newGreeter is the embedded server: its tool reads the mcpgate session it
// runs in.
func newGreeter(*http.Request) *mcp.Server {
	s := mcp.NewServer(&mcp.Implementation{Name: "greeter", Version: "1"}, nil)
	mcp.AddTool(s, &mcp.Tool{Name: "greet"}, func(ctx context.Context, _ *mcp.CallToolRequest, in greetArgs) (*mcp.CallToolResult, any, error) {
		ss := mcpgate.SessionFromContext(ctx)
		text := fmt.Sprintf("hello %s, from an %s session", in.Name, ss.Principal)
		return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: text}}}, nil, nil
	})
	return s
}

// Tuning an embedded server without a rebuild: the operator's file holds
// the sessions, store, admin and auth sections of mcpgate's configuration.
func ExampleLoadOptions() {
	opts, err := mcpgate.LoadOptions("mcpgate.yaml")
	if err != nil {
		log.Fatal(err)
	}
	opts.Hooks.Ended = func(s *mcpgate.Session, reason string) { log.Printf("session %s ended: %s", s.ID, reason) }
	h, err := mcpgate.NewHandler(newGreeter, opts)
	if err != nil {
		log.Fatal(err)
	}
	defer h.Close(context.Background())
	http.Handle("/mcp", h)
}
