// Command client calls the echo tool through mcpgate and prints the answer:
//
//	go run ./examples/client http://127.0.0.1:8080/mcp
//	go run ./examples/client -protocol 2026-07-28 http://127.0.0.1:8080/mcp
//
// -protocol pins the protocol version the client speaks (default: the
// newest the go-sdk client offers).
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
	protocol := flag.String("protocol", "", "protocol version to speak, e.g. 2025-11-25 or 2026-07-28")
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
