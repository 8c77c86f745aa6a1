package stdio

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/internal/core"
)

// TestStderrFlood: a process that floods stderr keeps being served: its
// stderr is drained as fast as it writes, a bounded number of lines is
// logged and the rest is counted, not kept.
func TestStderrFlood(t *testing.T) {
	t.Parallel()
	u := newTestUpstream(t, Options{}, "-legacy")
	c, s, _ := u.open(t, core.EraLegacy)
	initialize(t, c)
	const n = 20000 // about 3 MiB: far past a pipe's 64 KiB
	resp, err := callTool(t, c, 10, "flood", map[string]any{"n": n})
	if err != nil || toolText(t, resp) != "flooded "+strconv.Itoa(n) {
		t.Fatalf("flood: %v", err)
	}
	resp, err = callTool(t, c, 11, "echo", map[string]any{"text": "still served"})
	if err != nil || toolText(t, resp) != "still served" {
		t.Fatalf("after the flood: %v", err)
	}
	// The drop is reported once the limiter lets a line through again, or
	// when the process ends.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.Close(ctx); err != nil {
		t.Fatal(err)
	}
	logged := u.rec.count("stdio_stderr")
	if logged > stderrBurst+stderrRate*10 {
		t.Errorf("%d stderr lines logged, want the burst of %d and a few more", logged, stderrBurst)
	}
	var dropped int64
	for _, r := range u.rec.all() {
		if r.Msg == "stdio_stderr_dropped" {
			v, _ := strconv.ParseInt(r.Attrs["lines"], 10, 64)
			dropped += v
		}
	}
	if dropped+int64(logged) < n {
		t.Errorf("%d logged and %d counted as dropped, want %d in all", logged, dropped, n)
	}
	if _, closed := s.snapshot(); len(closed) != 0 {
		t.Errorf("the Sink was told %v", closed)
	}
}

// TestGarbageOnStdout: lines that are not JSON, or not JSON-RPC, are
// logged and skipped; an answer with an id nothing waits for is dropped;
// the request in flight still gets its own answer.
func TestGarbageOnStdout(t *testing.T) {
	t.Parallel()
	u := newTestUpstream(t, Options{}, "-legacy")
	c, s, _ := u.open(t, core.EraLegacy)
	initialize(t, c)
	resp, err := callTool(t, c, 10, "garbage", nil)
	if err != nil || toolText(t, resp) != "after garbage" {
		t.Fatalf("garbage: %v", err)
	}
	if n := u.rec.count("stdio_bad_message"); n < 5 {
		t.Errorf("%d stdio_bad_message records, want one per undecodable line", n)
	}
	resp, err = callTool(t, c, 11, "echo", map[string]any{"text": "fine"})
	if err != nil || toolText(t, resp) != "fine" {
		t.Fatalf("after the garbage: %v", err)
	}
	if _, closed := s.snapshot(); len(closed) != 0 {
		t.Errorf("the Sink was told %v", closed)
	}
}

// TestHang: a request the process never answers ends with the caller's
// deadline, the process is told to cancel it, and the process serves the
// next request.
func TestHang(t *testing.T) {
	t.Parallel()
	u := newTestUpstream(t, Options{}, "-legacy")
	c, _, _ := u.open(t, core.EraLegacy)
	initialize(t, c)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_, err := c.RoundTrip(ctx, toolCall(t, 10, "hang", nil, nil), nil)
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "tools/call") {
		t.Fatalf("hang: %v, want the deadline naming the request", err)
	}
	if n := c.clientCalls(); n != 0 {
		t.Errorf("%d calls still pending", n)
	}
	resp, err := callTool(t, c, 11, "echo", map[string]any{"text": "next"})
	if err != nil || toolText(t, resp) != "next" {
		t.Fatalf("after the hang: %v", err)
	}
}
