package memory_test

import (
	"testing"

	"github.com/mcpgate/mcpgate/internal/store"
	"github.com/mcpgate/mcpgate/internal/store/memory"
	"github.com/mcpgate/mcpgate/internal/store/storetest"
)

func TestState(t *testing.T) {
	storetest.RunState(t, func(t *testing.T) store.Store { return memory.New() })
}
