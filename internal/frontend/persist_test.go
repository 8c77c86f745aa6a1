package frontend

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/internal/core"
	"github.com/mcpgate/mcpgate/internal/session"
	"github.com/mcpgate/mcpgate/internal/store"
	"github.com/mcpgate/mcpgate/internal/store/memory"
)

// restoreFrontend is a frontend on st with one route capped at max.
func restoreFrontend(t *testing.T, st store.Store, max int, log *strings.Builder) (*Frontend, *session.Manager) {
	t.Helper()
	mgr := session.NewManager(session.Options{})
	t.Cleanup(func() { mgr.Close(context.Background()) })
	f, err := New(Options{Sessions: mgr, Logger: slog.New(slog.NewTextHandler(log, nil))},
		[]*Route{{Name: "r", Path: "/mcp", Clients: EraAuto, Cap: session.Cap{Max: max, Policy: session.Reject}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Provision(Provisions{Store: st}); err != nil {
		t.Fatal(err)
	}
	return f, mgr
}

func storedRecord(id, route string, lastActive time.Time) *store.Record {
	return &store.Record{
		ID: id, Route: route, Era: core.EraLegacy, ProtocolVersion: "2025-11-25", Principal: "anonymous",
		InitRaw: []byte(`{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25"}}`),
		Created: lastActive, LastActive: lastActive, IdleTimeout: time.Hour,
	}
}

// failingAdmitter refuses every admission with a store error, as a shared
// store that cannot be reached would.
type failingAdmitter struct{}

func (failingAdmitter) Admit(context.Context, string, string, []session.ScopeCap, time.Duration) ([]string, error) {
	return nil, errors.New("store unreachable")
}
func (failingAdmitter) Release(context.Context, string) error { return nil }

// TestRestoreKeepsRefusedRecords: Restore deletes only records that can
// never be restored (route gone, expired); a record refused by a cap
// lowered since it was written, or by a failure on the way, stays in the
// store for the next start, and the refusal is logged with its reason.
func TestRestoreKeepsRefusedRecords(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st := memory.New()
	defer st.Close()
	now := time.Now()
	for _, r := range []*store.Record{
		storedRecord("a", "r", now),
		storedRecord("b", "r", now),
		storedRecord("gone", "removed-route", now),
		storedRecord("old", "r", now.Add(-2*time.Hour)),
	} {
		if err := st.Put(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	var log strings.Builder
	f, mgr := restoreFrontend(t, st, 1, &log)
	n, err := f.Restore(ctx)
	if err != nil || n != 1 || mgr.Len() != 1 {
		t.Fatalf("Restore = %d, %v with %d live; want 1 restored under the cap of 1", n, err, mgr.Len())
	}
	for id, want := range map[string]bool{"a": true, "b": true, "gone": false, "old": false} {
		_, err := st.Get(ctx, id)
		if got := err == nil; got != want {
			t.Errorf("record %s kept = %v (%v); want %v", id, got, err, want)
		}
	}
	for _, want := range []string{"reason=cap", "reason=invalid"} {
		if !strings.Contains(log.String(), want) {
			t.Errorf("log lacks session_not_restored %s:\n%s", want, log.String())
		}
	}

	// A restore that fails for a reason of the moment keeps every record.
	var log2 strings.Builder
	f2, mgr2 := restoreFrontend(t, st, 10, &log2)
	if err := mgr2.Provision(session.Provisions{Admitter: failingAdmitter{}}); err != nil {
		t.Fatal(err)
	}
	if n, err := f2.Restore(ctx); err != nil || n != 0 {
		t.Fatalf("Restore with a failing admission = %d, %v; want 0, nil", n, err)
	}
	for _, id := range []string{"a", "b"} {
		if _, err := st.Get(ctx, id); err != nil {
			t.Errorf("record %s lost after a failed restore: %v", id, err)
		}
	}
	if !strings.Contains(log2.String(), "reason=error") {
		t.Errorf("log lacks session_not_restored reason=error:\n%s", log2.String())
	}
}
