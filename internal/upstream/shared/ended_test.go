package shared

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/internal/upstream"
	"github.com/mcpgate/mcpgate/internal/upstream/stdio"
)

// exitingServer answers initialize, reads notifications/initialized and
// one more line, and exits.
const exitingServer = `read -r l
id=$(printf '%s' "$l" | sed -E 's/.*"id":("[^"]*").*/\1/')
printf '{"jsonrpc":"2.0","id":%s,"result":{"protocolVersion":"2025-06-18","capabilities":{},"serverInfo":{"name":"x","version":"1"}}}\n' "$id"
read -r l
read -r l
exit 3`

// TestShareEnded: when the shared process exits, every session on it
// hears it, and the pool forgets the process.
func TestShareEnded(t *testing.T) {
	t.Parallel()
	inner := stdio.New(stdio.Options{Command: "sh", Args: []string{"-c", exitingServer}, ShutdownGrace: time.Second}, "t", nil)
	u := New(inner, Options{Share: "route"})
	t.Cleanup(func() { _ = u.Close() })
	a, sa := session(t, u, "a", "2025-06-18", caps)
	_, sb := session(t, u, "b", "2025-06-18", caps)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// The third line makes the process exit before it answers.
	if _, err := a.RoundTrip(ctx, msg(t, `{"jsonrpc":"2.0","id":2,"method":"ping"}`), nil); err == nil {
		t.Fatal("a request to a process that exits: no error")
	}
	for name, sk := range map[string]*sink{"a": sa, "b": sb} {
		for {
			sk.mu.Lock()
			err := sk.closed
			sk.mu.Unlock()
			if err != nil {
				break
			}
			if ctx.Err() != nil {
				t.Fatalf("session %s was not told the process ended", name)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	if conns, _ := u.Shared(); conns != 0 {
		t.Fatalf("Shared() conns = %d after the process ended, want 0", conns)
	}
	if _, err := a.RoundTrip(ctx, msg(t, `{"jsonrpc":"2.0","id":3,"method":"ping"}`), nil); !errors.Is(err, upstream.ErrClosed) {
		t.Fatalf("a request after the end: %v, want ErrClosed", err)
	}
}
