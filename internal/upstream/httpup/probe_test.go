package httpup_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpgate/mcpgate/internal/core"
	"github.com/mcpgate/mcpgate/internal/upstream"
	"github.com/mcpgate/mcpgate/internal/upstream/httpup"
)

// legacyOnly answers server/discover the way session-only servers do (the
// TypeScript SDK's "No valid session ID provided"), and passes everything
// else to next.
func legacyOnly(next http.Handler, status int, contentType, body string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost && r.Header.Get("Mcp-Session-Id") == "" && r.Header.Get("Mcp-Method") == "server/discover" {
			w.Header().Set("Content-Type", contentType)
			w.WriteHeader(status)
			_, _ = w.Write([]byte(body))
			return
		}
		next.ServeHTTP(w, r)
	})
}

func fixed(status int, contentType, body string) http.Handler {
	return legacyOnly(http.NotFoundHandler(), status, contentType, body)
}

func TestProbe(t *testing.T) {
	sdk := func(stateless, jsonResponse bool) http.Handler {
		s := mcp.NewServer(&mcp.Implementation{Name: "s", Version: "1"}, nil)
		return mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return s },
			&mcp.StreamableHTTPOptions{Stateless: stateless, JSONResponse: jsonResponse})
	}
	modernOnlySDK := func() http.Handler {
		s := mcp.NewServer(&mcp.Implementation{Name: "s", Version: "1"}, &mcp.ServerOptions{SupportedProtocolVersions: []string{core.Version20260728}})
		return mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return s }, &mcp.StreamableHTTPOptions{Stateless: true})
	}
	legacy := upstream.Info{Era: core.EraLegacy}
	modern := upstream.Info{Era: core.EraModern, ModernVersions: []string{core.Version20260728}}
	modernOnly := upstream.Info{Era: core.EraModern, ModernVersions: []string{core.Version20260728}, ModernOnly: true}
	tests := []struct {
		name    string
		h       http.Handler
		want    upstream.Info
		wantErr bool
	}{
		// go-sdk v1.8 stateful servers answer server/discover with 200 and a
		// DiscoverResult whose supportedVersions are only the legacy ones:
		// a result without a modern version means legacy.
		{name: "go-sdk stateful sse", h: sdk(false, false), want: legacy},
		{name: "go-sdk stateful json", h: sdk(false, true), want: legacy},
		{name: "go-sdk stateless sse", h: sdk(true, false), want: modern},
		{name: "go-sdk stateless json", h: sdk(true, true), want: modern},
		// A server that lists no legacy version serves legacy clients only
		// through the bridge.
		{name: "go-sdk stateless restricted to 2026-07-28", h: modernOnlySDK(), want: modernOnly},
		{name: "400 unsupported version lists only modern", h: fixed(400, "application/json",
			`{"jsonrpc":"2.0","id":"mcpgate-discover","error":{"code":-32022,"message":"Unsupported protocol version","data":{"supported":["2026-07-28"]}}}`),
			want: modernOnly},
		{name: "400 missing session json-rpc", h: fixed(400, "application/json",
			`{"jsonrpc":"2.0","error":{"code":-32000,"message":"Bad Request: No valid session ID provided"},"id":null}`), want: legacy},
		{name: "400 plain text", h: fixed(400, "text/plain", "Bad Request: missing session"), want: legacy},
		{name: "404 plain", h: fixed(404, "text/plain", "not found"), want: legacy},
		{name: "405 empty", h: fixed(405, "text/plain", ""), want: legacy},
		{name: "200 method not found", h: fixed(200, "application/json",
			`{"jsonrpc":"2.0","id":"mcpgate-discover","error":{"code":-32601,"message":"Method not found"}}`), want: legacy},
		{name: "400 unsupported version lists modern", h: fixed(400, "application/json",
			`{"jsonrpc":"2.0","id":"mcpgate-discover","error":{"code":-32022,"message":"Unsupported protocol version","data":{"supported":["2026-07-28","2025-11-25"],"requested":"2026-07-28"}}}`),
			want: modern},
		{name: "400 unsupported version lists only legacy", h: fixed(400, "application/json",
			`{"jsonrpc":"2.0","id":"mcpgate-discover","error":{"code":-32022,"message":"stateful","data":{"supported":["2025-11-25"]}}}`),
			want: legacy},
		{name: "400 header mismatch", h: fixed(400, "application/json",
			`{"jsonrpc":"2.0","id":"mcpgate-discover","error":{"code":-32020,"message":"Header mismatch"}}`),
			want: upstream.Info{Era: core.EraModern}},
		{name: "401 is not an era", h: fixed(401, "text/plain", "no"), wantErr: true},
		{name: "500 is not an era", h: fixed(500, "text/plain", "boom"), wantErr: true},
		{name: "200 html is not mcp", h: fixed(200, "text/html", "<html>"), wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ts, rec := serve(t, tt.h)
			u := newUpstream(t, ts.URL, nil)
			got, err := u.Probe(ctxT(t))
			if tt.wantErr {
				if err == nil {
					t.Fatalf("want an error, got %+v", got)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Probe (-want +got):\n%s", diff)
			}
			reqs := rec.find(byRPC("server/discover"))
			if len(reqs) != 1 {
				t.Fatalf("%d discover requests", len(reqs))
			}
			h := reqs[0].Header
			for k, v := range map[string]string{
				"Mcp-Protocol-Version": "2026-07-28", "Mcp-Method": "server/discover",
				"Accept": "application/json, text/event-stream", "Content-Type": "application/json",
			} {
				if h.Get(k) != v {
					t.Errorf("%s: %q, want %q", k, h.Get(k), v)
				}
			}
		})
	}
}

