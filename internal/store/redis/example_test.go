package redisstore_test

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/mcpgate/mcpgate/internal/store"
	redisstore "github.com/mcpgate/mcpgate/internal/store/redis"
)

// Two replicas share sessions through one Redis. (Not run by go test: it
// needs a Redis; the package's tests cover the same ground.)
func Example() {
	ctx := context.Background()
	opts := redisstore.Options{Addr: "127.0.0.1:6379", Prefix: "mcpgate-example:"}
	a, err := redisstore.Open(ctx, opts)
	if err != nil {
		log.Fatal(err) // store/redis: connect to 127.0.0.1:6379: ...
	}
	defer a.Close()
	b, err := redisstore.Open(ctx, opts)
	if err != nil {
		log.Fatal(err)
	}
	defer b.Close()

	// Replica b learns at once of sessions replica a ends.
	subCtx, stop := context.WithCancel(ctx)
	defer stop()
	go b.Subscribe(subCtx, func(ev store.Event) {
		if ev.Kind == "ended" && ev.Origin != "b" {
			fmt.Println("b drops", ev.SessionID)
		}
	})

	now := time.Now()
	_ = a.Put(ctx, &store.Record{ID: "s1", Route: "github", Created: now, LastActive: now, IdleTimeout: 30 * time.Minute})
	_ = a.Touch(ctx, "s1", now.Add(time.Second)) // a's memory until its next flush
	r, _ := b.Get(ctx, "s1")                     // b reads what a put
	fmt.Println(r.Route)

	_ = a.Delete(ctx, "s1")
	_ = a.Publish(ctx, store.Event{Kind: "ended", SessionID: "s1", Reason: "deleted", Origin: "a"})
}
