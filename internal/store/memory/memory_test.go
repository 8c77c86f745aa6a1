package memory_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/mcpgate/mcpgate/internal/store"
	"github.com/mcpgate/mcpgate/internal/store/memory"
	"github.com/mcpgate/mcpgate/internal/store/storetest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store { return memory.New() })
}

func Example() {
	ctx := context.Background()
	st := memory.New()
	defer st.Close()

	_ = st.Put(ctx, &store.Record{ID: "s1", Route: "github", Created: time.Unix(0, 0)})
	_ = st.Touch(ctx, "s1", time.Unix(60, 0))
	r, _ := st.Get(ctx, "s1")
	fmt.Println(r.Route, r.LastActive.Sub(r.Created))

	_, err := st.Get(ctx, "s2")
	fmt.Println(err)
	// Output:
	// github 1m0s
	// store: not found
}

func BenchmarkPut(b *testing.B) {
	st := memory.New()
	r := storetest.Record("s1")
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if err := st.Put(ctx, r); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkGet(b *testing.B) {
	st := memory.New()
	ctx := context.Background()
	_ = st.Put(ctx, storetest.Record("s1"))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := st.Get(ctx, "s1"); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkTouch(b *testing.B) {
	st := memory.New()
	ctx := context.Background()
	_ = st.Put(ctx, storetest.Record("s1"))
	at := time.Now()
	b.ReportAllocs()
	for b.Loop() {
		at = at.Add(time.Nanosecond)
		if err := st.Touch(ctx, "s1", at); err != nil {
			b.Fatal(err)
		}
	}
}
