package resilient

import (
	"context"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/internal/catalog"
	"github.com/mcpgate/mcpgate/internal/core"
	"github.com/mcpgate/mcpgate/internal/upstream"
)

// answering is an in-process upstream whose Conn answers every request
// at once, so that a benchmark measures the wrapper and nothing else.
type answering struct{ resp *core.Message }

func (a *answering) Probe(context.Context) (upstream.Info, error) {
	return upstream.Info{Era: core.EraLegacy}, nil
}
func (a *answering) Open(context.Context, upstream.OpenParams, upstream.Sink) (upstream.Conn, error) {
	return answeringConn{a}, nil
}
func (a *answering) Close() error { return nil }

type answeringConn struct{ a *answering }

func (c answeringConn) RoundTrip(context.Context, *core.Message, upstream.Related) (*core.Message, error) {
	return c.a.resp, nil
}
func (answeringConn) Send(context.Context, *core.Message) error { return nil }
func (answeringConn) Listen(context.Context) error              { return nil }
func (answeringConn) UpstreamSession() string                   { return "" }
func (answeringConn) Close(context.Context) error               { return nil }

// BenchmarkRoundTrip is the wrapper's cost per request: "none" is a
// route without retry or breaker (the gateway builds no wrapper: the
// inner Conn is called directly), the others the wrapper with each
// block, for a request safe to repeat (tools/list: under the retry
// budget's deadline) and one that is not (tools/call of a tool nothing
// marks idempotent: one attempt, no deadline).
//
//	go test ./internal/upstream/resilient -run '^$' -bench RoundTrip -benchmem
func BenchmarkRoundTrip(b *testing.B) {
	resp := core.ResultResponse(core.ID("1"), []byte(`{"tools":[]}`))
	list := benchMsg(b, `{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{}}`)
	write := benchMsg(b, `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"write","arguments":{}}}`)
	breaker := &Breaker{FailureRatio: 0.5, MinRequests: 20, Window: 30 * time.Second, OpenFor: 15 * time.Second, HalfOpenRequests: 3}
	m, _ := newMetrics(b)
	for _, bc := range []struct {
		name string
		o    *Options
		req  *core.Message
	}{
		{"none", nil, list},
		{"retry/safe", &Options{Retry: testRetry()}, list},
		{"retry/unsafe", &Options{Retry: testRetry()}, write},
		{"breaker", &Options{Breaker: breaker}, list},
		{"retry+breaker/safe", &Options{Retry: testRetry(), Breaker: breaker}, list},
		{"retry+breaker/unsafe", &Options{Retry: testRetry(), Breaker: breaker}, write},
	} {
		b.Run(bc.name, func(b *testing.B) {
			var up upstream.Upstream = &answering{resp: resp}
			if bc.o != nil {
				o := *bc.o
				o.Route, o.Metrics, o.Repeat = "bench", m, catalog.Repeat{TrustAnnotations: true}
				up = New(up, o)
			}
			ctx := context.Background()
			c, err := up.Open(ctx, upstream.OpenParams{Session: &core.SessionInfo{ID: "b"}, Era: core.EraLegacy, Catalog: catalog.New()}, nil)
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := c.RoundTrip(ctx, bc.req, nil); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func benchMsg(b *testing.B, raw string) *core.Message {
	m, err := core.Decode([]byte(raw))
	if err != nil {
		b.Fatal(err)
	}
	return m
}
