package stdio

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/mcpgate/mcpgate/internal/core"
	"github.com/mcpgate/mcpgate/internal/upstream"
)

func TestInitializeAndToolCall(t *testing.T) {
	t.Parallel()
	u := newTestUpstream(t, Options{})
	c, s, info := u.open(t, core.EraLegacy)
	initialize(t, c)

	before := time.Now()
	resp, err := c.RoundTrip(timeout(t, 10*time.Second), toolCall(t, 1, "echo", map[string]any{"text": "hello"}, nil), nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := toolText(t, resp); got != "hello" {
		t.Errorf("echo = %q, want hello", got)
	}
	if resp.ID != "1" || resp.Direction != core.ServerToClient || resp.Era != core.EraLegacy || resp.Session != info || resp.Received.Before(before) {
		t.Errorf("response routing fields: id %s direction %v era %v session %p (want %p) received %v",
			resp.ID, resp.Direction, resp.Era, resp.Session, info, resp.Received)
	}
	if c.UpstreamSession() != "" {
		t.Errorf("UpstreamSession = %q, want empty", c.UpstreamSession())
	}
	if err := c.Listen(context.Background()); err != nil {
		t.Errorf("Listen: %v", err)
	}
	spawn := u.rec.wait(t, "spawn", func(r record) bool { return r.Msg == "stdio_spawn" })
	if spawn.Attrs["session"] != info.LogID() || spawn.Attrs["route"] != "test-route" || spawn.Attrs["pid"] == "" || spawn.Attrs["command"] != serverBin {
		t.Errorf("spawn log attrs = %v", spawn.Attrs)
	}
	if d, _ := s.snapshot(); len(d) != 0 {
		t.Errorf("sink got %d messages, want none", len(d))
	}
}

// The go-sdk v1.8 stdio server is dual-era: without initialize it serves
// requests that carry the 2026-07-28 _meta.
func TestModernToolCallWithoutInitialize(t *testing.T) {
	t.Parallel()
	u := newTestUpstream(t, Options{})
	c, _, _ := u.open(t, core.EraModern)
	resp, err := c.RoundTrip(timeout(t, 10*time.Second), toolCall(t, "m-1", "echo", map[string]any{"text": "modern"}, modernMeta()), nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := toolText(t, resp); got != "modern" {
		t.Errorf("echo = %q", got)
	}
	if resp.Era != core.EraModern {
		t.Errorf("era = %v", resp.Era)
	}
	var r struct {
		ResultType string `json:"resultType"`
	}
	_ = json.Unmarshal(resp.Result, &r)
	if r.ResultType != "complete" {
		t.Errorf("resultType = %q, want complete", r.ResultType)
	}
}

func TestProgressRoutedByToken(t *testing.T) {
	t.Parallel()
	u := newTestUpstream(t, Options{})
	c, s, _ := u.open(t, core.EraLegacy)
	initialize(t, c)

	// Two calls in flight at once: only the token can tell their progress apart.
	tokens := []any{"tok-a", 7}
	cols := make([]*collector, len(tokens))
	var wg sync.WaitGroup
	for i, tok := range tokens {
		cols[i] = &collector{}
		wg.Go(func() {
			req := toolCall(t, 100+i, "slow", map[string]any{"steps": 3, "delay_ms": 20}, map[string]any{"progressToken": tok})
			resp, err := c.RoundTrip(timeout(t, 10*time.Second), req, cols[i].related)
			if err != nil {
				t.Errorf("call %d: %v", i, err)
				return
			}
			if got := toolText(t, resp); got != "done 3 steps" {
				t.Errorf("call %d = %q", i, got)
			}
		})
	}
	wg.Wait()
	for i, tok := range tokens {
		want := encode(t, tok)
		msgs := cols[i].got()
		if len(msgs) != 3 {
			t.Errorf("call %d: related got %d messages, want 3 progress notifications", i, len(msgs))
		}
		for _, m := range msgs {
			if m.Method != "notifications/progress" || string(m.ProgressToken) != want || m.Direction != core.ServerToClient {
				t.Errorf("call %d: related got %s (direction %v)", i, m.Raw, m.Direction)
			}
		}
	}
	if d, _ := s.snapshot(); len(d) != 0 {
		t.Errorf("sink got %d messages, want none", len(d))
	}
}

func samplingAnswer(t testing.TB, c *Conn, m *core.Message, text string) {
	if m.Kind != core.KindRequest || m.Method != "sampling/createMessage" {
		t.Errorf("expected a sampling request, got %s", m.Raw)
		return
	}
	result := encode(t, map[string]any{
		"role": "assistant", "model": "test-model",
		"content": map[string]any{"type": "text", "text": text},
	})
	if err := c.Send(timeout(t, 5*time.Second), core.ResultResponse(m.ID, []byte(result))); err != nil {
		t.Errorf("Send sampling answer: %v", err)
	}
}

func TestSamplingRoutedToRelatedAndAnsweredWithSend(t *testing.T) {
	t.Parallel()
	u := newTestUpstream(t, Options{})
	c, s, _ := u.open(t, core.EraLegacy)
	initialize(t, c)

	col := &collector{on: func(m *core.Message) { samplingAnswer(t, c, m, "forty-two") }}
	resp, err := c.RoundTrip(timeout(t, 10*time.Second), toolCall(t, "s-1", "sample", map[string]any{"prompt": "meaning?"}, nil), col.related)
	if err != nil {
		t.Fatal(err)
	}
	if got := toolText(t, resp); got != "sampled: forty-two" {
		t.Errorf("tool result = %q", got)
	}
	if msgs := col.got(); len(msgs) != 1 || msgs[0].Method != "sampling/createMessage" {
		t.Errorf("related got %d messages", len(msgs))
	}
	if d, _ := s.snapshot(); len(d) != 0 {
		t.Errorf("sink got %d messages, want none", len(d))
	}
}

// With two client requests in flight, a server request cannot be tied to
// either: it goes to the Sink.
func TestServerRequestWithSeveralInFlightGoesToSink(t *testing.T) {
	t.Parallel()
	u := newTestUpstream(t, Options{})
	c, s, _ := u.open(t, core.EraLegacy)
	initialize(t, c)
	s.onDeliver = func(m *core.Message) { samplingAnswer(t, c, m, "via sink") }

	slowCtx, stopSlow := context.WithCancel(context.Background())
	defer stopSlow()
	slowDone := make(chan error, 1)
	slowCol := &collector{}
	go func() {
		_, err := c.RoundTrip(slowCtx, toolCall(t, "slow-1", "slow", map[string]any{"steps": 1000, "delay_ms": 20}, nil), slowCol.related)
		slowDone <- err
	}()
	eventually(t, "slow call registered", func() bool { return c.clientCalls() == 1 })

	col := &collector{}
	resp, err := c.RoundTrip(timeout(t, 10*time.Second), toolCall(t, "s-2", "sample", map[string]any{"prompt": "x"}, nil), col.related)
	if err != nil {
		t.Fatal(err)
	}
	if got := toolText(t, resp); got != "sampled: via sink" {
		t.Errorf("tool result = %q", got)
	}
	if n := len(col.got()) + len(slowCol.got()); n != 0 {
		t.Errorf("related got %d messages, want none", n)
	}
	if d, _ := s.snapshot(); len(d) != 1 || d[0].Method != "sampling/createMessage" || d[0].Direction != core.ServerToClient || d[0].Session == nil {
		t.Errorf("sink got %v", d)
	}
	stopSlow()
	if err := <-slowDone; !errors.Is(err, context.Canceled) {
		t.Errorf("slow call: %v, want context.Canceled", err)
	}
}

func TestConcurrentCalls(t *testing.T) {
	t.Parallel()
	u := newTestUpstream(t, Options{})
	c, _, _ := u.open(t, core.EraLegacy)
	initialize(t, c)

	const n = 32
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			text := fmt.Sprintf("call-%d", i)
			resp, err := c.RoundTrip(timeout(t, 10*time.Second), toolCall(t, i+1, "echo", map[string]any{"text": text}, nil), nil)
			if err != nil {
				t.Errorf("%s: %v", text, err)
				return
			}
			if got := toolText(t, resp); got != text || resp.ID != core.ID(fmt.Sprint(i+1)) {
				t.Errorf("%s: got %q with id %s", text, got, resp.ID)
			}
		})
	}
	wg.Wait()
}

