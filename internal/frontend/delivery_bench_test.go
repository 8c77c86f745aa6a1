package frontend

import (
	"context"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/internal/core"
	"github.com/mcpgate/mcpgate/internal/session"
)

// countingWriter is an http.ResponseWriter that discards what it is given
// and lets a caller wait until n writes have reached it (the delivery path
// may write on another goroutine).
type countingWriter struct {
	h      http.Header
	mu     sync.Mutex
	cond   *sync.Cond
	writes int
}

func newCountingWriter() *countingWriter {
	w := &countingWriter{h: http.Header{}}
	w.cond = sync.NewCond(&w.mu)
	return w
}

func (w *countingWriter) Header() http.Header { return w.h }
func (w *countingWriter) WriteHeader(int)     {}
func (w *countingWriter) Flush()              {}
func (w *countingWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	w.writes++
	w.cond.Broadcast()
	w.mu.Unlock()
	return len(p), nil
}

// SetWriteDeadline lets http.ResponseController set deadlines, as on a
// real connection.
func (w *countingWriter) SetWriteDeadline(time.Time) error { return nil }

// waitWrites blocks until at least n writes happened.
func (w *countingWriter) waitWrites(n int) {
	w.mu.Lock()
	for w.writes < n {
		w.cond.Wait()
	}
	w.mu.Unlock()
}

func benchSession(b *testing.B) (*Frontend, *gwSession) {
	mgr := session.NewManager(session.Options{})
	b.Cleanup(func() { mgr.Close(context.Background()) })
	f, err := New(Options{Sessions: mgr}, []*Route{{Name: "r", Path: "/mcp"}})
	if err != nil {
		b.Fatal(err)
	}
	g := newGWSession(f, f.routes().byPath["/mcp"], &core.SessionInfo{ID: session.NewID(), Route: "r", Era: core.EraLegacy, ProtocolVersion: "2025-11-25"})
	b.Cleanup(func() { g.teardown(context.Background(), session.ReasonDeleted) })
	return f, g
}

// BenchmarkServerMessage measures the server→client delivery path: a
// related notification from the upstream, through the (empty) chain, onto
// a request's resumable SSE stream and out to the client; and a request's
// final response written as plain JSON.
func BenchmarkServerMessage(b *testing.B) {
	b.Run("progress to request stream", func(b *testing.B) {
		f, g := benchSession(b)
		w := newCountingWriter()
		st := newStream(w, &f.opts, g.nextStreamID(), true)
		g.addStream(st)
		st.mu.Lock()
		st.startLocked()
		st.mu.Unlock()
		m := mustDecodeB(b, `{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":"t","progress":1,"message":"working on it"}}`)
		w.waitWrites(1)
		b.ReportAllocs()
		b.ResetTimer()
		for i := range b.N {
			g.fromUpstream(g.ctx, m, st)
			if i%32 == 31 {
				w.waitWrites(i + 2) // priming + i+1 events
			}
		}
		w.waitWrites(b.N + 1)
		b.StopTimer()
		st.finish(nil, 0)
	})
	b.Run("log to plain stream", func(b *testing.B) {
		f, g := benchSession(b)
		w := newCountingWriter()
		st := newStream(w, &f.opts, "", false)
		st.mu.Lock()
		st.startLocked()
		st.mu.Unlock()
		m := mustDecodeB(b, `{"jsonrpc":"2.0","method":"notifications/message","params":{"level":"info","data":"working on it"}}`)
		w.waitWrites(0)
		b.ReportAllocs()
		b.ResetTimer()
		for i := range b.N {
			g.fromUpstream(g.ctx, m, st)
			if i%32 == 31 {
				w.waitWrites(i + 1)
			}
		}
		w.waitWrites(b.N)
		b.StopTimer()
		st.finish(nil, 0)
	})
	b.Run("JSON response", func(b *testing.B) {
		f, _ := benchSession(b)
		w := newCountingWriter()
		resp := mustDecodeB(b, `{"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"text","text":"hello"}]}}`)
		b.ReportAllocs()
		b.ResetTimer()
		for range b.N {
			st := newStream(w, &f.opts, "", false)
			st.armKeepAlive(f.opts.StreamAfter)
			st.finish(resp, http.StatusOK)
		}
	})
}

func mustDecodeB(b *testing.B, s string) *core.Message {
	m, err := core.Decode([]byte(s))
	if err != nil {
		b.Fatal(err)
	}
	return m
}
