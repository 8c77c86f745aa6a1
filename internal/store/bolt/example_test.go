package bolt_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"time"

	"github.com/mcpgate/mcpgate/internal/store"
	"github.com/mcpgate/mcpgate/internal/store/bolt"
)

func Example() {
	dataDir, err := os.MkdirTemp("", "mcpgate-example-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dataDir)
	path := filepath.Join(dataDir, "sessions.db")
	ctx := context.Background()

	st, err := bolt.Open(path, bolt.Options{})
	if err != nil {
		log.Fatal(err)
	}
	created := time.Date(2030, 1, 1, 12, 0, 0, 0, time.UTC)
	_ = st.Put(ctx, &store.Record{ID: "s1", Route: "github", Created: created, LastActive: created})
	_ = st.Touch(ctx, "s1", created.Add(time.Minute)) // in memory until the next flush
	_, _ = st.Add(ctx, "sessions_created", 1)

	// A second process on the same file fails fast.
	if _, err := bolt.Open(path, bolt.Options{Timeout: 10 * time.Millisecond}); err != nil {
		fmt.Println("second open locked out")
	}
	_ = st.Close() // flushes the touch

	st, err = bolt.Open(path, bolt.Options{})
	if err != nil {
		log.Fatal(err)
	}
	defer st.Close()
	r, _ := st.Get(ctx, "s1")
	n, _ := st.Add(ctx, "sessions_created", 0)
	fmt.Println(r.Route, r.LastActive.Sub(r.Created), n)
	// Output:
	// second open locked out
	// github 1m0s 1
}
