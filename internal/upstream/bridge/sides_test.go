package bridge_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/internal/core"
	"github.com/mcpgate/mcpgate/internal/testutil/conformancefixture"
	"github.com/mcpgate/mcpgate/internal/upstream/bridge"
	"github.com/mcpgate/mcpgate/internal/upstream/httpup"
)

// TestSidesKeyedOnObservableCapabilities: a modern client of a legacy
// server opens one upstream session per set of capabilities the server
// can observe (sampling, elicitation, roots and their flags), not per
// byte-distinct clientCapabilities: rotating experimental keys or unknown
// flags opens no session; distinct observable sets are bounded per
// session, with a clear error past the bound.
func TestSidesKeyedOnObservableCapabilities(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	rec := &loRecorder{next: conformancefixture.Handler(ctx, false)}
	var deletes atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodDelete {
			deletes.Add(1)
		}
		rec.ServeHTTP(w, r)
	}))
	t.Cleanup(func() { cancel(); srv.Close() })
	inner, err := httpup.New(httpup.Options{URL: srv.URL + "/"}, "fixture", nil)
	if err != nil {
		t.Fatal(err)
	}
	u := bridge.New(inner, bridge.Options{Era: core.EraLegacy})
	t.Cleanup(func() { _ = u.Close() })
	conn := openModern(t, u)
	rctx, rcancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer rcancel()
	// call returns the response, or the refusal's message and code.
	call := func(id int, caps string) (string, int) {
		t.Helper()
		resp, err := conn.RoundTrip(rctx, modernRequest(t, id, "tools/list", nil, caps), nil)
		if err != nil {
			ce := core.AsError(err)
			if ce.HTTPStatus() != http.StatusBadRequest {
				t.Errorf("refusal with HTTP %d; want 400", ce.HTTPStatus())
			}
			return ce.Message, ce.Code
		}
		return string(resp.Raw), 0
	}

	for i := range 20 {
		caps := fmt.Sprintf(`{"sampling":{"x-%d":{}},"experimental":{"rotating-%d":{}}}`, i, i)
		if body, code := call(i+1, caps); code != 0 || !strings.Contains(body, `"tools"`) {
			t.Fatalf("request %d: %d %s", i, code, body)
		}
	}
	inits := rec.rpc("initialize")
	if len(inits) != 1 {
		t.Fatalf("20 requests rotating unobservable capabilities opened %d upstream sessions; want 1", len(inits))
	}
	p, _ := inits[0].Body["params"].(map[string]any)
	if got := fmt.Sprint(p["capabilities"]); got != "map[sampling:map[]]" {
		t.Errorf("upstream initialize declared %s; want only what the client declared that a legacy server observes", got)
	}

	// Three more observable sets fit (four in all); past that an idle set
	// is replaced, four times a minute; then a new set is refused.
	for i, caps := range []string{`{}`, `{"roots":{"listChanged":true}}`, `{"elicitation":{"form":{},"url":{}}}`,
		`{"sampling":{"tools":{}}}`, `{"roots":{}}`, `{"elicitation":{}}`, `{"sampling":{"context":{}}}`} {
		if body, code := call(100+i, caps); code != 0 {
			t.Fatalf("set %s: %d %s", caps, code, body)
		}
	}
	msg, code := call(200, `{"sampling":{"context":{},"tools":{}}}`)
	if code != core.CodeInvalidRequest || !strings.Contains(msg, "capabilit") {
		t.Fatalf("a ninth capability set within the minute: code %d %q; want -32600 naming the bound", code, msg)
	}
	if n := len(rec.rpc("initialize")); n != 8 {
		t.Fatalf("%d upstream sessions opened; want 8 (4, then 4 replacements)", n)
	}
	// The replaced ones were ended upstream: never more than 4 at once.
	deadline := time.Now().Add(loWait)
	for deletes.Load() < 4 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if n := deletes.Load(); n != 4 {
		t.Errorf("%d replaced upstream sessions ended; want 4", n)
	}
	// Sets in use keep working.
	if body, code := call(201, `{"experimental":{"y":{}},"sampling":{"context":{}}}`); code != 0 {
		t.Fatalf("a set in use: %d %s", code, body)
	}
}
