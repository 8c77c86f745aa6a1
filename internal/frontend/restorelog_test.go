package frontend

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/internal/core"
	"github.com/mcpgate/mcpgate/internal/session"
	"github.com/mcpgate/mcpgate/internal/store"
	"github.com/mcpgate/mcpgate/internal/store/memory"
)

// TestRestoredSessionLogged: a session brought back from the store after
// a restart is logged as session_restored with how it came back, never as
// session_created; subscribers hear Resumed once; and it counts again
// under its client address.
func TestRestoredSessionLogged(t *testing.T) {
	t.Parallel()
	var resumed []string
	logs := &lockedLog{}
	mgr := session.NewManager(session.Options{
		PerAddress: session.Cap{Max: 4, Policy: session.Reject},
		Hooks:      []session.Hooks{{Resumed: func(_ *core.SessionInfo, how string) { resumed = append(resumed, how) }}},
		Logger:     slog.New(slog.NewJSONHandler(logs, nil)),
	})
	defer mgr.Close(context.Background())
	f, err := New(Options{Sessions: mgr, Logger: slog.New(slog.DiscardHandler)}, []*Route{{Name: "r", Path: "/mcp", Clients: EraAuto}})
	if err != nil {
		t.Fatal(err)
	}
	st := memory.New()
	defer st.Close()
	now := time.Now()
	rec := &store.Record{
		ID: "restored-1", Route: "r", Era: core.EraLegacy, ProtocolVersion: core.Version20241105,
		Principal: session.Anonymous, RemoteAddr: "192.0.2.1:4711",
		InitRaw: []byte(`{"jsonrpc":"2.0","id":1,"method":"initialize","params":{}}`),
		Created: now.Add(-time.Minute), LastActive: now, IdleTimeout: time.Hour,
	}
	if err := st.Put(t.Context(), rec); err != nil {
		t.Fatal(err)
	}
	if err := f.Provision(Provisions{Store: st}); err != nil {
		t.Fatal(err)
	}
	if n, err := f.Restore(t.Context()); err != nil || n != 1 {
		t.Fatalf("Restore = %d, %v; want 1", n, err)
	}
	out := logs.String()
	if strings.Contains(out, `"msg":"session_created"`) {
		t.Errorf("a restored session was logged as created:\n%s", out)
	}
	if !strings.Contains(out, `"msg":"session_restored"`) || !strings.Contains(out, `"how":"restart"`) {
		t.Errorf("no session_restored with how=restart:\n%s", out)
	}
	if strings.Contains(out, rec.ID) {
		t.Errorf("the log carries the session id:\n%s", out)
	}
	if len(resumed) != 1 || resumed[0] != "restart" {
		t.Errorf("Resumed hooks ran %v; want [restart]", resumed)
	}
	if n := mgr.Count(session.ScopeAddress, "192.0.2.1"); n != 1 {
		t.Errorf("address count %d; want 1 (the restored session)", n)
	}
}

// lockedLog is a log sink safe for the manager's goroutines.
type lockedLog struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
