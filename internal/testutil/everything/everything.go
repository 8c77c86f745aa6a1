// Package everything runs @modelcontextprotocol/server-everything (the MCP
// reference "everything" server) and the real TypeScript MCP client in
// test/e2e/tsclient for end-to-end tests.
//
// Both come from the pinned Node install in tools/node (see package nodetool):
//
//	url := everything.StartHTTP(t)                   // upstream over Streamable HTTP
//	cmd, args := everything.StdioCommand(t)          // upstream over stdio, for the gateway to spawn
//	rep := everything.RunClient(ctx, t, gatewayURL)  // drive it through mcpgate
//	rep.AssertAllOK(t)
//
// Behaviour of server-everything (2026.8.31, SDK 1.32.2) that a gateway in
// front of it has to relay:
//
//   - Every POST carrying a request is answered with text/event-stream (never
//     application/json). With protocol 2025-11-25 the stream opens with a
//     priming event ("id: <uuid>" and an empty data line) and every event has an
//     id, since the server keeps an in-memory event store (resumable with
//     Last-Event-ID on GET).
//   - Requests the server sends while handling a tools/call (sampling/createMessage,
//     elicitation/create) and progress notifications travel on that tools/call's
//     POST stream (related to it by the SDK's relatedRequestId); the client's
//     answer to them is a separate POST, answered 202.
//   - Messages not tied to a client request travel on the standalone GET stream
//     and are dropped (only stored in the event store) when none is open:
//     roots/list (sent ~350ms after notifications/initialized when the client
//     declares roots, and again on notifications/roots/list_changed or from the
//     get-roots-list tool when it has no roots yet), notifications/resources/updated,
//     notifications/message (e.g. the subscribe acknowledgement) and list_changed.
//   - The sampling, elicitation and roots tools exist only when the client
//     declared those capabilities; they are registered while the server handles
//     notifications/initialized.
//   - DELETE answers 200 with an empty body and closes the session (its GET
//     stream ends). A later request with that Mcp-Session-Id gets 400 "Bad
//     Request: No valid session ID provided" from server-everything's own router,
//     not the 404 the spec asks for; so does any unknown session id.
//   - SSE keep-alive comments (": keepalive") every 15s on open streams.
//   - A second concurrent GET for one session is refused with 409.
//
// Over stdio (one process per session, extra.sessionId undefined):
//
//   - Right after notifications/initialized it writes one notifications/tools/list_changed
//     per conditional tool it registers (three for a client with sampling,
//     elicitation and roots) and, if the client declared
//     roots, a roots/list request ~350ms later: traffic that no client request
//     caused, arriving before the client may have a GET stream open.
//   - Its own request ids start at 0 per process and carry nothing that ties a
//     sampling/createMessage or elicitation/create to the tools/call that caused
//     it (no related-request metadata on the wire); progress notifications carry
//     only the client's progressToken.
//   - It exits on stdin EOF only while no timer is active: after
//     toggle-subscriber-updates or toggle-simulated-logging it keeps running, so
//     whoever spawned it must signal it (SIGINT and SIGTERM both end it).
package everything

import (
	"bufio"
	"bytes"
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/internal/testutil/nodetool"
)

// Package is the npm package name of the everything server.
const Package = "@modelcontextprotocol/server-everything"

// entry is the server's launcher inside its package; its first argument picks
// the transport (stdio, sse or streamableHttp).
const entry = "dist/index.js"

const listeningMarker = "MCPGATE_EVERYTHING_LISTENING "

//go:embed loopback.cjs
var loopbackPreload []byte

// ScenarioNames lists, in order, the scenarios client.mjs runs after a
// successful connect. AssertAllOK requires each of them.
var ScenarioNames = []string{
	"connect",
	"get-stream",
	"session-id-header",
	"ping",
	"tools-list",
	"echo",
	"get-sum",
	"progress",
	"sampling",
	"elicitation",
	"roots",
	"resources-list",
	"resources-read",
	"prompts-list",
	"prompts-get",
	"logging-set-level",
	"resources-subscribe",
	"concurrent",
	"errors",
	"session-id-stable",
	"terminate",
}

// Report is the JSON report printed by test/e2e/tsclient/client.mjs.
type Report struct {
	// OK is the client's own verdict: every scenario passed.
	OK  bool   `json:"ok"`
	URL string `json:"url"`
	// SessionID is the Mcp-Session-Id the client was given at initialize.
	SessionID string `json:"sessionId"`
	// ProtocolVersion is the version negotiated at initialize.
	ProtocolVersion string      `json:"protocolVersion"`
	ServerInfo      *ServerInfo `json:"serverInfo"`
	Scenarios       []Scenario  `json:"scenarios"`
	HTTP            HTTPFacts   `json:"http"`
	// Streams maps a message method to where each such message reached the
	// client: "GET" (the standalone SSE stream) or "POST <method>" (the SSE
	// response to a POSTed request of that method).
	Streams map[string][]string `json:"streams"`
	// Errors are transport errors the SDK reported (informational).
	Errors []string `json:"errors"`

	// ExitCode is the client process's exit status (0 when every scenario passed).
	ExitCode int `json:"-"`
	// Stderr is the client's diagnostic output (one PASS/FAIL line per scenario).
	Stderr string `json:"-"`
}

