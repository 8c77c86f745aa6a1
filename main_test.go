package mcpgate_test

import (
	"os"
	"testing"

	"github.com/mcpgate/mcpgate/internal/testutil/testenv"
)

// TestMain reports the tests skipped for want of the Node peers.
func TestMain(m *testing.M) { os.Exit(testenv.Main(m)) }
