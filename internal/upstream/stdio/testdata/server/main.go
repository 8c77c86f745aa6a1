// Command server is the go-sdk stdio MCP server the stdio upstream tests
// spawn. Its tools exercise what a gateway must route: progress, sampling
// during a call, cancellation, stderr output and a crashing process.
//
// With -legacy it supports only the legacy (initialize) revisions, so a
// server/discover probe is answered with -32022 listing legacy versions.
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"os"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

type echoArgs struct {
	Text string `json:"text"`
}

type slowArgs struct {
	Steps   int `json:"steps"`
	DelayMS int `json:"delay_ms"`
}

type sampleArgs struct {
	Prompt string `json:"prompt"`
}

type crashArgs struct {
	Code int `json:"code"`
}

type pathArgs struct {
	Path string `json:"path"`
}

type sizeArgs struct {
	MiB int `json:"mib"`
}

type countArgs struct {
	N int `json:"n"`
}

type envArgs struct {
	Name string `json:"name"`
}

func text(s string) *mcp.CallToolResult {
	return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: s}}}
}

func main() {
	legacy := flag.Bool("legacy", false, "support only the legacy revisions")
	flag.Parse()
	log.SetFlags(0)
	log.SetOutput(os.Stderr)

	var opts mcp.ServerOptions
	if *legacy {
		opts.SupportedProtocolVersions = []string{"2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05"}
	}
	s := mcp.NewServer(&mcp.Implementation{Name: "stdio-test-server", Version: "0.0.1"}, &opts)

	mcp.AddTool(s, &mcp.Tool{Name: "echo", Description: "Echo the text back"},
		func(_ context.Context, _ *mcp.CallToolRequest, in echoArgs) (*mcp.CallToolResult, any, error) {
			return text(in.Text), nil, nil
		})

	mcp.AddTool(s, &mcp.Tool{Name: "slow", Description: "Take steps, reporting progress; honours cancellation"},
		func(ctx context.Context, req *mcp.CallToolRequest, in slowArgs) (*mcp.CallToolResult, any, error) {
			delay := time.Duration(in.DelayMS) * time.Millisecond
			for i := 1; i <= in.Steps; i++ {
				if tok := req.Params.GetProgressToken(); tok != nil {
					_ = req.Session.NotifyProgress(ctx, &mcp.ProgressNotificationParams{
						ProgressToken: tok, Progress: float64(i), Total: float64(in.Steps),
					})
				}
				select {
				case <-ctx.Done():
					log.Printf("slow: cancelled at step %d", i)
					return nil, nil, ctx.Err()
				case <-time.After(delay):
				}
			}
			return text(fmt.Sprintf("done %d steps", in.Steps)), nil, nil
		})

	mcp.AddTool(s, &mcp.Tool{Name: "sample", Description: "Ask the client to sample, return its answer"},
		func(ctx context.Context, req *mcp.CallToolRequest, in sampleArgs) (*mcp.CallToolResult, any, error) {
			res, err := req.Session.CreateMessage(ctx, &mcp.CreateMessageParams{
				MaxTokens: 10,
				Messages:  []*mcp.SamplingMessage{{Role: "user", Content: &mcp.TextContent{Text: in.Prompt}}},
			})
			if err != nil {
				return nil, nil, err
			}
			answer := ""
			if tc, ok := res.Content.(*mcp.TextContent); ok {
				answer = tc.Text
			}
			return text("sampled: " + answer), nil, nil
		})

	mcp.AddTool(s, &mcp.Tool{Name: "crash", Description: "Exit the process at once with the given code"},
		func(_ context.Context, _ *mcp.CallToolRequest, in crashArgs) (*mcp.CallToolResult, any, error) {
			log.Printf("crash: exiting with code %d", in.Code)
			os.Exit(in.Code)
			return nil, nil, nil
		})

	mcp.AddTool(s, &mcp.Tool{Name: "stderr", Description: "Write the text to stderr"},
		func(_ context.Context, _ *mcp.CallToolRequest, in echoArgs) (*mcp.CallToolResult, any, error) {
			fmt.Fprintln(os.Stderr, in.Text)
			return text("written"), nil, nil
		})

	mcp.AddTool(s, &mcp.Tool{Name: "env", Description: "Report an environment variable"},
		func(_ context.Context, _ *mcp.CallToolRequest, in envArgs) (*mcp.CallToolResult, any, error) {
			v, ok := os.LookupEnv(in.Name)
			if !ok {
				return text("<unset>"), nil, nil
			}
			return text(v), nil, nil
		})

	// Tools that misbehave, for the sandbox tests.
	mcp.AddTool(s, &mcp.Tool{Name: "read", Description: "Read a file"},
		func(_ context.Context, _ *mcp.CallToolRequest, in pathArgs) (*mcp.CallToolResult, any, error) {
			b, err := os.ReadFile(in.Path)
			if err != nil {
				return text("error: " + err.Error()), nil, nil
			}
			return text(string(b)), nil, nil
		})

	mcp.AddTool(s, &mcp.Tool{Name: "write", Description: "Create a file"},
		func(_ context.Context, _ *mcp.CallToolRequest, in pathArgs) (*mcp.CallToolResult, any, error) {
			if err := os.WriteFile(in.Path, []byte("written"), 0o600); err != nil {
				return text("error: " + err.Error()), nil, nil
			}
			return text("written"), nil, nil
		})

	mcp.AddTool(s, &mcp.Tool{Name: "alloc", Description: "Allocate memory"},
		func(_ context.Context, _ *mcp.CallToolRequest, in sizeArgs) (*mcp.CallToolResult, any, error) {
			b := make([]byte, in.MiB<<20)
			for i := 0; i < len(b); i += 4096 {
				b[i] = 1
			}
			return text(fmt.Sprintf("allocated %d MiB", len(b)>>20)), nil, nil
		})

	var held []*os.File
	mcp.AddTool(s, &mcp.Tool{Name: "openfiles", Description: "Open files until n are open or opening fails"},
		func(_ context.Context, _ *mcp.CallToolRequest, in countArgs) (*mcp.CallToolResult, any, error) {
			for len(held) < in.N {
				f, err := os.Open("/dev/null")
				if err != nil {
					return text(fmt.Sprintf("opened %d: %v", len(held), err)), nil, nil
				}
				held = append(held, f)
			}
			return text(fmt.Sprintf("opened %d", len(held))), nil, nil
		})

	// Tools that fault, for the resource caps and the fault-injection
	// tests.
	var grown [][]byte
	mcp.AddTool(s, &mcp.Tool{Name: "grow", Description: "Allocate and hold mib MiB, one MiB at a time, then wait for cancellation"},
		func(ctx context.Context, _ *mcp.CallToolRequest, in sizeArgs) (*mcp.CallToolResult, any, error) {
			for range in.MiB {
				b := make([]byte, 1<<20)
				for i := 0; i < len(b); i += 4096 {
					b[i] = 1
				}
				grown = append(grown, b)
			}
			<-ctx.Done()
			return text(fmt.Sprintf("holding %d MiB", len(grown))), nil, nil
		})

	mcp.AddTool(s, &mcp.Tool{Name: "spin", Description: "Use a CPU core until cancelled"},
		func(ctx context.Context, _ *mcp.CallToolRequest, _ struct{}) (*mcp.CallToolResult, any, error) {
			for n := 0; ctx.Err() == nil; n++ {
				for i := 0; i < 1<<16; i++ {
					n ^= i
				}
			}
			return text("spun"), nil, nil
		})

	mcp.AddTool(s, &mcp.Tool{Name: "hang", Description: "Never answer, whatever is cancelled"},
		func(context.Context, *mcp.CallToolRequest, struct{}) (*mcp.CallToolResult, any, error) {
			select {}
		})

	mcp.AddTool(s, &mcp.Tool{Name: "garbage", Description: "Write lines that are not JSON-RPC to stdout, then answer"},
		func(_ context.Context, _ *mcp.CallToolRequest, _ struct{}) (*mcp.CallToolResult, any, error) {
			for _, l := range []string{
				"this is not JSON",
				`{"jsonrpc":"2.0","id":`,
				`{"jsonrpc":"1.0","id":1,"result":{}}`,
				`{"jsonrpc":"2.0","id":{"x":1},"result":{}}`,
				`{"jsonrpc":"2.0","id":987654,"result":{}}`,
				`{"jsonrpc":"2.0","method":42}`,
				`[]`,
				"\x00\x01\x02 binary",
			} {
				// One write per line: a pipe write this small is atomic,
				// so it does not interleave with the transport's.
				_, _ = os.Stdout.WriteString(l + "\n")
			}
			return text("after garbage"), nil, nil
		})

	mcp.AddTool(s, &mcp.Tool{Name: "flood", Description: "Write n lines to stderr"},
		func(_ context.Context, _ *mcp.CallToolRequest, in countArgs) (*mcp.CallToolResult, any, error) {
			line := []byte(fmt.Sprintf("flood line of some length to fill the pipe %0100d\n", 0))
			for range in.N {
				_, _ = os.Stderr.Write(line)
			}
			return text(fmt.Sprintf("flooded %d", in.N)), nil, nil
		})

	if err := s.Run(context.Background(), &mcp.StdioTransport{}); err != nil {
		log.Printf("server: %v", err)
		os.Exit(1)
	}
}
