package stdio

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/mcpgate/mcpgate/internal/core"
	"github.com/mcpgate/mcpgate/internal/upstream"
)

// serverBin is the go-sdk test server (testdata/server), built by TestMain.
var serverBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "mcpgate-stdio-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	serverBin = filepath.Join(dir, "server")
	build := exec.Command("go", "build", "-o", serverBin, "./testdata/server")
	// Static, so a sandbox need not let it reach a dynamic loader.
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building the test server:", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	if code == 0 {
		// The spawners live as long as the process, on purpose (startCmd).
		if err := goleak.Find(goleak.IgnoreTopFunction("github.com/mcpgate/mcpgate/internal/upstream/stdio.spawnLoop")); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	os.RemoveAll(dir)
	os.Exit(code)
}

// record is one captured log record, attributes flattened to strings.
type record struct {
	Level slog.Level
	Msg   string
	Attrs map[string]string
}

// recorder is a slog.Handler that keeps every record for assertions.
type recorder struct {
	mu      *sync.Mutex
	records *[]record
	attrs   []slog.Attr
}

func newRecorder() *recorder {
	return &recorder{mu: new(sync.Mutex), records: new([]record)}
}

func (r *recorder) Enabled(context.Context, slog.Level) bool { return true }

func (r *recorder) Handle(_ context.Context, rec slog.Record) error {
	m := make(map[string]string)
	for _, a := range r.attrs {
		m[a.Key] = a.Value.Resolve().String()
	}
	rec.Attrs(func(a slog.Attr) bool {
		m[a.Key] = a.Value.Resolve().String()
		return true
	})
	r.mu.Lock()
	*r.records = append(*r.records, record{Level: rec.Level, Msg: rec.Message, Attrs: m})
	r.mu.Unlock()
	return nil
}

func (r *recorder) WithAttrs(as []slog.Attr) slog.Handler {
	return &recorder{mu: r.mu, records: r.records, attrs: append(append([]slog.Attr(nil), r.attrs...), as...)}
}

func (r *recorder) WithGroup(string) slog.Handler { return r }

func (r *recorder) all() []record {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]record(nil), *r.records...)
}

func (r *recorder) count(msg string) int {
	n := 0
	for _, rec := range r.all() {
		if rec.Msg == msg {
			n++
		}
	}
	return n
}

// wait polls for a record that satisfies ok.
func (r *recorder) wait(t testing.TB, what string, ok func(record) bool) record {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		for _, rec := range r.all() {
			if ok(rec) {
				return rec
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("no log record: %s", what)
	return record{}
}

func stderrLine(contains string) func(record) bool {
	return func(r record) bool { return r.Msg == "stdio_stderr" && strings.Contains(r.Attrs["line"], contains) }
}

// sink records what a Conn gives its Sink. onDeliver, if set, runs on a
// goroutine of its own for each delivered message.
type sink struct {
	mu        sync.Mutex
	delivered []*core.Message
	closed    []error
	closedCh  chan error
	onDeliver func(*core.Message)
}

func newSink() *sink { return &sink{closedCh: make(chan error, 4)} }

func (s *sink) Deliver(m *core.Message) {
	s.mu.Lock()
	s.delivered = append(s.delivered, m)
	f := s.onDeliver
	s.mu.Unlock()
	if f != nil {
		go f(m)
	}
}

func (s *sink) Closed(err error) {
	s.mu.Lock()
	s.closed = append(s.closed, err)
	s.mu.Unlock()
	s.closedCh <- err
}

func (s *sink) snapshot() (delivered []*core.Message, closed []error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*core.Message(nil), s.delivered...), append([]error(nil), s.closed...)
}

// collector is a Related that keeps what it is given.
type collector struct {
	mu   sync.Mutex
	msgs []*core.Message
	on   func(*core.Message)
}

func (c *collector) related(m *core.Message) {
	c.mu.Lock()
	c.msgs = append(c.msgs, m)
	on := c.on
	c.mu.Unlock()
	if on != nil {
		go on(m)
	}
}

func (c *collector) got() []*core.Message {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]*core.Message(nil), c.msgs...)
}

type testUpstream struct {
	*Upstream
	rec *recorder
}

