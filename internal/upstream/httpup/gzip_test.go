package httpup_test

import (
	"compress/gzip"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpgate/mcpgate/internal/core"
)

// gzipWriter compresses a response and flushes the compressor with the
// response, so SSE events arrive as they are written.
type gzipWriter struct {
	http.ResponseWriter
	zw    *gzip.Writer
	wrote bool
}

func (g *gzipWriter) Write(p []byte) (int, error) {
	if !g.wrote {
		g.WriteHeader(http.StatusOK)
	}
	return g.zw.Write(p)
}
func (g *gzipWriter) WriteHeader(code int) {
	g.wrote = true
	g.Header().Del("Content-Length")
	g.Header().Set("Content-Encoding", "gzip")
	g.ResponseWriter.WriteHeader(code)
}
func (g *gzipWriter) Flush() {
	_ = g.zw.Flush()
	if f, ok := g.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// gzipHandler gzips every answer to a client that accepts it, counting
// them.
func gzipHandler(next http.Handler, n *atomic.Int32) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.Contains(r.Header.Get("Accept-Encoding"), "gzip") {
			next.ServeHTTP(w, r)
			return
		}
		n.Add(1)
		zw := gzip.NewWriter(w)
		defer zw.Close()
		next.ServeHTTP(&gzipWriter{ResponseWriter: w, zw: zw}, r)
	})
}

// TestGzipAnswers: mcpgate asks for gzip itself (so net/http adds no
// header map and no decoding wrapper per request) and decodes gzip
// answers, JSON bodies and SSE streams alike, from a go-sdk server behind
// a compressing proxy.
func TestGzipAnswers(t *testing.T) {
	for _, jsonResponse := range []bool{true, false} {
		t.Run(fmt.Sprintf("json=%v", jsonResponse), func(t *testing.T) {
			t.Parallel()
			e := newEverything(t)
			var gzipped atomic.Int32
			h := mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return e.Server }, &mcp.StreamableHTTPOptions{JSONResponse: jsonResponse})
			ts, rec := serve(t, gzipHandler(h, &gzipped))
			u := newUpstream(t, ts.URL, nil)
			c := open(t, u, core.EraLegacy, newSink())
			initialize(t, c, core.Version20251125)
			for i := range 3 {
				resp, err := c.RoundTrip(ctxT(t), msg(t, fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":"tools/call","params":{"name":"echo","arguments":{"text":"zipped %d"}}}`, i+1, i)), nil)
				if err != nil {
					t.Fatal(err)
				}
				if got := toolText(t, resp); got != fmt.Sprintf("zipped %d", i) {
					t.Fatalf("tools/call %d: %q", i, got)
				}
			}
			if gzipped.Load() < 4 {
				t.Fatalf("%d answers gzipped, want every one", gzipped.Load())
			}
			for i, s := range rec.find(all) {
				if got := s.Header.Values("Accept-Encoding"); len(got) != 1 || got[0] != "gzip" {
					t.Errorf("request %d: Accept-Encoding %q", i, got)
				}
			}
		})
	}
}

// TestGzipBroken: an answer that says gzip and is not is a clear upstream
// error, not a panic or a hang.
func TestGzipBroken(t *testing.T) {
	t.Parallel()
	ts, _ := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Encoding", "gzip")
		w.Header().Set("Mcp-Session-Id", "s-1")
		_, _ = w.Write([]byte(`{"jsonrpc":"2.0","id":1,"result":{}}`))
	}))
	u := newUpstream(t, ts.URL, nil)
	c := open(t, u, core.EraLegacy, newSink())
	_, err := c.RoundTrip(ctxT(t), msg(t, `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}`), nil)
	var ce *core.Error
	if !errors.As(err, &ce) || ce.Code != core.CodeUpstreamError {
		t.Fatalf("RoundTrip: %v, want an upstream error", err)
	}
}
