package bolt

import (
	"context"
	"errors"
	"path/filepath"
	"testing"

	"github.com/mcpgate/mcpgate/internal/store"
)

func TestPing(t *testing.T) {
	s := mustOpen(t, filepath.Join(t.TempDir(), "sessions.db"), Options{})
	if err := s.Ping(t.Context()); err != nil {
		t.Fatalf("Ping on an open store = %v", err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := s.Ping(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("Ping with a cancelled context = %v; want context.Canceled", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Ping(t.Context()); !errors.Is(err, store.ErrClosed) {
		t.Errorf("Ping after Close = %v; want store.ErrClosed", err)
	}
}
