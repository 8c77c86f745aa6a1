// Command shareserver is the stdio server of the shared-upstream test: a
// tool that reports progress, logs and asks its client for a sample, all
// tagged with the caller's tag, and subscribable resources it updates on
// request. The progress token of the tool call travels in the _meta of
// its sampling request and log messages, so a gateway sharing the process
// among sessions can tell whose they are.
package main

import (
	"context"
	"fmt"
	"log"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

type workArgs struct {
	Tag    string `json:"tag"`
	Steps  int    `json:"steps"`
	Sample bool   `json:"sample"`
}

type touchArgs struct {
	URI string `json:"uri"`
}

func main() {
	var s *mcp.Server
	s = mcp.NewServer(&mcp.Implementation{Name: "shareserver", Version: "1.0.0"}, &mcp.ServerOptions{
		SubscribeHandler:   func(context.Context, *mcp.SubscribeRequest) error { return nil },
		UnsubscribeHandler: func(context.Context, *mcp.UnsubscribeRequest) error { return nil },
	})
	mcp.AddTool(s, &mcp.Tool{Name: "work", Description: "Report progress, log and sample, tagged"},
		func(ctx context.Context, req *mcp.CallToolRequest, in workArgs) (*mcp.CallToolResult, any, error) {
			tok := req.Params.GetProgressToken()
			meta := mcp.Meta{}
			if tok != nil {
				meta["progressToken"] = tok
			}
			for i := 1; i <= in.Steps; i++ {
				if tok != nil {
					_ = req.Session.NotifyProgress(ctx, &mcp.ProgressNotificationParams{
						ProgressToken: tok, Progress: float64(i), Total: float64(in.Steps), Message: in.Tag,
					})
				}
				_ = req.Session.Log(ctx, &mcp.LoggingMessageParams{Meta: meta, Level: "info", Data: in.Tag})
			}
			reply := ""
			if in.Sample {
				res, err := req.Session.CreateMessage(ctx, &mcp.CreateMessageParams{
					Meta: meta, MaxTokens: 10,
					Messages: []*mcp.SamplingMessage{{Role: "user", Content: &mcp.TextContent{Text: in.Tag}}},
				})
				if err != nil {
					return nil, nil, err
				}
				if t, ok := res.Content.(*mcp.TextContent); ok {
					reply = t.Text
				}
			}
			return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: in.Tag + "|" + reply}}}, nil, nil
		})
	mcp.AddTool(s, &mcp.Tool{Name: "touch", Description: "Update a resource"},
		func(ctx context.Context, _ *mcp.CallToolRequest, in touchArgs) (*mcp.CallToolResult, any, error) {
			if err := s.ResourceUpdated(ctx, &mcp.ResourceUpdatedNotificationParams{URI: in.URI}); err != nil {
				return nil, nil, err
			}
			return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: "touched"}}}, nil, nil
		})
	s.AddResourceTemplate(&mcp.ResourceTemplate{Name: "res", URITemplate: "res://{name}"},
		func(_ context.Context, req *mcp.ReadResourceRequest) (*mcp.ReadResourceResult, error) {
			return &mcp.ReadResourceResult{Contents: []*mcp.ResourceContents{{URI: req.Params.URI, Text: fmt.Sprint("contents of ", req.Params.URI)}}}, nil
		})
	if err := s.Run(context.Background(), &mcp.StdioTransport{}); err != nil {
		log.Fatal(err)
	}
}
