package stdio_test

import (
	"context"
	"fmt"
	"time"

	"github.com/mcpgate/mcpgate/internal/core"
	"github.com/mcpgate/mcpgate/internal/upstream"
	"github.com/mcpgate/mcpgate/internal/upstream/stdio"
)

func Example() {
	// A stand-in server: answers one request, exits when stdin closes.
	up := stdio.New(stdio.Options{
		Command: "sh",
		Args:    []string{"-c", `read l; echo '{"jsonrpc":"2.0","id":1,"result":{"ok":true}}'; cat >/dev/null`},
	}, "example", nil)
	defer up.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := up.Open(ctx, upstream.OpenParams{Era: core.EraLegacy}, nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer conn.Close(ctx)

	req, _ := core.Decode([]byte(`{"jsonrpc":"2.0","id":1,"method":"ping"}`))
	resp, err := conn.RoundTrip(ctx, req, nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(resp.Kind, string(resp.Result))
	// Output: response {"ok":true}
}