func TestDuplicateRequestID(t *testing.T) {
	t.Parallel()
	u := newTestUpstream(t, Options{})
	c, _, _ := u.open(t, core.EraLegacy)
	initialize(t, c)

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := c.RoundTrip(ctx, toolCall(t, 5, "slow", map[string]any{"steps": 1000, "delay_ms": 10}, nil), nil)
		done <- err
	}()
	eventually(t, "first call registered", func() bool { return c.clientCalls() == 1 })
	_, err := c.RoundTrip(timeout(t, 5*time.Second), toolCall(t, 5, "echo", map[string]any{"text": "x"}, nil), nil)
	var ce *core.Error
	if !errors.As(err, &ce) || ce.Code != core.CodeInvalidRequest || ce.Message != "duplicate request id" {
		t.Errorf("second call with id 5: %v, want a duplicate request id error", err)
	}
	cancel()
	<-done
}

// A client may POST pretty-printed JSON; on stdio a message is one line.
func TestPrettyPrintedRequestIsCompacted(t *testing.T) {
	t.Parallel()
	u := newTestUpstream(t, Options{})
	c, _, _ := u.open(t, core.EraLegacy)
	initialize(t, c)

	raw := "{\r\n  \"jsonrpc\": \"2.0\",\n  \"id\": 42,\n  \"method\": \"tools/call\",\n  \"params\": {\n    \"name\": \"echo\",\n    \"arguments\": {\"text\": \"line1\\nline2\"}\n  }\n}\n"
	resp, err := c.RoundTrip(timeout(t, 10*time.Second), decode(t, raw), nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := toolText(t, resp); got != "line1\nline2" {
		t.Errorf("echo = %q", got)
	}
}

// A shell that logs each stdin line to stderr shows exactly what is written.
func TestWireFormat(t *testing.T) {
	t.Parallel()
	u := newTestUpstream(t, script(`while IFS= read -r l; do printf 'got %s\n' "$l" >&2; done`))
	c, _, _ := u.open(t, core.EraLegacy)

	t.Run("compacted", func(t *testing.T) {
		if err := c.Send(timeout(t, 5*time.Second), decode(t, "{\"jsonrpc\":\"2.0\",\n \"method\":\"notifications/x\",\n \"params\":{\"a\": [1, 2]}}")); err != nil {
			t.Fatal(err)
		}
		u.rec.wait(t, "compacted line", stderrLine(`got {"jsonrpc":"2.0","method":"notifications/x","params":{"a":[1,2]}}`))
	})
	t.Run("untouched without newlines", func(t *testing.T) {
		raw := `{"jsonrpc":"2.0", "method":"notifications/y", "params":{"b": 1}}`
		if err := c.Send(timeout(t, 5*time.Second), decode(t, raw)); err != nil {
			t.Fatal(err)
		}
		u.rec.wait(t, "raw line", stderrLine("got "+raw))
	})
	t.Run("cancelled request", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() {
			_, err := c.RoundTrip(ctx, request(t, 9, "tools/call", map[string]any{"name": "x"}), nil)
			done <- err
		}()
		u.rec.wait(t, "request written", stderrLine(`got {"id":9,`))
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Errorf("RoundTrip: %v, want context.Canceled", err)
		}
		u.rec.wait(t, "cancellation", stderrLine(`got {"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":9,"reason":"request cancelled"}}`))
	})
	t.Run("timed out request", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		_, err := c.RoundTrip(ctx, request(t, "t-1", "tools/call", map[string]any{"name": "x"}), nil)
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("RoundTrip: %v, want context.DeadlineExceeded", err)
		}
		u.rec.wait(t, "cancellation", stderrLine(`"params":{"requestId":"t-1","reason":"request timed out"}}`))
	})
	t.Run("initialize is never cancelled", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() {
			_, err := c.RoundTrip(ctx, request(t, "init-1", "initialize", map[string]any{"protocolVersion": core.Version20251125}), nil)
			done <- err
		}()
		u.rec.wait(t, "initialize written", stderrLine(`"id":"init-1"`))
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Errorf("RoundTrip: %v, want context.Canceled", err)
		}
		// A marker written after the abandoned initialize: when it shows,
		// anything written before it has shown too.
		if err := c.Send(timeout(t, 5*time.Second), decode(t, `{"jsonrpc":"2.0","method":"notifications/marker"}`)); err != nil {
			t.Fatal(err)
		}
		u.rec.wait(t, "marker", stderrLine("notifications/marker"))
		for _, r := range u.rec.all() {
			if r.Msg == "stdio_stderr" && strings.Contains(r.Attrs["line"], `"requestId":"init-1"`) {
				t.Errorf("initialize was cancelled: %s", r.Attrs["line"])
			}
		}
	})
	t.Run("Send refuses requests", func(t *testing.T) {
		err := c.Send(timeout(t, time.Second), request(t, 1, "ping", nil))
		var ce *core.Error
		if !errors.As(err, &ce) || ce.Code != core.CodeInvalidRequest {
			t.Errorf("Send(request) = %v", err)
		}
	})
}

