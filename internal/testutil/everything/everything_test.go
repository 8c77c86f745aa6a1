package everything_test

import (
	"bufio"
	"context"
	"encoding/json"
	"net"
	"net/url"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/internal/testutil/everything"
)

// TestClientAgainstServerEverythingHTTP validates the harness itself: the real
// TypeScript client, run directly against server-everything over Streamable
// HTTP (no gateway in between), must pass every scenario.
func TestClientAgainstServerEverythingHTTP(t *testing.T) {
	t.Parallel()
	u := everything.StartHTTP(t)
	assertLoopback(t, u)

	rep := everything.RunClient(t.Context(), t, u)
	rep.AssertAllOK(t)

	if rep.SessionID == "" {
		t.Error("report has no session id")
	}
	if rep.ProtocolVersion != "2025-11-25" {
		t.Errorf("negotiated protocol version %q, want 2025-11-25", rep.ProtocolVersion)
	}
	if rep.ServerInfo == nil || rep.ServerInfo.Name != "mcp-servers/everything" {
		t.Errorf("serverInfo %+v, want name mcp-servers/everything", rep.ServerInfo)
	}
	if !slices.Equal(rep.HTTP.SessionIDs, []string{rep.SessionID}) {
		t.Errorf("Mcp-Session-Id headers %q, want only %q", rep.HTTP.SessionIDs, rep.SessionID)
	}
	if rep.HTTP.DeleteStatus != 200 {
		t.Errorf("DELETE status %d, want 200", rep.HTTP.DeleteStatus)
	}
	// server-everything's router answers 400 (not the spec's 404) for a
	// terminated or unknown session id.
	if rep.HTTP.AfterDeleteStatus != 400 {
		t.Errorf("status after DELETE %d, want server-everything's 400", rep.HTTP.AfterDeleteStatus)
	}

	// Where server-everything sends what (documented in the package doc; the
	// gateway tests rely on a gateway preserving this).
	wantStreams := map[string]string{
		"sampling/createMessage":          "POST tools/call",
		"elicitation/create":              "POST tools/call",
		"notifications/progress":          "POST tools/call",
		"notifications/resources/updated": "GET",
		"roots/list":                      "GET",
	}
	for method, want := range wantStreams {
		got := rep.Streams[method]
		if len(got) == 0 {
			t.Errorf("no %s seen on any stream", method)
			continue
		}
		for _, origin := range got {
			if origin != want {
				t.Errorf("%s arrived on %q, want %q (all: %q)", method, origin, want, got)
				break
			}
		}
	}
}

// TestConcurrentClients runs two clients at once against one server, so that
// per-session state (subscriptions, roots, sampling answers) must not leak
// between sessions.
func TestConcurrentClients(t *testing.T) {
	t.Parallel()
	u := everything.StartHTTP(t)
	var wg sync.WaitGroup
	reports := make([]everything.Report, 2)
	for i := range reports {
		wg.Go(func() { reports[i] = everything.RunClient(t.Context(), t, u) })
	}
	wg.Wait()
	for i, rep := range reports {
		t.Run(string(rune('a'+i)), func(t *testing.T) { rep.AssertAllOK(t) })
	}
	if reports[0].SessionID == reports[1].SessionID {
		t.Errorf("both clients got session %q", reports[0].SessionID)
	}
}

// TestStdioCommand checks that the stdio command line starts the server and
// completes an initialize handshake over stdin/stdout.
func TestStdioCommand(t *testing.T) {
	t.Parallel()
	command, args := everything.StdioCommand(t)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, command, args...)
	cmd.WaitDelay = 5 * time.Second
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		_ = stdin.Close() // EOF on stdin ends the server
		if err := cmd.Wait(); err != nil && ctx.Err() != nil {
			t.Errorf("stdio server did not exit on stdin EOF: %v", err)
		}
	}()

	init := `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"everything-test","version":"0"}}}` + "\n"
	if _, err := stdin.Write([]byte(init)); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(stdout)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	if !sc.Scan() {
		t.Fatalf("no initialize response: %v\nstderr:\n%s", sc.Err(), stderr.String())
	}
	var resp struct {
		ID     int `json:"id"`
		Result struct {
			ProtocolVersion string `json:"protocolVersion"`
			ServerInfo      struct {
				Name string `json:"name"`
			} `json:"serverInfo"`
		} `json:"result"`
	}
	if err := json.Unmarshal(sc.Bytes(), &resp); err != nil {
		t.Fatalf("initialize response %q: %v", sc.Text(), err)
	}
	if resp.ID != 1 || resp.Result.ServerInfo.Name != "mcp-servers/everything" || resp.Result.ProtocolVersion != "2025-11-25" {
		t.Errorf("unexpected initialize response %s", sc.Text())
	}
}

func assertLoopback(t *testing.T, raw string) {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	host, _, err := net.SplitHostPort(u.Host)
	if err != nil {
		t.Fatal(err)
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		t.Errorf("server URL %s is not on loopback", raw)
	}
}
