package gateway

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/mcpgate/mcpgate/internal/config"
	"github.com/mcpgate/mcpgate/internal/metrics/metricstest"
)

// TestConnectionLimit opens more slow-header connections than
// server.max_connections against a running gateway, from outside: the
// connections over the limit are refused at once with a JSON-RPC 503,
// the admin listener keeps answering, the gauge shows the open ones, and
// once they go a real MCP client connects and calls a tool.
func TestConnectionLimit(t *testing.T) {
	noLeaks(t)
	const maxConns = 8
	srv := mcp.NewServer(&mcp.Implementation{Name: "up", Version: "1"}, nil)
	mcp.AddTool(srv, &mcp.Tool{Name: "ping"}, func(context.Context, *mcp.CallToolRequest, struct{}) (*mcp.CallToolResult, any, error) {
		return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: "pong"}}}, nil, nil
	})
	up := httptest.NewServer(mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return srv }, nil))
	t.Cleanup(up.Close)
	cfg := testConfig(t, func(c *config.Config) {
		c.Routes[0].Upstream.HTTP.URL = up.URL
		c.Routes[0].Upstream.Era = config.EraLegacy
		c.Server.MaxConnections = maxConns
		c.Server.ReadHeaderTimeout = time.Minute // the slow clients hold their slots
	})
	g, err := New(cfg, Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- g.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run = %v", err)
		}
	})
	addr := g.Addrs()[0].String()
	admin := "http://" + g.AdminAddr().String()

	// Slow clients: each sends half a header and stops. The gateway
	// holds a slot per connection; so as not to race the accept loop, the
	// test waits until each one is counted.
	var slow []net.Conn
	for i := range maxConns {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		slow = append(slow, c)
		if _, err := io.WriteString(c, "POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\n"); err != nil {
			t.Fatal(err)
		}
		waitConns(t, g.health.clientConns, i+1)
	}

	// One more: refused at once with a JSON-RPC error, not left waiting.
	start := time.Now()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	_, _ = io.WriteString(c, "POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nAccept: application/json, text/event-stream\r\nContent-Length: 2\r\n\r\n{}")
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("connection over the limit: %v (want a 503 answer)", err)
	}
	body, _ := io.ReadAll(resp.Body)
	_ = c.Close()
	want := `{"jsonrpc":"2.0","id":null,"error":{"code":-32013,"message":"too many connections: the client listener's limit of 8 is reached; retry later"}}`
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" || string(body) != want {
		t.Errorf("over the limit: %d Retry-After=%q %s\nwant 503 with Retry-After and %s", resp.StatusCode, resp.Header.Get("Retry-After"), body, want)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("refusal took %v", d)
	}

	// The admin listener has its own budget.
	hc := &http.Client{Timeout: 5 * time.Second}
	hr, err := hc.Get(admin + "/healthz")
	if err != nil {
		t.Fatalf("/healthz while the client listener is full: %v", err)
	}
	_ = hr.Body.Close()
	if hr.StatusCode != http.StatusOK {
		t.Errorf("/healthz = %d", hr.StatusCode)
	}
	fams, err := metricstest.Scrape(t.Context(), admin+"/metrics")
	if err != nil {
		t.Fatal(err)
	}
	if v, ok := fams.Value("mcpgate_connections", "listener", "client"); !ok || v != maxConns {
		t.Errorf(`mcpgate_connections{listener="client"} = %v, %v; want %d`, v, ok, maxConns)
	}
	if v, ok := fams.Value("mcpgate_connections_refused_total", "listener", "client"); !ok || v != 1 {
		t.Errorf(`mcpgate_connections_refused_total{listener="client"} = %v, %v; want 1`, v, ok)
	}
	if v, ok := fams.Value("mcpgate_connections", "listener", "admin"); !ok || v < 1 {
		t.Errorf(`mcpgate_connections{listener="admin"} = %v, %v; want the scrape's own`, v, ok)
	}

	// The slow clients leave; their slots come back and a real client
	// gets in.
	for _, c := range slow {
		_ = c.Close()
	}
	waitConns(t, g.health.clientConns, 0)
	client := mcp.NewClient(&mcp.Implementation{Name: "c", Version: "1"}, nil)
	cs, err := client.Connect(t.Context(), &mcp.StreamableClientTransport{Endpoint: "http://" + addr + "/mcp", DisableStandaloneSSE: true}, nil)
	if err != nil {
		t.Fatalf("connect once slots are free: %v", err)
	}
	defer cs.Close()
	res, err := cs.CallTool(t.Context(), &mcp.CallToolParams{Name: "ping"})
	if err != nil {
		t.Fatal(err)
	}
	if got := res.Content[0].(*mcp.TextContent).Text; got != "pong" {
		t.Errorf("ping = %q", got)
	}
}