// newTestUpstream runs the go-sdk test server (with args) unless cfg names
// a command.
func newTestUpstream(t testing.TB, cfg Options, args ...string) testUpstream {
	t.Helper()
	if cfg.Command == "" {
		cfg.Command = serverBin
		cfg.Args = args
	}
	if cfg.ShutdownGrace == 0 {
		cfg.ShutdownGrace = 2 * time.Second
	}
	rec := newRecorder()
	up := New(cfg, "test-route", slog.New(rec))
	t.Cleanup(func() { _ = up.Close() })
	return testUpstream{Upstream: up, rec: rec}
}

func script(s string) Options {
	return Options{Command: "sh", Args: []string{"-c", s}}
}

var sessionSeq struct {
	sync.Mutex
	n int
}

// open starts a process for a new session and closes it at the end of the
// test.
func (u testUpstream) open(t testing.TB, era core.Era) (*Conn, *sink, *core.SessionInfo) {
	t.Helper()
	sessionSeq.Lock()
	sessionSeq.n++
	info := &core.SessionInfo{ID: fmt.Sprintf("sess-%d", sessionSeq.n), Route: "test-route", Era: era}
	sessionSeq.Unlock()
	s := newSink()
	conn, err := u.Open(context.Background(), upstream.OpenParams{Session: info, Era: era}, s)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	c := conn.(*Conn)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if err := c.Close(ctx); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return c, s, info
}

func decode(t testing.TB, raw string) *core.Message {
	t.Helper()
	m, err := core.Decode([]byte(raw))
	if err != nil {
		t.Fatalf("decode %s: %v", raw, err)
	}
	m.Direction = core.ClientToServer
	return m
}

func encode(t testing.TB, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// request builds a client request; meta, if non-nil, becomes params._meta.
func request(t testing.TB, id any, method string, params map[string]any) *core.Message {
	t.Helper()
	msg := map[string]any{"jsonrpc": "2.0", "id": id, "method": method}
	if params != nil {
		msg["params"] = params
	}
	return decode(t, encode(t, msg))
}

func modernMeta() map[string]any {
	return map[string]any{
		core.MetaProtocolVersion:    core.Version20260728,
		core.MetaClientCapabilities: map[string]any{},
	}
}

func toolCall(t testing.TB, id any, name string, args map[string]any, meta map[string]any) *core.Message {
	t.Helper()
	params := map[string]any{"name": name, "arguments": args}
	if meta != nil {
		params["_meta"] = meta
	}
	return request(t, id, "tools/call", params)
}

// initialize runs the legacy handshake, declaring the sampling capability.
func initialize(t testing.TB, c *Conn) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := c.RoundTrip(ctx, request(t, 0, "initialize", map[string]any{
		"protocolVersion": core.Version20251125,
		"capabilities":    map[string]any{"sampling": map[string]any{}},
		"clientInfo":      map[string]any{"name": "stdio-test", "version": "1"},
	}), nil)
	if err != nil {
		t.Fatalf("initialize: %v", err)
	}
	if resp.Kind != core.KindResponse {
		t.Fatalf("initialize answered %s", resp.Raw)
	}
	if err := c.Send(ctx, decode(t, `{"jsonrpc":"2.0","method":"notifications/initialized"}`)); err != nil {
		t.Fatalf("initialized: %v", err)
	}
}

// toolText returns the text of a tools/call result's first content block.
func toolText(t testing.TB, resp *core.Message) string {
	t.Helper()
	if resp.Kind != core.KindResponse {
		t.Fatalf("tools/call answered %s", resp.Raw)
	}
	var r struct {
		Content []struct {
			Text string `json:"text"`
		} `json:"content"`
		IsError bool `json:"isError"`
	}
	if err := json.Unmarshal(resp.Result, &r); err != nil || len(r.Content) == 0 {
		t.Fatalf("tools/call result %s: %v", resp.Result, err)
	}
	if r.IsError {
		t.Fatalf("tool error: %s", r.Content[0].Text)
	}
	return r.Content[0].Text
}

func timeout(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// eventually polls cond.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting: %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (c *Conn) clientCalls() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.Clients
}
