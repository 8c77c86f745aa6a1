package e2e

import (
	"net/http"
	"strings"
	"testing"

	"github.com/mcpgate/mcpgate/internal/config"
	"github.com/mcpgate/mcpgate/internal/testutil/testenv"
)

// TestSignedSessionIDs: with id_keys configured, minted ids carry a MAC;
// a forged or foreign id is refused as unknown (404) without a store
// look-up, a mangled one as malformed (400), and a genuine one works.
func TestSignedSessionIDs(t *testing.T) {
	t.Parallel()
	keys := func(secret string) func(*config.Config) {
		return func(c *config.Config) {
			c.Sessions.IDKeys = []config.IDKey{{ID: "k1", Secret: config.Secret(secret)}}
		}
	}
	g := startGateway(t, keys(testenv.IDKeySecret()), httpRoute("fixture", "/mcp", fixtureHTTP(t, false)))
	other := startGateway(t, keys(testenv.IDKeySecret()), httpRoute("fixture", "/mcp", fixtureHTTP(t, false)))
	url := g.URL + "/mcp"
	sid := legacySession(t, url)
	if !strings.Contains(sid, ".k1.") {
		t.Fatalf("id %q does not name its key", sid)
	}
	foreign := legacySession(t, other.URL+"/mcp")
	ping := `{"jsonrpc":"2.0","id":1,"method":"ping"}`
	h := func(id string) map[string]string {
		return map[string]string{"Mcp-Session-Id": id, "MCP-Protocol-Version": "2025-06-18"}
	}
	if r := do(t, "POST", url, ping, h(sid)); r.Status != http.StatusOK {
		t.Fatalf("genuine id: %d %s", r.Status, r.Body)
	}
	forged := sid[:len(sid)-2] + "AA"
	if forged == sid {
		forged = sid[:len(sid)-2] + "BA"
	}
	for name, tc := range map[string]struct {
		id     string
		status int
	}{
		"forged MAC":        {forged, http.StatusNotFound},
		"other gateway key": {foreign, http.StatusNotFound},
		"plain random id":   {"bm90LWEtc2lnbmVkLWlkLWF0LWFsbA", http.StatusBadRequest},
		"truncated":         {sid[:20], http.StatusBadRequest},
	} {
		if r := do(t, "POST", url, ping, h(tc.id)); r.Status != tc.status {
			t.Errorf("%s: %d %s, want %d", name, r.Status, r.Body, tc.status)
		}
	}
}
