package httpup_test

import (
	"context"
	"testing"

	"github.com/mcpgate/mcpgate/internal/core"
)

// TestCheckPingsKeptSession: with an initialized legacy session open, a
// health check is a ping in that session; once it is closed (or lost),
// server/discover.
func TestCheckPingsKeptSession(t *testing.T) {
	t.Parallel()
	e := newEverything(t)
	ts, rec := sdkServer(t, e.Server, nil)
	u := newUpstream(t, ts.URL, nil)
	if err := u.Check(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	if n := len(rec.find(byRPC("server/discover"))); n != 1 {
		t.Fatalf("%d discovers without a session", n)
	}
	c := open(t, u, core.EraLegacy, newSink())
	initialize(t, c, core.Version20250618)
	sid := c.UpstreamSession()
	if err := u.Check(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	pings := rec.find(byRPC("ping"))
	if len(pings) != 1 || pings[0].Header.Get("Mcp-Session-Id") != sid || pings[0].Status >= 300 {
		t.Fatalf("pings %+v; want one in session %s", pings, sid)
	}
	if n := len(rec.find(byRPC("server/discover"))); n != 1 {
		t.Errorf("%d discovers with a kept session", n)
	}
	if err := c.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := u.Check(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	if n, p := len(rec.find(byRPC("server/discover"))), len(rec.find(byRPC("ping"))); n != 2 || p != 1 {
		t.Errorf("after close: %d discovers, %d pings; want 2 and 1", n, p)
	}
}

// TestCheckLostSessionFallsBack: a kept session the upstream no longer
// knows (404) is dropped and the check discovers instead.
func TestCheckLostSessionFallsBack(t *testing.T) {
	t.Parallel()
	e := newEverything(t)
	ts, rec := sdkServer(t, e.Server, nil)
	u := newUpstream(t, ts.URL, nil)
	c := open(t, u, core.EraLegacy, newSink())
	initialize(t, c, core.Version20250618)
	closeUpstreamSessions(e.Server)
	if err := u.Check(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	if err := u.Check(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	if n, p := len(rec.find(byRPC("server/discover"))), len(rec.find(byRPC("ping"))); n != 2 || p != 1 {
		t.Errorf("%d discovers, %d pings; want 2 and 1", n, p)
	}
}
