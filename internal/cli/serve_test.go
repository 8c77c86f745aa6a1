package cli_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/internal/session"
)

// buildBinaries builds mcpgate and the conformance fixture (a stdio MCP
// server) into a temporary directory.
func buildBinaries(t *testing.T) (mcpgate, fixture string) {
	t.Helper()
	if testing.Short() {
		t.Skip("builds binaries; skipped with -short")
	}
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("go tool not found:", err)
	}
	dir := t.TempDir()
	cmd := exec.Command(goTool, "build", "-o", dir+string(filepath.Separator),
		"github.com/mcpgate/mcpgate/cmd/mcpgate",
		"github.com/mcpgate/mcpgate/internal/testutil/conformancefixture/cmd/fixture")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return filepath.Join(dir, "mcpgate"), filepath.Join(dir, "fixture")
}

// logWatcher is the child's stderr: it keeps every line for failure
// messages and hands over the address of the first "listening" record.
type logWatcher struct {
	mu        sync.Mutex
	buf       bytes.Buffer
	partial   []byte
	listening chan string
	once      sync.Once
}

func (w *logWatcher) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(p)
	w.partial = append(w.partial, p...)
	for {
		i := bytes.IndexByte(w.partial, '\n')
		if i < 0 {
			break
		}
		var rec struct {
			Msg     string `json:"msg"`
			Address string `json:"address"`
		}
		if json.Unmarshal(w.partial[:i], &rec) == nil && rec.Msg == "listening" {
			w.once.Do(func() { w.listening <- rec.Address })
		}
		w.partial = w.partial[i+1:]
	}
	return len(p), nil
}

func (w *logWatcher) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

// childrenOf lists the processes whose parent is pid (Linux /proc).
func childrenOf(t *testing.T, pid int) []int {
	t.Helper()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	var out []int
	for _, e := range entries {
		child, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue // exited meanwhile
		}
		// pid (comm) state ppid ...; comm may hold spaces and parentheses.
		fields := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:]))
		if len(fields) > 1 && fields[1] == strconv.Itoa(pid) {
			out = append(out, child)
		}
	}
	return out
}

func alive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// TestServe runs the real binary in front of a stdio MCP server: it
// listens, answers initialize with a session, and on SIGTERM shuts down
// cleanly, taking the stdio server with it.
func TestServe(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("inspects child processes through /proc")
	}
	mcpgate, fixture := buildBinaries(t)

	stderr := &logWatcher{listening: make(chan string, 1)}
	cmd := exec.Command(mcpgate, "serve", "--listen", "127.0.0.1:0", "--stdio", "'"+fixture+"'")
	cmd.Dir = t.TempDir() // anything written relative to the working directory stays here
	cmd.Stdout = io.Discard
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			<-exited
		}
	})

	var addr string
	select {
	case addr = <-stderr.listening:
	case err := <-exited:
		t.Fatalf("mcpgate exited before listening: %v\n%s", err, stderr)
	case <-time.After(30 * time.Second):
		t.Fatalf("no listening record within 30s:\n%s", stderr)
	}

	body := `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"cli-test","version":"0.0.1"}}}`
	req, err := http.NewRequest(http.MethodPost, "http://"+addr+"/mcp", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	client := &http.Client{Timeout: 30 * time.Second}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("POST initialize: %v\n%s", err, stderr)
	}
	respBody, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("initialize: HTTP %d %s\n%s", resp.StatusCode, respBody, stderr)
	}
	if id := resp.Header.Get("Mcp-Session-Id"); !session.ValidID(id) {
		t.Errorf("Mcp-Session-Id = %q, want a valid session id", id)
	}
	result, err := initializeResult(resp.Header.Get("Content-Type"), respBody)
	if err != nil {
		t.Fatalf("initialize response: %v\n%s", err, respBody)
	}
	if result.ProtocolVersion != "2025-06-18" || result.ServerInfo.Name == "" {
		t.Errorf("initialize result = %+v, want protocol 2025-06-18 and the fixture's serverInfo", result)
	}

	// The session's stdio server is a child of mcpgate.
	kids := childrenOf(t, cmd.Process.Pid)
	if len(kids) == 0 {
		t.Fatalf("no stdio child process after initialize\n%s", stderr)
	}

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Errorf("mcpgate exited with %v after SIGTERM, want status 0\n%s", err, stderr)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("mcpgate still running 10s after SIGTERM\n%s", stderr)
	}
	for _, pid := range kids {
		if alive(pid) {
			t.Errorf("stdio child %d outlived mcpgate", pid)
		}
	}
	if !strings.Contains(stderr.String(), `"msg":"shutting_down"`) {
		t.Errorf("no shutting_down record:\n%s", stderr)
	}
}

type initResult struct {
	ProtocolVersion string `json:"protocolVersion"`
	ServerInfo      struct {
		Name string `json:"name"`
	} `json:"serverInfo"`
}

// initializeResult reads the JSON-RPC response from a JSON body or from
// the first data line of an SSE stream.
func initializeResult(contentType string, body []byte) (initResult, error) {
	payload := body
	if strings.HasPrefix(contentType, "text/event-stream") {
		payload = nil
		sc := bufio.NewScanner(bytes.NewReader(body))
		for sc.Scan() {
			if data, ok := strings.CutPrefix(sc.Text(), "data:"); ok && strings.TrimSpace(data) != "" {
				payload = []byte(data)
				break
			}
		}
		if payload == nil {
			return initResult{}, errors.New("no data in event stream")
		}
	}
	var msg struct {
		Result *initResult      `json:"result"`
		Error  *json.RawMessage `json:"error"`
	}
	if err := json.Unmarshal(payload, &msg); err != nil {
		return initResult{}, err
	}
	if msg.Result == nil {
		return initResult{}, fmt.Errorf("no result (error %s)", string(deref(msg.Error)))
	}
	return *msg.Result, nil
}

func deref(m *json.RawMessage) json.RawMessage {
	if m == nil {
		return nil
	}
	return *m
}
