package pipeline_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"

	"github.com/mcpgate/mcpgate/internal/core"
	"github.com/mcpgate/mcpgate/internal/interceptors/logging"
	"github.com/mcpgate/mcpgate/internal/pipeline"
)

func ExampleBuild() {
	// The terminal handler is what the chain wraps: in mcpgate, the
	// upstream connection.
	terminal := func(_ context.Context, m *core.Message) (*core.Message, error) {
		return core.ResultResponse(m.ID, []byte(`{"content":[]}`)), nil
	}

	// Drop time and duration so the output is stable.
	logger := slog.New(slog.NewTextHandler(os.Stdout, &slog.HandlerOptions{
		Level: slog.LevelDebug,
		ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
			if a.Key == slog.TimeKey || a.Key == "duration" {
				return slog.Attr{}
			}
			return a
		},
	}))

	// The server→client terminal is the client's stream; unused here.
	chain, err := pipeline.Build("default", terminal, terminal, []pipeline.Stage{
		{Name: "logging", Interceptor: logging.New(logger)},
	})
	if err != nil {
		panic(err)
	}

	msg, err := core.Decode([]byte(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo"}}`))
	if err != nil {
		panic(err)
	}
	msg.Session = &core.SessionInfo{ID: "s1", Route: "default", Era: core.EraLegacy, Principal: "alice"}
	resp, err := chain.ClientToServer(context.Background(), msg)
	if err != nil {
		panic(err)
	}
	fmt.Println(string(resp.Raw))
	// Output:
	// level=DEBUG msg=mcp_exchange direction=client_to_server kind=request method=tools/call session=e8bc163c82ee principal=alice route=default era=legacy tool=echo id=1
	// {"jsonrpc":"2.0","id":1,"result":{"content":[]}}
}
