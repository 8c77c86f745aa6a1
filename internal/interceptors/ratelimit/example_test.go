package ratelimit_test

import (
	"context"
	"errors"
	"fmt"

	"github.com/mcpgate/mcpgate/internal/core"
	"github.com/mcpgate/mcpgate/internal/interceptors/ratelimit"
	"github.com/mcpgate/mcpgate/internal/limits"
)

func ExampleNew() {
	// One request per principal, refilled every 10s.
	stage := ratelimit.New(limits.NewBuckets(0.1, 1, limits.BucketOptions{}))
	h := stage(func(context.Context, *core.Message) (*core.Message, error) { return nil, nil })

	alice := &core.SessionInfo{ID: "s1", Principal: "alice"}
	for range 2 {
		m, _ := core.Decode([]byte(`{"jsonrpc":"2.0","id":1,"method":"tools/list"}`))
		m.Session, m.Direction = alice, core.ClientToServer
		_, err := h(context.Background(), m)
		var e *core.Error
		if errors.As(err, &e) {
			fmt.Println(e.HTTPStatus(), "Retry-After:", e.Header.Get("Retry-After"))
			continue
		}
		fmt.Println("forwarded")
	}
	// Output:
	// forwarded
	// 429 Retry-After: 10
}
