package logging_test

import (
	"context"
	"log/slog"
	"os"

	"github.com/mcpgate/mcpgate/internal/core"
	"github.com/mcpgate/mcpgate/internal/interceptors/logging"
)

func ExampleNew() {
	logger := slog.New(slog.NewTextHandler(os.Stdout, &slog.HandlerOptions{
		Level: slog.LevelInfo, // successful exchanges (debug) are not logged
		ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
			if a.Key == slog.TimeKey || a.Key == "duration" {
				return slog.Attr{} // keep the example's output stable
			}
			return a
		},
	}))
	upstream := func(_ context.Context, m *core.Message) (*core.Message, error) {
		if m.Name == "missing" {
			return core.Decode([]byte(`{"jsonrpc":"2.0","id":2,"error":{"code":-32602,"message":"unknown tool"}}`))
		}
		return core.ResultResponse(m.ID, []byte(`{"content":[]}`)), nil
	}
	h := logging.New(logger)(upstream)

	for _, body := range []string{
		`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"text":"not logged"}}}`,
		`{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"missing"}}`,
	} {
		m, err := core.Decode([]byte(body))
		if err != nil {
			panic(err)
		}
		m.Session = &core.SessionInfo{ID: "s1", Route: "default", Era: core.EraLegacy, Principal: "alice"}
		_, _ = h(context.Background(), m)
	}
	// Output:
	// level=INFO msg=mcp_exchange direction=client_to_server kind=request method=tools/call session=e8bc163c82ee principal=alice route=default era=legacy tool=missing id=2 error_code=-32602
}
