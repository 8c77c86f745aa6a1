package stdio

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/internal/core"
	"github.com/mcpgate/mcpgate/internal/upstream"
)

// tableCredential is a principal → secret table, in GITHUB_TOKEN.
type tableCredential map[string]string

func (tableCredential) Name() string { return "GITHUB_TOKEN" }

func (t tableCredential) Value(ctx context.Context, s *core.SessionInfo) (string, error) {
	p := ""
	if s != nil {
		p = s.Principal
	} else if c := upstream.CallerOf(ctx); c != nil {
		p = c.Principal
	}
	if v, ok := t[p]; ok {
		return v, nil
	}
	return "", core.NewError(core.CodeNoCredential, "no credential").WithStatus(403).Wrap(upstream.ErrCredential)
}

// TestCredentialProcesses: each principal's process holds its own
// secret; the probe's process, spawned for its caller, serves only a
// session of that principal; a principal without one gets no process.
func TestCredentialProcesses(t *testing.T) {
	t.Parallel()
	u := newTestUpstream(t, Options{Credential: tableCredential{"alice": "a-secret", "bob": "b-secret"}, Env: map[string]string{"GITHUB_TOKEN": "static"}})
	ctx := upstream.WithCaller(timeout(t, 10*time.Second), &upstream.Caller{Principal: "alice"})
	if _, err := u.Probe(ctx); err != nil {
		t.Fatal(err)
	}
	open := func(principal string) (*Conn, error) {
		info := &core.SessionInfo{ID: "s-" + principal, Principal: principal, Era: core.EraModern}
		conn, err := u.Open(timeout(t, 10*time.Second), upstream.OpenParams{Session: info, Era: core.EraModern}, newSink())
		if err != nil {
			return nil, err
		}
		c := conn.(*Conn)
		t.Cleanup(func() { _ = c.Close(timeout(t, 10*time.Second)) })
		return c, nil
	}
	for i, p := range []string{"bob", "alice"} {
		c, err := open(p)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := c.RoundTrip(timeout(t, 10*time.Second), toolCall(t, i+1, "env", map[string]any{"name": "GITHUB_TOKEN"}, modernMeta()), nil)
		if err != nil {
			t.Fatal(err)
		}
		if got, want := toolText(t, resp), p[:1]+"-secret"; got != want {
			t.Errorf("%s's process has GITHUB_TOKEN=%q, want %q", p, got, want)
		}
	}
	// bob's session got a process of its own, alice's the probe's: two.
	if n := u.rec.count("stdio_spawn"); n != 2 {
		t.Errorf("%d processes spawned, want 2 (the probe's for alice, bob's own)", n)
	}
	_, err := open("carol")
	var e *core.Error
	if !errors.Is(err, upstream.ErrCredential) || !errors.As(err, &e) || e.Code != core.CodeNoCredential {
		t.Errorf("carol: %v; want the credential's refusal", err)
	}
	if n := u.rec.count("stdio_spawn"); n != 2 {
		t.Errorf("a process was spawned for a principal without a credential (%d spawns)", n)
	}
}
