package gateway

import (
	"os"
	"testing"

	"github.com/mcpgate/mcpgate/internal/testutil/testenv"
)

// TestMain reports the tests skipped for want of a Redis.
func TestMain(m *testing.M) { os.Exit(testenv.Main(m)) }