// ServerInfo is the serverInfo from the initialize result.
type ServerInfo struct {
	Name    string `json:"name"`
	Title   string `json:"title,omitempty"`
	Version string `json:"version"`
}

// Scenario is one step of the client run.
type Scenario struct {
	Name       string `json:"name"`
	OK         bool   `json:"ok"`
	Detail     string `json:"detail"`
	DurationMS int64  `json:"durationMs"`
}

// HTTPFacts are HTTP-level observations made by the client.
type HTTPFacts struct {
	// GetStatuses holds the status of every GET (standalone SSE stream) opened.
	GetStatuses []int `json:"getStatuses"`
	// DeleteStatus is the status of the session-terminating DELETE (0: not sent).
	DeleteStatus int `json:"deleteStatus"`
	// AfterDeleteStatus is the status of a POST made with the terminated
	// session id (0: not sent).
	AfterDeleteStatus int `json:"afterDeleteStatus"`
	// SessionIDs holds every distinct Mcp-Session-Id response header seen.
	SessionIDs []string `json:"sessionIds"`
	// PostContentTypes holds the media types of responses to POSTed requests.
	PostContentTypes []string `json:"postContentTypes"`
}

// Scenario returns the named scenario's result.
func (r Report) Scenario(name string) (Scenario, bool) {
	for _, s := range r.Scenarios {
		if s.Name == name {
			return s, true
		}
	}
	return Scenario{}, false
}

// Failed returns the scenarios that did not pass.
func (r Report) Failed() []Scenario {
	var out []Scenario
	for _, s := range r.Scenarios {
		if !s.OK {
			out = append(out, s)
		}
	}
	return out
}

// AssertAllOK reports a test error for every failed or missing scenario and
// for a non-zero client exit, logging the client's stderr when anything is wrong.
func (r Report) AssertAllOK(t testing.TB) {
	t.Helper()
	bad := false
	for _, s := range r.Failed() {
		t.Errorf("tsclient scenario %q failed: %s", s.Name, s.Detail)
		bad = true
	}
	for _, name := range ScenarioNames {
		if _, ok := r.Scenario(name); !ok {
			t.Errorf("tsclient scenario %q did not run", name)
			bad = true
		}
	}
	if !r.OK || r.ExitCode != 0 {
		t.Errorf("tsclient verdict ok=%v exit=%d", r.OK, r.ExitCode)
		bad = true
	}
	if bad {
		t.Logf("tsclient stderr:\n%s", r.Stderr)
	}
}

