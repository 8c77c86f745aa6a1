package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"github.com/mcpgate/mcpgate/internal/testutil/testenv"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/internal/config"
	"github.com/mcpgate/mcpgate/internal/sessionid"
	"github.com/mcpgate/mcpgate/internal/testutil/nodetool"
)

const modernVersion = "2026-07-28"

// modernMeta is a complete request _meta for client name.
func modernMeta(name string) string {
	return `{"io.modelcontextprotocol/protocolVersion":"` + modernVersion + `","io.modelcontextprotocol/clientCapabilities":{},"io.modelcontextprotocol/clientInfo":{"name":"` + name + `","version":"1"}}`
}

// modernDo posts one 2026-07-28 request with its headers; hdr adds or
// overrides headers.
func modernDo(t testing.TB, url, method, params string, hdr map[string]string) rawResp {
	t.Helper()
	body := fmt.Sprintf(`{"jsonrpc":"2.0","id":7,"method":%q,"params":%s}`, method, params)
	h := map[string]string{"MCP-Protocol-Version": modernVersion, "Mcp-Method": method}
	for k, v := range hdr {
		h[k] = v
	}
	return do(t, "POST", url, body, h)
}

func idKeys(secret string) func(*config.Config) {
	return func(c *config.Config) {
		c.Sessions.IDKeys = []config.IDKey{{ID: "k1", Secret: config.Secret(secret)}}
	}
}

// TestModernKeyOnlyToMinter: modern clients without a key at one address
// share a session, but only the request that created it gets its
// Mcpgate-Session key; another client (other user agent, other
// clientInfo) joining it never learns the key.
func TestModernKeyOnlyToMinter(t *testing.T) {
	t.Parallel()
	g := startGateway(t, nil, stdioRoute("fixture", "/mcp", fixtureBin))
	url := g.URL + "/mcp"
	first := modernDo(t, url, "server/discover", `{"_meta":`+modernMeta("alice")+`}`, map[string]string{"User-Agent": "alice/1"})
	if first.Status != http.StatusOK || first.Header.Get("Mcpgate-Session") == "" {
		t.Fatalf("first request: %d %q (key %q); want 200 with a key", first.Status, first.Body, first.Header.Get("Mcpgate-Session"))
	}
	for i := range 3 {
		r := modernDo(t, url, "tools/list", `{"_meta":`+modernMeta("mallory")+`}`, map[string]string{"User-Agent": fmt.Sprintf("mallory/%d", i)})
		if r.Status != http.StatusOK {
			t.Fatalf("joining request: %d %s", r.Status, r.Body)
		}
		if k := r.Header.Get("Mcpgate-Session"); k != "" {
			t.Fatalf("a client that sent no key was given the session key %q (minted for another client)", k)
		}
	}
	// The minting client keeps its session with the key.
	key := first.Header.Get("Mcpgate-Session")
	if r := modernDo(t, url, "tools/list", `{"_meta":`+modernMeta("alice")+`}`, map[string]string{"Mcpgate-Session": key}); r.Status != http.StatusOK || r.Header.Get("Mcpgate-Session") != "" {
		t.Fatalf("echoed key: %d %s (key header %q); want 200 without a new key", r.Status, r.Body, r.Header.Get("Mcpgate-Session"))
	}
	if n := g.Sessions().Len(); n != 1 {
		t.Fatalf("%d sessions; want the one shared session", n)
	}
}

// TestModernStaleKey: a key signed by the gateway's id keys whose session
// is gone (here: minted by a previous gateway with the same keys) is
// admitted again under that key once, so ten requests make one session
// and one process; a key that fails verification joins the keyless
// session of its address.
func TestModernStaleKey(t *testing.T) {
	t.Parallel()
	secret := testenv.IDKeySecret()
	g := startGateway(t, idKeys(secret), stdioRoute("fixture", "/mcp", fixtureBin))
	url := g.URL + "/mcp"
	m, err := sessionid.NewMinter(sessionid.Key{ID: "k1", Secret: []byte(secret)})
	if err != nil {
		t.Fatal(err)
	}
	stale := m.Mint()
	for i := range 10 {
		r := modernDo(t, url, "tools/list", `{"_meta":`+modernMeta("echo")+`}`, map[string]string{"Mcpgate-Session": stale})
		if r.Status != http.StatusOK {
			t.Fatalf("request %d with a stale key: %d %s", i, r.Status, r.Body)
		}
	}
	if n := g.Sessions().Len(); n != 1 {
		t.Fatalf("ten requests with one stale key made %d sessions; want 1", n)
	}
	if _, err := g.Sessions().Get(stale); err != nil {
		t.Fatalf("the stale key was not admitted again under itself: %v", err)
	}
	bogus := stale[:len(stale)-2] + "AA"
	if bogus == stale {
		bogus = stale[:len(stale)-2] + "BA"
	}
	for i := range 10 {
		r := modernDo(t, url, "tools/list", `{"_meta":`+modernMeta("bogus")+`}`, map[string]string{"Mcpgate-Session": bogus})
		if r.Status != http.StatusOK {
			t.Fatalf("request %d with a forged key: %d %s", i, r.Status, r.Body)
		}
	}
	if n := g.Sessions().Len(); n != 2 {
		t.Fatalf("ten requests with a forged key left %d sessions; want 2 (the stale key's and the address's)", n)
	}
}