func TestProbeCachesAndShares(t *testing.T) {
	var calls atomic.Int32
	release := make(chan struct{})
	s := mcp.NewServer(&mcp.Implementation{Name: "s", Version: "1"}, nil)
	sdk := mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return s }, &mcp.StreamableHTTPOptions{Stateless: true})
	ts, _ := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		<-release
		sdk.ServeHTTP(w, r)
	}))
	u := newUpstream(t, ts.URL, nil)
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 8 {
		wg.Go(func() {
			info, err := u.Probe(ctxT(t))
			if err == nil && info.Era != core.EraModern {
				err = errors.New("not modern: " + info.Era.String())
			}
			errs <- err
		})
	}
	time.Sleep(50 * time.Millisecond) // let the callers pile up on one probe
	close(release)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if _, err := u.Probe(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	if n := calls.Load(); n != 1 {
		t.Fatalf("%d probes reached the upstream, want 1", n)
	}
}

func TestProbeFailureNotCached(t *testing.T) {
	var fail atomic.Bool
	fail.Store(true)
	s := mcp.NewServer(&mcp.Implementation{Name: "s", Version: "1"}, nil)
	sdk := mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return s }, &mcp.StreamableHTTPOptions{Stateless: true})
	ts, _ := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if fail.Load() {
			http.Error(w, "starting up", http.StatusServiceUnavailable)
			return
		}
		sdk.ServeHTTP(w, r)
	}))
	u := newUpstream(t, ts.URL, nil)
	_, err := u.Probe(ctxT(t))
	var he *httpup.HTTPError
	if !errors.As(err, &he) || he.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("want the upstream's 503, got %v", err)
	}
	fail.Store(false)
	info, err := u.Probe(ctxT(t))
	if err != nil || info.Era != core.EraModern {
		t.Fatalf("second probe: %+v, %v", info, err)
	}

	// A transport error (nothing listening) is returned, not cached.
	dead := newUpstream(t, "http://127.0.0.1:1/mcp", nil)
	if _, err := dead.Probe(ctxT(t)); err == nil {
		t.Fatal("probe of a closed port succeeded")
	}
	// A caller whose context ends does not poison the cache either.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := dead.Probe(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled probe: %v", err)
	}
}

func TestNewRejects(t *testing.T) {
	tests := []struct {
		name string
		cfg  httpup.Options
	}{
		{name: "scheme", cfg: httpup.Options{URL: "ftp://x/mcp"}},
		{name: "no host", cfg: httpup.Options{URL: "http:///mcp"}},
		{name: "userinfo", cfg: httpup.Options{URL: "http://u:p@x/mcp"}},
		{name: "bad header name", cfg: httpup.Options{URL: "http://x/mcp", Headers: map[string]string{"X Key": "s3cret"}}},
		{name: "reserved header", cfg: httpup.Options{URL: "http://x/mcp", Headers: map[string]string{"mcp-session-id": "v"}}},
		{name: "header value newline", cfg: httpup.Options{URL: "http://x/mcp", Headers: map[string]string{"X-Key": "s3cret\r\nb"}}},
		{name: "ca file missing", cfg: httpup.Options{URL: "https://x/mcp", TLS: &httpup.TLSOptions{CAFile: "/nonexistent"}}},
		{name: "cert without key", cfg: httpup.Options{URL: "https://x/mcp", TLS: &httpup.TLSOptions{CertFile: "c.pem"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := httpup.New(tt.cfg, "r", nil)
			if err == nil {
				t.Fatal("accepted")
			}
			if strings.Contains(err.Error(), "s3cret") {
				t.Fatalf("error reveals a header value: %v", err)
			}
		})
	}
}
