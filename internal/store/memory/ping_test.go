package memory_test

import (
	"context"
	"errors"
	"testing"

	"github.com/mcpgate/mcpgate/internal/store"
	"github.com/mcpgate/mcpgate/internal/store/memory"
)

func TestPing(t *testing.T) {
	st := memory.New()
	if err := st.Ping(t.Context()); err != nil {
		t.Fatalf("Ping on an open store = %v", err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := st.Ping(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("Ping with a cancelled context = %v; want context.Canceled", err)
	}
	_ = st.Close()
	if err := st.Ping(t.Context()); !errors.Is(err, store.ErrClosed) {
		t.Errorf("Ping after Close = %v; want store.ErrClosed", err)
	}
}