// TestModernMetaRulesAtGateway: in front of a stdio server, modern
// requests whose _meta lacks the protocol version or the client
// capabilities are refused by the gateway with 400 and -32602, whatever
// the server would have answered; clientInfo is not required.
func TestModernMetaRulesAtGateway(t *testing.T) {
	t.Parallel()
	g := startGateway(t, nil, stdioRoute("fixture", "/mcp", fixtureBin))
	url := g.URL + "/mcp"
	for name, params := range map[string]string{
		"params {}":            `{}`,
		"no _meta":             `{"cursor":"x"}`,
		"no protocol version":  `{"_meta":{"io.modelcontextprotocol/clientCapabilities":{}}}`,
		"no capabilities":      `{"_meta":{"io.modelcontextprotocol/protocolVersion":"` + modernVersion + `"}}`,
		"capabilities not obj": `{"_meta":{"io.modelcontextprotocol/protocolVersion":"` + modernVersion + `","io.modelcontextprotocol/clientCapabilities":[]}}`,
	} {
		for _, method := range []string{"tools/list", "server/discover"} {
			r := modernDo(t, url, method, params, nil)
			if r.Status != http.StatusBadRequest || r.Code != -32602 || string(r.ID) != "7" {
				t.Errorf("%s %s: %d code %d id %s %s; want 400 -32602 with id 7", method, name, r.Status, r.Code, r.ID, r.Body)
			}
		}
	}
	r := modernDo(t, url, "server/discover", `{"_meta":{"io.modelcontextprotocol/protocolVersion":"`+modernVersion+`","io.modelcontextprotocol/clientCapabilities":{}}}`, nil)
	if r.Status != http.StatusOK {
		t.Errorf("server/discover without clientInfo: %d %s; want 200", r.Status, r.Body)
	}
}