// TestMaxConnectionsDefault: the default leaves room for the admin
// listener and for what sessions open themselves.
func TestMaxConnectionsDefault(t *testing.T) {
	cfg := testConfig(t, nil)
	limit, ok := config.FDLimit()
	if !ok {
		t.Fatal("no file descriptor limit on this platform")
	}
	if got := cfg.Server.MaxConnections; got != config.DefaultMaxConnections() || got+config.AdminMaxConnections >= limit || got < 64 {
		t.Errorf("server.max_connections = %d with an fd limit of %d", got, limit)
	}
}

// waitConns waits until l holds n connections.
func waitConns(t *testing.T, l *connLimit, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for len(l.slots) != n {
		if time.Now().After(deadline) {
			t.Fatalf("%s connections: %d, want %d", l.name, len(l.slots), n)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestConnectionLimitLogsOncePerInterval: a flood of refusals makes one
// connection_limit_reached line per interval, carrying the count.
func TestConnectionLimitLogsOncePerInterval(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var buf bytes.Buffer
		m, err := newConnMetrics(prometheus.NewRegistry())
		if err != nil {
			t.Fatal(err)
		}
		l := newConnLimit("client", 1, m, slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{ReplaceAttr: dropTime})))
		refuse := func(n int) {
			for range n {
				a, b := net.Pipe()
				l.refuse(a, false)
				_ = b.Close()
			}
		}
		refuse(1)
		refuse(99)
		time.Sleep(connLogInterval)
		refuse(1)
		want := "level=WARN msg=connection_limit_reached listener=client max_connections=1 refused=1\n" +
			"level=WARN msg=connection_limit_reached listener=client max_connections=1 refused=100\n"
		if diff := cmp.Diff(want, buf.String()); diff != "" {
			t.Errorf("log (-want +got):\n%s", diff)
		}
	})
}

func dropTime(_ []string, a slog.Attr) slog.Attr {
	if a.Key == slog.TimeKey {
		return slog.Attr{}
	}
	return a
}

// TestConnectionLimitWithoutAnswer: where a refusal cannot be answered in
// HTTP (a TLS listener, before its handshake) the connection is closed at
// once; a slot is given back once however often its connection closes.
func TestConnectionLimitWithoutAnswer(t *testing.T) {
	m, err := newConnMetrics(prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	l := newConnLimit("client", 1, m, slog.New(slog.DiscardHandler))
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln := l.wrap(inner, false)
	defer ln.Close()
	accepted := make(chan net.Conn)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				close(accepted)
				return
			}
			accepted <- c
		}
	}()
	first, err := net.Dial("tcp", inner.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	held := <-accepted
	second, err := net.Dial("tcp", inner.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer second.Close()
	_ = second.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := second.Read(make([]byte, 1)); err != io.EOF {
		t.Errorf("over the limit: read %d bytes, %v; want EOF at once", n, err)
	}
	_ = held.Close()
	_ = held.Close()
	if len(l.slots) != 0 {
		t.Fatalf("slots held after close: %d", len(l.slots))
	}
	third, err := net.Dial("tcp", inner.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer third.Close()
	c := <-accepted
	defer c.Close()
	if len(l.slots) != 1 {
		t.Errorf("slots = %d after a new connection, want 1", len(l.slots))
	}
}