// The server sees notifications/cancelled: its tool stops early.
func TestCancelReachesServer(t *testing.T) {
	t.Parallel()
	u := newTestUpstream(t, Options{})
	c, _, _ := u.open(t, core.EraLegacy)
	initialize(t, c)

	ctx, cancel := context.WithCancel(context.Background())
	col := &collector{on: func(*core.Message) { cancel() }} // cancel on the first progress
	start := time.Now()
	_, err := c.RoundTrip(ctx, toolCall(t, "c-1", "slow", map[string]any{"steps": 500, "delay_ms": 20}, map[string]any{"progressToken": "p"}), col.related)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("RoundTrip: %v, want context.Canceled", err)
	}
	u.rec.wait(t, "tool saw the cancellation", stderrLine("slow: cancelled at step"))
	if el := time.Since(start); el > 5*time.Second {
		t.Errorf("cancellation took %v", el)
	}
	// The session still works.
	resp, err := c.RoundTrip(timeout(t, 10*time.Second), toolCall(t, "c-2", "echo", map[string]any{"text": "after"}, nil), nil)
	if err != nil || toolText(t, resp) != "after" {
		t.Errorf("call after cancellation: %v", err)
	}
}

func TestStderrLogged(t *testing.T) {
	t.Parallel()
	u := newTestUpstream(t, Options{})
	c, _, info := u.open(t, core.EraLegacy)
	initialize(t, c)
	if _, err := c.RoundTrip(timeout(t, 10*time.Second), toolCall(t, 1, "stderr", map[string]any{"text": "hello on stderr"}, nil), nil); err != nil {
		t.Fatal(err)
	}
	r := u.rec.wait(t, "stderr line", stderrLine("hello on stderr"))
	want := map[string]string{"line": "hello on stderr", "session": info.LogID(), "principal": info.Principal, "route": "test-route", "pid": fmt.Sprint(c.pid)}
	if diff := cmp.Diff(want, r.Attrs); diff != "" {
		t.Errorf("stderr record (-want +got):\n%s", diff)
	}
}

