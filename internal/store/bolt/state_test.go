package bolt

import (
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/internal/store"
	"github.com/mcpgate/mcpgate/internal/store/storetest"
)

func TestState(t *testing.T) {
	storetest.RunState(t, func(t *testing.T) store.Store {
		return mustOpen(t, filepath.Join(t.TempDir(), "sessions.db"), Options{})
	})
}

func TestStateDurable(t *testing.T) {
	storetest.RunStateDurable(t, func(t *testing.T, path string) store.Store {
		s, err := Open(path, Options{FlushInterval: 50 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}

// The state bucket is made by the first SaveState, so a file written
// before it existed opens unchanged, reads as having no state, and takes
// state.
func TestStateBucketMadeOnFirstSave(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sessions.db")
	s := mustOpen(t, path, Options{})
	if err := s.Put(t.Context(), storetest.Record("s1")); err != nil {
		t.Fatal(err)
	}
	if _, err := s.LoadState(t.Context(), "limits"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("LoadState before any SaveState: %v, want ErrNotFound", err)
	}
	if err := s.SaveState(t.Context(), "limits", []byte("x")); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(t.Context(), "s1"); err != nil {
		t.Errorf("record after SaveState: %v", err)
	}
}