// TestConformanceModernStdio runs the 2026-07-28 scenarios that check the
// request rules (server-stateless) and Mcp-Param-* validation
// (http-custom-header-server-validation) through mcpgate in front of the
// stdio fixture and a bridged legacy HTTP fixture: the gateway enforces
// them, whatever the upstream checks itself.
func TestConformanceModernStdio(t *testing.T) {
	t.Parallel()
	nodetool.Node(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	t.Cleanup(cancel) // after the parallel subtests
	legacy := httpRoute("fixture", "/mcp", fixtureHTTP(t, false))
	legacy.Upstream.Era = config.EraLegacy
	for name, route := range map[string]config.Route{
		"stdio":          stdioRoute("fixture", "/mcp", fixtureBin),
		"bridged legacy": legacy,
	} {
		g := startGateway(t, nil, route)
		for _, scenario := range []string{"server-stateless", "http-custom-header-server-validation"} {
			t.Run(name+"/"+scenario, func(t *testing.T) {
				t.Parallel()
				res := nodetool.RunConformance(ctx, t, g.URL+"/mcp", "--scenario", scenario, "--spec-version", modernVersion)
				p, f := res.Totals()
				t.Logf("%s through mcpgate (%s): %d passed, %d failed", scenario, name, p, f)
				for _, s := range res.Scenarios {
					for _, c := range s.Failures {
						t.Errorf("%s: %s", scenario, c)
					}
				}
			})
		}
	}
}

const samplingMeta = `{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{"sampling":{}}}`

// askSampling calls the fixture's test_sampling (bridged from a legacy
// server) and returns the input_required result's requestState and the
// key of its one input request.
func askSampling(t testing.TB, url string, hdr map[string]string) (state, input string) {
	t.Helper()
	h := map[string]string{"Mcp-Name": "test_sampling"}
	for k, v := range hdr {
		h[k] = v
	}
	r := modernDo(t, url, "tools/call", `{"name":"test_sampling","arguments":{"prompt":"What is the capital of France?"},"_meta":`+samplingMeta+`}`, h)
	var ir struct {
		ResultType    string                     `json:"resultType"`
		InputRequests map[string]json.RawMessage `json:"inputRequests"`
		RequestState  string                     `json:"requestState"`
	}
	if r.Status != http.StatusOK || json.Unmarshal(resultOf(t, r.Body), &ir) != nil || ir.ResultType != "input_required" || len(ir.InputRequests) != 1 {
		t.Fatalf("asking call: %d %s", r.Status, r.Body)
	}
	for k := range ir.InputRequests {
		input = k
	}
	return ir.RequestState, input
}

// retrySampling retries test_sampling with the answer "Paris"; nameHeader
// is the Mcp-Name header sent.
func retrySampling(t testing.TB, url, nameHeader, state, input string, hdr map[string]string) rawResp {
	t.Helper()
	h := map[string]string{"Mcp-Name": nameHeader}
	for k, v := range hdr {
		h[k] = v
	}
	retry := fmt.Sprintf(`{"name":"test_sampling","arguments":{"prompt":"What is the capital of France?"},"requestState":%q,"inputResponses":{%q:{"role":"assistant","content":{"type":"text","text":"Paris"},"model":"m","stopReason":"endTurn"}},"_meta":%s}`,
		state, input, samplingMeta)
	return modernDo(t, url, "tools/call", retry, h)
}

// TestModernRefusedRetryCancelsCall: an MRTR retry the gateway refuses
// (here: its Mcp-Name header does not match) or the bridge refuses (the
// state presented for another tool) ends the pending upstream call at
// once; a later retry with the same state finds it ended instead of
// continuing a call that waited all along.
func TestModernRefusedRetryCancelsCall(t *testing.T) {
	t.Parallel()
	route := stdioRoute("fixture", "/mcp", fixtureBin)
	route.Upstream.Era = config.EraLegacy
	g := startGateway(t, nil, route)
	url := g.URL + "/mcp"

	state, input := askSampling(t, url, nil)
	if r := retrySampling(t, url, "wrong_name", state, input, nil); r.Status != http.StatusBadRequest || r.Code != -32020 {
		t.Fatalf("retry with a mismatched Mcp-Name: %d %s; want 400 -32020", r.Status, r.Body)
	}
	if r := retrySampling(t, url, "test_sampling", state, input, nil); r.Code != -32602 || !strings.Contains(r.Msg, "ended") {
		t.Fatalf("retry after a refused one: %d %s; want -32602 (the call was cancelled)", r.Status, r.Body)
	}

	state, input = askSampling(t, url, nil)
	other := fmt.Sprintf(`{"name":"test_simple_text","arguments":{},"requestState":%q,"inputResponses":{},"_meta":%s}`, state, samplingMeta)
	if r := modernDo(t, url, "tools/call", other, map[string]string{"Mcp-Name": "test_simple_text"}); r.Code != -32602 {
		t.Fatalf("state presented for another tool: %d %s; want -32602", r.Status, r.Body)
	}
	if r := retrySampling(t, url, "test_sampling", state, input, nil); r.Code != -32602 || !strings.Contains(r.Msg, "ended") {
		t.Fatalf("retry after a refused one: %d %s; want -32602 (the call was cancelled)", r.Status, r.Body)
	}
	// A retry that is not refused still continues its call.
	state, input = askSampling(t, url, nil)
	if r := retrySampling(t, url, "test_sampling", state, input, nil); r.Status != http.StatusOK || !strings.Contains(r.Body, "Paris") {
		t.Fatalf("retry: %d %s", r.Status, r.Body)
	}
}

// TestModernSharersDoNotCollide: two clients without a key share their
// address's session and, as modern clients do, use the same request id
// and progress token. One's call stays pending upstream (an MRTR question
// is open); the other's call with the same id and token runs, and gets its
// own progress.
func TestModernSharersDoNotCollide(t *testing.T) {
	t.Parallel()
	route := stdioRoute("fixture", "/mcp", fixtureBin)
	route.Upstream.Era = config.EraLegacy
	g := startGateway(t, nil, route)
	url := g.URL + "/mcp"
	metaWithToken := `{"progressToken":"tok","io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{"sampling":{}}}`
	a := modernDo(t, url, "tools/call", `{"name":"test_sampling","arguments":{"prompt":"What is the capital of France?"},"_meta":`+metaWithToken+`}`,
		map[string]string{"Mcp-Name": "test_sampling", "User-Agent": "alice/1"})
	if a.Status != http.StatusOK || !strings.Contains(a.Body, "input_required") {
		t.Fatalf("client A: %d %s", a.Status, a.Body)
	}
	b := modernDo(t, url, "tools/call", `{"name":"test_tool_with_progress","arguments":{},"_meta":`+metaWithToken+`}`,
		map[string]string{"Mcp-Name": "test_tool_with_progress", "User-Agent": "bob/1"})
	if b.Status != http.StatusOK || strings.Contains(b.Body, `"error"`) {
		t.Fatalf("client B, same id and token while A's call is pending: %d %s", b.Status, b.Body)
	}
	if !strings.Contains(b.Body, "notifications/progress") || !strings.Contains(b.Body, `"progressToken":"tok"`) {
		t.Fatalf("client B got none of its progress (token %q):\n%s", "tok", b.Body)
	}
	if n := g.Sessions().Len(); n != 1 {
		t.Fatalf("%d sessions; want the one both share", n)
	}
}
