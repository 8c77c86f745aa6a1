// Command stubborn is a stdio MCP server that does not exit when its stdin
// closes and ignores SIGTERM, and that starts a helper process (in its
// process group) that does the same: what a careless server, or a wrapper
// such as `go run` or `npx` and the server it starts, looks like to mcpgate.
// It writes a file named after its pid, holding the helper's pid, into
// the directory given with -piddir before it serves.
package main

import (
	"context"
	"flag"
	"log"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"syscall"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

func main() {
	piddir := flag.String("piddir", "", "where to write <pid> holding the helper's pid")
	helper := flag.Bool("helper", false, "be the helper: wait forever")
	flag.Parse()
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	if *helper {
		for range sigs {
		}
	}
	h := exec.Command(os.Args[0], "-helper")
	if err := h.Start(); err != nil {
		log.Fatal(err)
	}
	if *piddir != "" {
		name := filepath.Join(*piddir, strconv.Itoa(os.Getpid()))
		if err := os.WriteFile(name+".tmp", []byte(strconv.Itoa(h.Process.Pid)), 0o600); err != nil {
			log.Fatal(err)
		}
		if err := os.Rename(name+".tmp", name); err != nil {
			log.Fatal(err)
		}
	}
	s := mcp.NewServer(&mcp.Implementation{Name: "stubborn", Version: "1.0.0"}, nil)
	mcp.AddTool(s, &mcp.Tool{Name: "pid"}, func(context.Context, *mcp.CallToolRequest, struct{}) (*mcp.CallToolResult, any, error) {
		return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: strconv.Itoa(os.Getpid())}}}, nil, nil
	})
	_ = s.Run(context.Background(), &mcp.StdioTransport{})
	// stdin is closed: carry on regardless.
	for range sigs {
	}
}
