package stdio

import (
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/internal/core"
)

// TestProbeProcessServesFirstSession: the process the era probe starts is
// the first session's, unless the server may have taken server/discover
// as choosing the modern era and the session is legacy.
func TestProbeProcessServesFirstSession(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name       string
		args       []string
		era        core.Era
		wantSpawns int
	}{
		{"dual-era server, modern session", nil, core.EraModern, 1},
		{"legacy server, legacy session", []string{"-legacy"}, core.EraLegacy, 1},
		{"legacy server, bridged modern session", []string{"-legacy"}, core.EraModern, 1},
		{"dual-era server, legacy session", nil, core.EraLegacy, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			u := newTestUpstream(t, Options{}, tc.args...)
			if _, err := u.Probe(timeout(t, 10*time.Second)); err != nil {
				t.Fatal(err)
			}
			c, _, _ := u.open(t, tc.era)
			resp := toolCallOn(t, c, tc.args)
			if got := toolText(t, resp); got != "hi" {
				t.Errorf("echo = %q", got)
			}
			if n := u.rec.count("stdio_spawn"); n != tc.wantSpawns {
				t.Errorf("%d processes spawned, want %d", n, tc.wantSpawns)
			}
		})
	}
}

// toolCallOn calls echo in the era the server speaks to c: legacy after a
// handshake, modern with _meta.
func toolCallOn(t *testing.T, c *Conn, args []string) *core.Message {
	t.Helper()
	var meta map[string]any
	if len(args) > 0 || c.b().era == core.EraLegacy {
		initialize(t, c)
	} else {
		meta = modernMeta()
	}
	resp, err := c.RoundTrip(timeout(t, 10*time.Second), toolCall(t, 1, "echo", map[string]any{"text": "hi"}, meta), nil)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

// TestUnclaimedSpareEnds: a probe's process no session takes is shut down.
func TestUnclaimedSpareEnds(t *testing.T) {
	t.Parallel()
	u := newTestUpstream(t, Options{})
	u.spareTTL = 20 * time.Millisecond
	if _, err := u.Probe(timeout(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	u.rec.wait(t, "the spare's exit", func(r record) bool { return r.Msg == "stdio_exited" })
	if c := u.takeSpare(); c != nil {
		t.Errorf("spare %d still kept after it ended", c.pid)
	}
}
