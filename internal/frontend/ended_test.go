package frontend

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/mcpgate/mcpgate/internal/core"
	"github.com/mcpgate/mcpgate/internal/session"
)

// TestEndedSessionTellsWhy: the 404 after a session ended names why it
// ended, to the caller it belonged to; a session the client deleted, and
// an id that never named a session, get the plain 404.
func TestEndedSessionTellsWhy(t *testing.T) {
	t.Parallel()
	g := newStdioGateway(t, Options{})
	sid := g.session(t)
	if err := g.mgr.End(context.Background(), sid, session.ReasonQuota); err != nil {
		t.Fatal(err)
	}
	resp := g.post(t, sid, `{"jsonrpc":"2.0","id":1,"method":"ping"}`)
	ms := messages(t, resp)
	if resp.StatusCode != http.StatusNotFound || len(ms) != 1 || ms[0].ErrorCode() != core.CodeSessionNotFound {
		t.Fatalf("request of an ended session: %d %v", resp.StatusCode, ms)
	}
	var e struct {
		Message string
		Data    struct{ Reason string }
	}
	if err := json.Unmarshal(ms[0].Error, &e); err != nil {
		t.Fatal(err)
	}
	if e.Data.Reason != "quota" || !strings.Contains(e.Message, "session ended (quota)") || !strings.Contains(e.Message, "initialize") {
		t.Fatalf("404 of a session a quota ended: %+v", e)
	}

	deleted := g.session(t)
	if err := g.mgr.End(context.Background(), deleted, session.ReasonDeleted); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{deleted, "never-a-session-" + strings.Repeat("x", 16)} {
		ms := messages(t, g.post(t, id, `{"jsonrpc":"2.0","id":1,"method":"ping"}`))
		if len(ms) != 1 || strings.Contains(string(ms[0].Error), "reason") {
			t.Fatalf("404 for %q: %v, want the plain answer", id, ms)
		}
	}
}

// TestEndedSessionsBounded: the records are a FIFO of endedKept, each
// found while kept, none past it, and only by the caller it belonged to.
func TestEndedSessionsBounded(t *testing.T) {
	t.Parallel()
	var e endedSessions
	info := func(i int) *core.SessionInfo {
		return &core.SessionInfo{ID: "s" + string(rune('a'+i%26)) + strings.Repeat("0", i/26), Era: core.EraLegacy, Principal: "alice"}
	}
	for i := range endedKept + 10 {
		e.note(info(i), session.ReasonIdle, "")
	}
	if len(e.byID) != endedKept || len(e.ring) != endedKept {
		t.Fatalf("kept %d records in a ring of %d, want %d", len(e.byID), len(e.ring), endedKept)
	}
	alice, bob := Identity{Principal: "alice"}, Identity{Principal: "bob"}
	if err := e.notFound(info(3).ID, alice); err.Data != nil {
		t.Fatalf("the oldest record outlived the bound: %v", err.Message)
	}
	newest := info(endedKept + 9).ID
	if err := e.notFound(newest, alice); err.Data == nil {
		t.Fatalf("the newest record is gone: %v", err.Message)
	}
	if err := e.notFound(newest, bob); err.Data != nil {
		t.Fatalf("another principal learned why a session ended: %v", err.Message)
	}
}
