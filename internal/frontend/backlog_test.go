package frontend

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/mcpgate/mcpgate/internal/core"
	"github.com/mcpgate/mcpgate/internal/session"
)

type lockedBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestBacklogBounds: whatever writes to a session with no stream, the
// backlog keeps at most ServerRequestBacklog messages and its share of the
// session's byte budget, newest kept; drops are logged once per interval
// with a count, and what is left is logged when the backlog is handed on.
func TestBacklogBounds(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var logs lockedBuf
		mgr := session.NewManager(session.Options{})
		defer mgr.Close(context.Background())
		f, err := New(Options{Sessions: mgr, Logger: slog.New(slog.NewTextHandler(&logs, nil)), ResumeSessionBytes: 64 << 10}, []*Route{{Name: "r", Path: "/mcp"}})
		if err != nil {
			t.Fatal(err)
		}
		g := newGWSession(f, f.routes().byPath["/mcp"], &core.SessionInfo{ID: session.NewID(), Route: "r", Era: core.EraLegacy})
		small := mustDecode(t, `{"jsonrpc":"2.0","method":"notifications/message","params":{"data":"x"}}`)
		big := mustDecode(t, `{"jsonrpc":"2.0","method":"notifications/message","params":{"data":"`+strings.Repeat("y", 1000)+`"}}`)

		for range 10_000 {
			g.write(small, nil) // no stream at all
		}
		g.mu.Lock()
		n, b := len(g.backlog), g.backlogBytes
		g.mu.Unlock()
		if n != 256 || b != int64(256*len(small.Raw)) {
			t.Fatalf("backlog holds %d messages, %d bytes; want 256", n, b)
		}
		if got := strings.Count(logs.String(), "server_message_backlog_full"); got != 1 {
			t.Fatalf("%d drop records within one interval; want 1:\n%s", got, logs.String())
		}

		time.Sleep(dropLogInterval)
		for range 1000 {
			g.write(big, nil) // the byte budget binds first: 64 KiB
		}
		g.mu.Lock()
		n, b = len(g.backlog), g.backlogBytes
		last := g.backlog[len(g.backlog)-1]
		g.mu.Unlock()
		if b > 64<<10 || n != int(64<<10)/len(big.Raw) || last != big {
			t.Fatalf("backlog holds %d messages, %d bytes; want the newest within 64 KiB", n, b)
		}
		if got := g.budget.session.Load(); got != b {
			t.Fatalf("budget counts %d bytes, backlog holds %d", got, b)
		}
		out := logs.String()
		if got := strings.Count(out, "server_message_backlog_full"); got != 2 {
			t.Fatalf("%d drop records over two intervals; want 2:\n%s", got, out)
		}
		g.teardown(context.Background(), session.ReasonDeleted)
		if got := g.budget.session.Load(); got != 0 {
			t.Fatalf("%d bytes still counted after teardown", got)
		}
		if got := f.historyBytes.Load(); got != 0 {
			t.Fatalf("%d bytes still counted gateway-wide after teardown", got)
		}
		if got := strings.Count(logs.String(), "server_message_backlog_full"); got != 3 {
			t.Fatalf("the drops since the last record are not logged at teardown:\n%s", logs.String())
		}
	})
}
