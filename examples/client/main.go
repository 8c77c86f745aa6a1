// Command client calls the echo tool through mcpgate and prints the answer:
//
//	go run ./examples/client http://127.0.0.1:8080/mcp
//	go run ./examples/client -protocol 2026-07-28 http://127.0.0.1:8080/mcp
//
// By default it speaks 2025-11-25, the session era: initialize opens a
// session of its own (for a stdio route, a process of its own), which
// mcpgate keeps in its store, so it continues after a gateway restart, and
// which ends when the client closes it. -protocol 2026-07-28 speaks the
// stateless era instead: no initialize and no session id; mcpgate
// correlates such requests itself (see the README's Sessions section),
// and that correlation does not outlive the gateway process.
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

func main() {
	protocol := flag.String("protocol", "2025-11-25", "protocol version to speak: 2025-11-25 (a session) or 2026-07-28 (stateless)")
	flag.Parse()
	url := "http://127.0.0.1:8080/mcp"
	if flag.NArg() > 0 {
		url = flag.Arg(0)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	client := mcp.NewClient(&mcp.Implementation{Name: "example-client", Version: "1.0.0"}, nil)
	cs, err := client.Connect(ctx, &mcp.StreamableClientTransport{Endpoint: url}, &mcp.ClientSessionOptions{ProtocolVersion: *protocol})
	if err != nil {
		log.Fatalf("connect %s: %v", url, err)
	}
	defer cs.Close()
	fmt.Println("protocol:", cs.InitializeResult().ProtocolVersion)
	tools, err := cs.ListTools(ctx, nil)
	if err != nil {
		log.Fatal(err)
	}
	for _, t := range tools.Tools {
		fmt.Printf("tool: %s — %s\n", t.Name, t.Description)
	}
	res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "echo", Arguments: map[string]any{"text": "hello through mcpgate"}})
	if err != nil {
		log.Fatal(err)
	}
	for _, c := range res.Content {
		if t, ok := c.(*mcp.TextContent); ok {
			fmt.Println("echo:", t.Text)
		}
	}
}
