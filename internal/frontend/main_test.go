package frontend

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
	"go.uber.org/goleak"

	"github.com/mcpgate/mcpgate/internal/testutil/testenv"
)

// helperServerEnv makes the test binary a go-sdk stdio server (see
// helperServer) instead of running the tests: the real child process the
// delivery tests put behind the gateway.
const helperServerEnv = "MCPGATE_FRONTEND_TEST_SERVER"

func TestMain(m *testing.M) {
	if os.Getenv(helperServerEnv) == "1" {
		helperServer()
		return
	}
	goleak.VerifyTestMain(m,
		// The stdio spawners live as long as the process, on purpose.
		goleak.IgnoreTopFunction("github.com/mcpgate/mcpgate/internal/upstream/stdio.spawnLoop"),
		goleak.Cleanup(func(code int) {
			testenv.Report()
			os.Exit(code)
		}))
}

// helperServer serves MCP on stdin/stdout with the tools the delivery
// tests need:
//
//   - flood {n}: n progress notifications of 64 KiB each, then "flooded";
//   - slow {ms}: answers "slept" after ms milliseconds (or when cancelled);
//   - notify: one progress notification ("step"), then "done";
//   - sample: a sampling request to the client, answered with its text.
func helperServer() {
	s := mcp.NewServer(&mcp.Implementation{Name: "frontend-test-server", Version: "1"}, nil)
	mcp.AddTool(s, &mcp.Tool{Name: "flood"}, func(ctx context.Context, req *mcp.CallToolRequest, in struct {
		N int `json:"n"`
	}) (*mcp.CallToolResult, any, error) {
		chunk := strings.Repeat("x", 64<<10)
		for i := range in.N {
			if err := req.Session.NotifyProgress(ctx, &mcp.ProgressNotificationParams{ProgressToken: req.Params.GetProgressToken(), Progress: float64(i), Message: chunk}); err != nil {
				return nil, nil, err
			}
		}
		return text("flooded"), nil, nil
	})
	mcp.AddTool(s, &mcp.Tool{Name: "slow"}, func(ctx context.Context, _ *mcp.CallToolRequest, in struct {
		MS int `json:"ms"`
	}) (*mcp.CallToolResult, any, error) {
		select {
		case <-time.After(time.Duration(in.MS) * time.Millisecond):
			return text("slept"), nil, nil
		case <-ctx.Done(): // cancelled by the client (notifications/cancelled)
			return nil, nil, ctx.Err()
		}
	})
	mcp.AddTool(s, &mcp.Tool{Name: "notify"}, func(ctx context.Context, req *mcp.CallToolRequest, _ struct{}) (*mcp.CallToolResult, any, error) {
		err := req.Session.NotifyProgress(ctx, &mcp.ProgressNotificationParams{ProgressToken: req.Params.GetProgressToken(), Progress: 1, Message: "step"})
		return text("done"), nil, err
	})
	mcp.AddTool(s, &mcp.Tool{Name: "sample"}, func(ctx context.Context, req *mcp.CallToolRequest, _ struct{}) (*mcp.CallToolResult, any, error) {
		res, err := req.Session.CreateMessage(ctx, &mcp.CreateMessageParams{MaxTokens: 10, Messages: []*mcp.SamplingMessage{{Role: "user", Content: &mcp.TextContent{Text: "hi"}}}})
		if err != nil {
			return nil, nil, err
		}
		t, _ := res.Content.(*mcp.TextContent)
		if t == nil {
			return nil, nil, fmt.Errorf("sampling answered with %T", res.Content)
		}
		return text("sampled: " + t.Text), nil, nil
	})
	if err := s.Run(context.Background(), &mcp.StdioTransport{}); err != nil {
		fmt.Fprintln(os.Stderr, "helper server:", err)
		os.Exit(1)
	}
	os.Exit(0)
}

func text(s string) *mcp.CallToolResult {
	return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: s}}}
}
