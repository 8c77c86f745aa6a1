package redisstore

import (
	"testing"

	"github.com/mcpgate/mcpgate/internal/store"
	"github.com/mcpgate/mcpgate/internal/store/storetest"
)

func TestProcs(t *testing.T) {
	needRedis(t)
	storetest.RunProcs(t, func(t *testing.T) store.Store { return openStore(t, Options{}) })
}
