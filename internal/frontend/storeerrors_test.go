package frontend

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"

	"github.com/mcpgate/mcpgate/internal/core"
	"github.com/mcpgate/mcpgate/internal/session"
	"github.com/mcpgate/mcpgate/internal/store/memory"
)

// TestStoreErrorsReported: a store call that fails is logged once, as
// store_<op>_failed, and reported to Options.StoreErrors by op, whatever
// the log level.
func TestStoreErrorsReported(t *testing.T) {
	mgr := session.NewManager(session.Options{})
	defer mgr.Close(context.Background())
	var mu sync.Mutex
	var ops []string
	var buf strings.Builder
	f, err := New(Options{
		Sessions: mgr,
		Logger:   slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelError})),
		StoreErrors: func(op string) {
			mu.Lock()
			ops = append(ops, op)
			mu.Unlock()
		},
	}, []*Route{{Name: "r", Path: "/mcp", Clients: EraAuto}})
	if err != nil {
		t.Fatal(err)
	}
	st := memory.New()
	if err := f.Provision(Provisions{Store: st}); err != nil {
		t.Fatal(err)
	}
	_ = st.Close() // every call fails from now on
	g := newGWSession(f, f.routes().byPath["/mcp"], &core.SessionInfo{ID: "s1", Era: core.EraLegacy})
	defer g.cancel()
	if err := f.persist.put(g); err == nil {
		t.Fatal("put into a closed store succeeded")
	}
	f.persist.touch(g) // a warning: below the log level, still reported
	f.persist.forget(g, session.ReasonDeleted)

	mu.Lock()
	defer mu.Unlock()
	if got := strings.Join(ops, ","); got != "put,touch,delete" {
		t.Fatalf("reported %q; want put,touch,delete", got)
	}
	logged := buf.String()
	for _, want := range []string{"store_put_failed", "store_delete_failed", "session=" + core.Fingerprint("s1")} {
		if !strings.Contains(logged, want) {
			t.Errorf("log lacks %q:\n%s", want, logged)
		}
	}
	if strings.Contains(logged, "store_touch_failed") {
		t.Errorf("a warning below the log level was logged:\n%s", logged)
	}
}
