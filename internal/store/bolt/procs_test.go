package bolt

import (
	"path/filepath"
	"testing"

	"github.com/mcpgate/mcpgate/internal/store"
	"github.com/mcpgate/mcpgate/internal/store/storetest"
)

func TestProcs(t *testing.T) {
	storetest.RunProcs(t, func(t *testing.T) store.Store {
		return mustOpen(t, filepath.Join(t.TempDir(), "sessions.db"), Options{})
	})
}