func TestLongStderrLineTruncated(t *testing.T) {
	t.Parallel()
	u := newTestUpstream(t, script(`head -c 10000 /dev/zero | tr '\0' x >&2; printf '\nshort\n' >&2; cat >/dev/null`))
	u.open(t, core.EraLegacy)
	u.rec.wait(t, "line after the long one", stderrLine("short"))
	r := u.rec.wait(t, "truncated line", func(r record) bool { return r.Msg == "stdio_stderr" && r.Attrs["truncated"] == "true" })
	if len(r.Attrs["line"]) != maxStderrLine {
		t.Errorf("truncated line has %d bytes, want %d", len(r.Attrs["line"]), maxStderrLine)
	}
}

func TestCrashFailsPendingAndTellsSink(t *testing.T) {
	t.Parallel()
	u := newTestUpstream(t, Options{})
	c, s, _ := u.open(t, core.EraLegacy)
	initialize(t, c)

	// A call left pending by the crash.
	slowErr := make(chan error, 1)
	go func() {
		_, err := c.RoundTrip(context.Background(), toolCall(t, "slow", "slow", map[string]any{"steps": 1000, "delay_ms": 20}, nil), nil)
		slowErr <- err
	}()
	_, err := c.RoundTrip(timeout(t, 10*time.Second), toolCall(t, "crash", "crash", map[string]any{"code": 3}, nil), nil)
	if !errors.Is(err, upstream.ErrClosed) {
		t.Fatalf("crash call: %v, want ErrClosed", err)
	}
	var ee *ExitError
	if !errors.As(err, &ee) || ee.State == nil || ee.State.ExitCode() != 3 || !strings.Contains(ee.LastStderr, "crash: exiting with code 3") {
		t.Errorf("exit error = %#v", ee)
	}
	if !strings.Contains(err.Error(), "exit status 3") || !strings.Contains(err.Error(), "crash: exiting with code 3") {
		t.Errorf("error text %q lacks the exit status or the last stderr line", err)
	}
	if err := <-slowErr; !errors.Is(err, upstream.ErrClosed) {
		t.Errorf("pending call: %v, want ErrClosed", err)
	}
	select {
	case err := <-s.closedCh:
		if !errors.Is(err, upstream.ErrClosed) {
			t.Errorf("Sink.Closed(%v), want ErrClosed", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Sink.Closed not called")
	}
	if _, err := c.RoundTrip(timeout(t, time.Second), toolCall(t, "after", "echo", nil, nil), nil); !errors.Is(err, upstream.ErrClosed) {
		t.Errorf("call after the crash: %v, want ErrClosed", err)
	}
	if err := c.Send(timeout(t, time.Second), decode(t, `{"jsonrpc":"2.0","method":"notifications/x"}`)); !errors.Is(err, upstream.ErrClosed) {
		t.Errorf("Send after the crash: %v, want ErrClosed", err)
	}
	if err := c.Close(timeout(t, 5*time.Second)); err != nil {
		t.Errorf("Close: %v", err)
	}
	if _, closed := s.snapshot(); len(closed) != 1 {
		t.Errorf("Sink.Closed called %d times, want 1", len(closed))
	}
	u.rec.wait(t, "exit logged", func(r record) bool { return r.Msg == "stdio_exited" && r.Attrs["exit_status"] == "exit status 3" })
}

func TestOverlongLineBreaksProcess(t *testing.T) {
	t.Parallel()
	cfg := script(`read l; head -c 2000 /dev/zero | tr '\0' a; echo; sleep 60`)
	cfg.MaxMessageBytes = 1024
	u := newTestUpstream(t, cfg)
	c, s, _ := u.open(t, core.EraLegacy)
	_, err := c.RoundTrip(timeout(t, 10*time.Second), request(t, 1, "ping", nil), nil)
	if !errors.Is(err, upstream.ErrClosed) || !strings.Contains(err.Error(), "max_message_bytes (1024)") {
		t.Fatalf("RoundTrip: %v, want ErrClosed naming the limit", err)
	}
	select {
	case err := <-s.closedCh:
		if !errors.Is(err, upstream.ErrClosed) || !strings.Contains(err.Error(), "max_message_bytes") {
			t.Errorf("Sink.Closed(%v)", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Sink.Closed not called")
	}
}

func TestMessageSizeLimit(t *testing.T) {
	t.Parallel()
	const limit = 1024
	head, tail := `{"jsonrpc":"2.0","id":1,"result":{"p":"`, `"}}`
	for _, tc := range []struct {
		name, ending string
		extra        int
		wantErr      bool
	}{
		{"LF", `\n`, 0, false},
		{"CRLF", `\r\n`, 0, false},
		{"LF one byte over", `\n`, 1, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			l := head + strings.Repeat("x", limit-len(head)-len(tail)+tc.extra) + tail
			cfg := script(`read l; printf '%s` + tc.ending + `' '` + l + `'; cat >/dev/null`)
			cfg.MaxMessageBytes = limit
			u := newTestUpstream(t, cfg)
			c, _, _ := u.open(t, core.EraLegacy)
			resp, err := c.RoundTrip(timeout(t, 10*time.Second), request(t, 1, "ping", nil), nil)
			if tc.wantErr {
				if !errors.Is(err, upstream.ErrClosed) {
					t.Fatalf("RoundTrip: %v, want ErrClosed", err)
				}
				return
			}
			if err != nil || len(resp.Raw) != limit {
				t.Fatalf("RoundTrip: %v", err)
			}
		})
	}
}

func TestUndecodableLinesSkipped(t *testing.T) {
	t.Parallel()
	u := newTestUpstream(t, script(`read l; echo 'not json {'; echo '{"jsonrpc":"1.0","id":7}'; echo; echo '{"jsonrpc":"2.0","id":7,"result":{"ok":true}}'; cat >/dev/null`))
	c, s, _ := u.open(t, core.EraLegacy)
	resp, err := c.RoundTrip(timeout(t, 10*time.Second), request(t, 7, "ping", nil), nil)
	if err != nil {
		t.Fatal(err)
	}
	if string(resp.Result) != `{"ok":true}` {
		t.Errorf("result = %s", resp.Result)
	}
	if n := u.rec.count("stdio_bad_message"); n != 2 {
		t.Errorf("%d bad lines logged, want 2", n)
	}
	if d, closed := s.snapshot(); len(d)+len(closed) != 0 {
		t.Errorf("sink: %d delivered, %d closed", len(d), len(closed))
	}
}

func TestUnrelatedNotificationGoesToSink(t *testing.T) {
	t.Parallel()
	// Sends a notification with nothing in flight, then echoes a result for
	// the request it reads, preceded by an unmatched progress notification.
	u := newTestUpstream(t, script(`echo '{"jsonrpc":"2.0","method":"notifications/tools/list_changed"}'
read l
echo '{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":"other","progress":1}}'
echo '{"jsonrpc":"2.0","method":"notifications/message","params":{"level":"info","data":"x"}}'
echo '{"jsonrpc":"2.0","id":1,"result":{}}'
cat >/dev/null`))
	c, s, info := u.open(t, core.EraLegacy)
	eventually(t, "list_changed delivered", func() bool { d, _ := s.snapshot(); return len(d) == 1 })
	col := &collector{}
	if _, err := c.RoundTrip(timeout(t, 10*time.Second), request(t, 1, "tools/list", map[string]any{"_meta": map[string]any{"progressToken": "mine"}}), col.related); err != nil {
		t.Fatal(err)
	}
	d, _ := s.snapshot()
	var sinkMethods []string
	for _, m := range d {
		sinkMethods = append(sinkMethods, m.Method)
		if m.Session != info || m.Direction != core.ServerToClient || m.Era != core.EraLegacy || m.Received.IsZero() {
			t.Errorf("sink message %s lacks routing fields", m.Method)
		}
	}
	if diff := cmp.Diff([]string{"notifications/tools/list_changed", "notifications/progress"}, sinkMethods); diff != "" {
		t.Errorf("sink methods (-want +got):\n%s", diff)
	}
	if got := col.got(); len(got) != 1 || got[0].Method != "notifications/message" {
		t.Errorf("related got %v, want the log message", got)
	}
}

func TestCloseGraceful(t *testing.T) {
	t.Parallel()
	u := newTestUpstream(t, Options{ShutdownGrace: 5 * time.Second})
	c, s, _ := u.open(t, core.EraLegacy)
	initialize(t, c)
	start := time.Now()
	if err := c.Close(timeout(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	if el := time.Since(start); el > 3*time.Second {
		t.Errorf("Close took %v; the server exits when stdin closes", el)
	}
	if n := u.rec.count("stdio_sigterm"); n != 0 {
		t.Errorf("SIGTERM sent to a server that exits on stdin close")
	}
	if err := c.Close(timeout(t, time.Second)); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if _, err := c.RoundTrip(timeout(t, time.Second), request(t, 1, "ping", nil), nil); !errors.Is(err, upstream.ErrClosed) {
		t.Errorf("RoundTrip after Close: %v", err)
	}
	if _, closed := s.snapshot(); len(closed) != 0 {
		t.Errorf("Sink.Closed called after Close")
	}
}

func TestCloseEscalation(t *testing.T) {
	t.Parallel()
	const grace = 200 * time.Millisecond
	for _, tc := range []struct {
		name     string
		script   string
		wantTerm bool
		wantKill bool
	}{
		// Each says "ready" on stderr once its signal disposition is set.
		{"ignores stdin close", `echo ready >&2; sleep 60`, true, false},
		{"ignores SIGTERM too", `trap "" TERM; echo ready >&2; sleep 60`, true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cfg := script(tc.script)
			cfg.ShutdownGrace = grace
			u := newTestUpstream(t, cfg)
			c, s, _ := u.open(t, core.EraLegacy)
			u.rec.wait(t, "sh to set its trap", stderrLine("ready"))

			pending := make(chan error, 1)
			go func() {
				_, err := c.RoundTrip(context.Background(), request(t, 1, "ping", nil), nil)
				pending <- err
			}()
			eventually(t, "ping pending", func() bool { return c.clientCalls() == 1 })
			start := time.Now()
			if err := c.Close(timeout(t, 10*time.Second)); err != nil {
				t.Fatal(err)
			}
			el := time.Since(start)
			if err := <-pending; !errors.Is(err, upstream.ErrClosed) {
				t.Errorf("pending RoundTrip: %v, want ErrClosed", err)
			}
			wantMin := grace
			if tc.wantKill {
				wantMin = 2 * grace
			}
			if el < wantMin || el > wantMin+3*time.Second {
				t.Errorf("Close took %v, want about %v", el, wantMin)
			}
			if got := u.rec.count("stdio_sigterm") == 1; got != tc.wantTerm {
				t.Errorf("SIGTERM sent: %v, want %v", got, tc.wantTerm)
			}
			if got := u.rec.count("stdio_sigkill") == 1; got != tc.wantKill {
				t.Errorf("SIGKILL sent: %v, want %v", got, tc.wantKill)
			}
			// Reaped, and nothing of its group is left.
			if err := syscall.Kill(c.pid, 0); !errors.Is(err, syscall.ESRCH) {
				t.Errorf("kill(pid, 0) = %v, want ESRCH", err)
			}
			// The group's other members were SIGKILLed too; being orphans,
			// they are reaped by init a moment later.
			eventually(t, "process group gone", func() bool { return errors.Is(syscall.Kill(-c.pid, 0), syscall.ESRCH) })
			if _, closed := s.snapshot(); len(closed) != 0 {
				t.Errorf("Sink.Closed called after Close")
			}
		})
	}
}

// Close gives up waiting at ctx's end, but the shutdown goes on.
func TestCloseHonoursContext(t *testing.T) {
	t.Parallel()
	cfg := script(`trap "" TERM; echo ready >&2; sleep 60`)
	cfg.ShutdownGrace = 300 * time.Millisecond
	u := newTestUpstream(t, cfg)
	c, _, _ := u.open(t, core.EraLegacy)
	u.rec.wait(t, "sh to set its trap", stderrLine("ready"))
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := c.Close(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Close = %v, want DeadlineExceeded", err)
	}
	select {
	case <-c.finished:
	case <-time.After(10 * time.Second):
		t.Fatal("the process was not killed after Close returned")
	}
}

func TestEnvironment(t *testing.T) {
	// t.Setenv: not parallel.
	t.Setenv("MCPGATE_STDIO_TEST_LEAK", "leaked")
	t.Setenv("LANG", "C.UTF-8")
	for _, tc := range []struct {
		name    string
		inherit bool
		want    map[string]string
	}{
		{"filtered", false, map[string]string{"MCPGATE_STDIO_TEST_LEAK": "<unset>", "LANG": "C.UTF-8", "GIVEN_SECRET": "s3cret", "PATH": os.Getenv("PATH")}},
		{"inherited", true, map[string]string{"MCPGATE_STDIO_TEST_LEAK": "leaked", "LANG": "C.UTF-8", "GIVEN_SECRET": "s3cret", "PATH": os.Getenv("PATH")}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			u := newTestUpstream(t, Options{
				Command: serverBin, InheritEnv: tc.inherit,
				Env: map[string]string{"GIVEN_SECRET": "s3cret"},
			})
			c, _, _ := u.open(t, core.EraLegacy)
			initialize(t, c)
			got := map[string]string{}
			for i, name := range []string{"MCPGATE_STDIO_TEST_LEAK", "LANG", "GIVEN_SECRET", "PATH"} {
				resp, err := c.RoundTrip(timeout(t, 10*time.Second), toolCall(t, i+1, "env", map[string]any{"name": name}, nil), nil)
				if err != nil {
					t.Fatal(err)
				}
				got[name] = toolText(t, resp)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("child environment (-want +got):\n%s", diff)
			}
			for _, r := range u.rec.all() {
				for k, v := range r.Attrs {
					if strings.Contains(v, "s3cret") {
						t.Errorf("log %s attr %s shows the secret", r.Msg, k)
					}
				}
			}
		})
	}
}

func TestBuildEnv(t *testing.T) {
	t.Setenv("MCPGATE_STDIO_TEST_LEAK", "leaked")
	t.Setenv("HOME", "/home/test")
	env := buildEnv(Options{Env: map[string]string{"B": "2", "A": "1", "HOME": "/override"}})
	var keys []string
	for _, kv := range env {
		k, _, _ := strings.Cut(kv, "=")
		if k == "MCPGATE_STDIO_TEST_LEAK" {
			t.Errorf("filtered environment has %s", kv)
		}
		keys = append(keys, k)
	}
	// Allowed variables first, then the configured ones sorted; a
	// configured HOME comes last, so it wins.
	if got := strings.Join(keys[len(keys)-3:], ","); got != "A,B,HOME" {
		t.Errorf("configured keys = %s", got)
	}
	if env[len(env)-1] != "HOME=/override" {
		t.Errorf("last = %s", env[len(env)-1])
	}
}

func TestOpenFailures(t *testing.T) {
	t.Parallel()
	u := newTestUpstream(t, Options{Command: filepath.Join(t.TempDir(), "missing")})
	if _, err := u.Open(context.Background(), upstream.OpenParams{Era: core.EraLegacy}, newSink()); err == nil {
		t.Error("Open of a missing command succeeded")
	}
	ok := newTestUpstream(t, Options{})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := ok.Open(ctx, upstream.OpenParams{}, newSink()); !errors.Is(err, context.Canceled) {
		t.Errorf("Open with a done ctx: %v", err)
	}
	_ = ok.Close()
	if _, err := ok.Open(context.Background(), upstream.OpenParams{}, newSink()); !errors.Is(err, upstream.ErrClosed) {
		t.Errorf("Open after Close: %v", err)
	}
}

func TestPing(t *testing.T) {
	t.Parallel()
	u := newTestUpstream(t, Options{})
	c, _, _ := u.open(t, core.EraLegacy)
	initialize(t, c)
	// A client request whose id looks like a gateway id does not collide.
	if _, err := c.RoundTrip(timeout(t, 10*time.Second), toolCall(t, "mcpgate-1", "echo", map[string]any{"text": "x"}, nil), nil); err != nil {
		t.Fatal(err)
	}
	if err := c.Ping(timeout(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
}

// Modern era on stdio: a subscriptions/listen request stays in flight; its
// notifications carry its id in _meta and do not make other requests'
// messages ambiguous.
func TestSubscriptionNotificationsRouted(t *testing.T) {
	t.Parallel()
	u := newTestUpstream(t, script(`read a; read b
echo '{"jsonrpc":"2.0","method":"notifications/subscriptions/acknowledged","params":{"_meta":{"io.modelcontextprotocol/subscriptionId":"sub-1"},"notifications":{"toolsListChanged":true}}}'
echo '{"jsonrpc":"2.0","method":"notifications/message","params":{"level":"info","data":"for the call"}}'
echo '{"jsonrpc":"2.0","method":"notifications/tools/list_changed","params":{"_meta":{"io.modelcontextprotocol/subscriptionId":"sub-1"}}}'
echo '{"jsonrpc":"2.0","method":"notifications/tools/list_changed","params":{"_meta":{"io.modelcontextprotocol/subscriptionId":"gone"}}}'
echo '{"jsonrpc":"2.0","id":2,"result":{"resultType":"complete","tools":[]}}'
echo '{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":"sub-1","reason":"shutting down"}}'
cat >/dev/null`))
	c, s, _ := u.open(t, core.EraModern)

	listenCtx, stopListen := context.WithCancel(context.Background())
	defer stopListen()
	listen := &collector{}
	listenDone := make(chan error, 1)
	go func() {
		_, err := c.RoundTrip(listenCtx, request(t, "sub-1", "subscriptions/listen", map[string]any{
			"_meta": modernMeta(), "notifications": map[string]any{"toolsListChanged": true},
		}), listen.related)
		listenDone <- err
	}()
	eventually(t, "listen registered", func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		return c.Pending["\"sub-1\""] != nil
	})
	call := &collector{}
	if _, err := c.RoundTrip(timeout(t, 10*time.Second), request(t, 2, "tools/list", map[string]any{"_meta": modernMeta()}), call.related); err != nil {
		t.Fatal(err)
	}
	methods := func(ms []*core.Message) (out []string) {
		for _, m := range ms {
			out = append(out, m.Method)
		}
		return out
	}
	eventually(t, "server's cancellation", func() bool { return len(listen.got()) == 3 })
	if diff := cmp.Diff([]string{"notifications/subscriptions/acknowledged", "notifications/tools/list_changed", "notifications/cancelled"}, methods(listen.got())); diff != "" {
		t.Errorf("listen related (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"notifications/message"}, methods(call.got())); diff != "" {
		t.Errorf("call related (-want +got):\n%s", diff)
	}
	d, _ := s.snapshot()
	if diff := cmp.Diff([]string{"notifications/tools/list_changed"}, methods(d)); diff != "" {
		t.Errorf("sink (-want +got):\n%s", diff)
	}
	stopListen()
	if err := <-listenDone; !errors.Is(err, context.Canceled) {
		t.Errorf("listen: %v", err)
	}
}

// A Conn's Tap sees what the Conn sends of its own — a ping and its
// answer, the notifications/cancelled of an abandoned call — and nothing
// of the client's requests.
func TestTap(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var seen []string
	var sessions []*core.SessionInfo
	cancelled := make(chan struct{})
	tap := func(_ context.Context, s *core.SessionInfo, m *core.Message) {
		mu.Lock()
		defer mu.Unlock()
		seen = append(seen, m.Direction.String()+" "+m.Kind.String()+" "+m.Method)
		sessions = append(sessions, s)
		if m.Method == "notifications/cancelled" {
			close(cancelled)
		}
	}
	u := newTestUpstream(t, Options{Tap: tap})
	c, _, sess := u.open(t, core.EraLegacy)
	initialize(t, c)
	if _, err := c.RoundTrip(timeout(t, 10*time.Second), toolCall(t, 1, "echo", map[string]any{"text": "x"}, nil), nil); err != nil {
		t.Fatal(err)
	}
	if err := c.Ping(timeout(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	col := &collector{on: func(*core.Message) { cancel() }} // cancel on the first progress
	if _, err := c.RoundTrip(ctx, toolCall(t, 2, "slow", map[string]any{"steps": 500, "delay_ms": 20}, map[string]any{"progressToken": "p"}), col.related); !errors.Is(err, context.Canceled) {
		t.Fatalf("RoundTrip: %v, want context.Canceled", err)
	}
	select {
	case <-cancelled:
	case <-time.After(10 * time.Second):
		t.Fatal("no notifications/cancelled tapped")
	}
	mu.Lock()
	defer mu.Unlock()
	want := []string{"client_to_server request ping", "server_to_client response ", "client_to_server notification notifications/cancelled"}
	if diff := cmp.Diff(want, seen); diff != "" {
		t.Fatalf("tapped (-want +got):\n%s", diff)
	}
	for _, s := range sessions {
		if s != sess {
			t.Fatalf("tapped for session %p, want %p", s, sess)
		}
	}
}