// StartHTTP runs server-everything in streamableHttp mode on a free loopback
// port and returns its MCP endpoint URL (http://127.0.0.1:PORT/mcp). The server
// and its process group are stopped when the test ends.
//
// server-everything only reads PORT and listens on every interface; a small
// preload (loopback.cjs) makes it bind 127.0.0.1 and report the port it got for
// PORT=0, so there is no port-picking race.
func StartHTTP(t testing.TB) string {
	t.Helper()
	node := nodetool.Node(t)
	script := nodetool.Bin(t, Package, entry)

	preload := filepath.Join(t.TempDir(), "mcpgate-loopback.cjs")
	if err := os.WriteFile(preload, loopbackPreload, 0o600); err != nil {
		t.Fatalf("everything: write preload: %v", err)
	}

	cmd := exec.Command(node, "-r", preload, script, "streamableHttp")
	cmd.Env = append(os.Environ(), "PORT=0", "NODE_ENV=test")
	cmd.Dir = filepath.Dir(script)
	setProcessGroup(cmd)
	stdout := newTail(64 << 10)
	stderr := newTail(64 << 10)
	cmd.Stdout = stdout
	errPipe, err := cmd.StderrPipe()
	if err != nil {
		t.Fatalf("everything: stderr pipe: %v", err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("everything: start %s: %v", script, err)
	}

	type bound struct {
		host string
		port int
	}
	boundc := make(chan bound, 1)
	scanDone := make(chan struct{})
	go func() {
		defer close(scanDone)
		sc := bufio.NewScanner(errPipe)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		sent := false
		for sc.Scan() {
			line := sc.Text()
			_, _ = stderr.Write([]byte(line + "\n"))
			if rest, ok := strings.CutPrefix(line, listeningMarker); ok && !sent {
				host, portStr, _ := strings.Cut(strings.TrimSpace(rest), " ")
				if port, err := strconv.Atoi(portStr); err == nil {
					boundc <- bound{host, port}
					sent = true
				}
			}
		}
		_, _ = io.Copy(stderr, errPipe)
	}()
	exited := make(chan struct{})
	var waitErr error
	go func() {
		<-scanDone // Wait must not run before the stderr pipe is drained.
		waitErr = cmd.Wait()
		close(exited)
	}()

	var stopOnce sync.Once
	stop := func() {
		stopOnce.Do(func() {
			signalGroup(cmd, false)
			select {
			case <-exited:
			case <-time.After(5 * time.Second):
				signalGroup(cmd, true)
				select {
				case <-exited:
				case <-time.After(5 * time.Second):
					t.Logf("everything: server pid %d did not exit after SIGKILL", cmd.Process.Pid)
				}
			}
		})
	}
	t.Cleanup(func() {
		stop()
		if t.Failed() {
			t.Logf("everything: server stderr:\n%s\nserver stdout (tail):\n%s", stderr.String(), stdout.String())
		}
	})

	select {
	case b := <-boundc:
		if b.host != "127.0.0.1" {
			stop()
			t.Fatalf("everything: server bound %s, want 127.0.0.1", b.host)
		}
		return fmt.Sprintf("http://127.0.0.1:%d/mcp", b.port)
	case <-exited:
		t.Fatalf("everything: server exited before listening: %v\nstderr:\n%s\nstdout:\n%s", waitErr, stderr.String(), stdout.String())
	case <-time.After(30 * time.Second):
		stop()
		t.Fatalf("everything: server did not report a listening port within 30s\nstderr:\n%s\nstdout:\n%s", stderr.String(), stdout.String())
	}
	return ""
}

// StdioCommand returns the command line that runs server-everything over
// stdio with the pinned Node 22 binary, for the gateway to spawn. The server
// writes only JSON-RPC to stdout and logs to stderr.
func StdioCommand(t testing.TB) (command string, args []string) {
	t.Helper()
	return nodetool.Node(t), []string{nodetool.Bin(t, Package, entry), "stdio"}
}

// ClientScript returns the absolute path of test/e2e/tsclient/client.mjs.
func ClientScript(t testing.TB) string {
	t.Helper()
	script := filepath.Join(nodetool.Root(t), "test", "e2e", "tsclient", "client.mjs")
	if _, err := os.Stat(script); err != nil {
		t.Fatalf("everything: client script: %v", err)
	}
	return script
}

// clientTimeout bounds a whole client run; client.mjs has its own watchdog
// (150s) and per-scenario timeouts well below this.
const clientTimeout = 4 * time.Minute

// RunClient runs the TypeScript scenario client (test/e2e/tsclient/client.mjs)
// against the MCP endpoint url and returns its parsed report. It fails the
// test only when the client produced no report; judging the scenarios is up to
// the caller (see Report.AssertAllOK).
func RunClient(ctx context.Context, t testing.TB, url string) Report {
	t.Helper()
	script := ClientScript(t)
	// The client resolves @modelcontextprotocol/sdk from <root>/node_modules;
	// point it at the install nodetool uses: .../node_modules/@modelcontextprotocol/sdk/package.json.
	sdkPkg := nodetool.Bin(t, "@modelcontextprotocol/sdk", "package.json")
	nodeRoot := filepath.Dir(filepath.Dir(filepath.Dir(filepath.Dir(sdkPkg))))

	ctx, cancel := context.WithTimeout(ctx, clientTimeout)
	defer cancel()
	cmd := nodetool.Command(ctx, t, script, url)
	if cmd.Env == nil {
		cmd.Env = os.Environ()
	}
	cmd.Env = append(cmd.Env, "MCPGATE_NODE_ROOT="+nodeRoot)
	var stdout, stderr bytes.Buffer
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr

	start := time.Now()
	runErr := cmd.Run()
	exitCode := 0
	if runErr != nil {
		var ee *exec.ExitError
		if !errors.As(runErr, &ee) {
			t.Fatalf("everything: run client: %v\nstderr:\n%s", runErr, stderr.String())
		}
		exitCode = ee.ExitCode()
	}

	line := lastLine(stdout.String())
	var rep Report
	if err := json.Unmarshal([]byte(line), &rep); err != nil || line == "" {
		t.Fatalf("everything: client (exit %d after %s, ctx err %v) printed no JSON report: %v\nstdout:\n%s\nstderr:\n%s",
			exitCode, time.Since(start).Round(time.Millisecond), ctx.Err(), err, stdout.String(), stderr.String())
	}
	rep.ExitCode = exitCode
	rep.Stderr = stderr.String()
	return rep
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.TrimSpace(lines[len(lines)-1])
}

// tail is a concurrency-safe writer keeping the last max bytes written.
type tail struct {
	mu  sync.Mutex
	max int
	buf []byte
}

func newTail(max int) *tail { return &tail{max: max} }

func (w *tail) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = append(w.buf, p...)
	if over := len(w.buf) - w.max; over > 0 {
		w.buf = append(w.buf[:0], w.buf[over:]...)
	}
	return len(p), nil
}

func (w *tail) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return string(w.buf)
}
