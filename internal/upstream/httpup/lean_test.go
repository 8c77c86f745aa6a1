package httpup

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// rawServer answers each request on a TCP connection with what answer
// returns for it (the request's number, from 0), written
// as it is; close ends the connection after the answer.
type rawServer struct {
	ln       net.Listener
	accepts  atomic.Int32
	requests atomic.Int32
}

func newRawServer(t *testing.T, answer func(n int, req *http.Request) (raw string, close bool)) *rawServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &rawServer{ln: ln}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.accepts.Add(1)
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				br := bufio.NewReader(c)
				for {
					req, err := http.ReadRequest(br)
					if err != nil {
						return
					}
					_, _ = io.Copy(io.Discard, req.Body)
					raw, closeAfter := answer(int(s.requests.Add(1)-1), req)
					if _, err := io.WriteString(c, raw); err != nil || closeAfter {
						return
					}
				}
			}()
		}
	}()
	return s
}

func (s *rawServer) lean(t *testing.T) *lean {
	t.Helper()
	u, err := New(Options{URL: "http://" + s.ln.Addr().String() + "/mcp"}, "test", nil)
	if err != nil {
		t.Fatal(err)
	}
	if u.lean == nil {
		t.Fatal("a plain http:// upstream without a proxy has no lean client")
	}
	t.Cleanup(func() { _ = u.Close() })
	return u.lean
}

func leanPost(t *testing.T, l *lean, ctx context.Context) (*http.Response, string, error) {
	t.Helper()
	resp, err := l.roundTrip(ctx, http.MethodPost, []byte(`{"jsonrpc":"2.0","id":1,"method":"ping"}`), http.Header{"Content-Type": contentJSON}, 0)
	if err != nil {
		return nil, "", err
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(b), err
}

const okJSON = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"

func (l *lean) idleCount() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.idle)
}

func TestLeanReusesAConnectionReadToItsEnd(t *testing.T) {
	t.Parallel()
	var conns atomic.Int32
	ts := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/mcp" || r.Host == "" || r.Header.Get("Content-Length") == "" {
			http.Error(w, "bad request line or headers", http.StatusBadRequest)
			return
		}
		if r.URL.Query().Get("chunked") != "" {
			w.(http.Flusher).Flush() // no length: chunked
		}
		_, _ = w.Write([]byte(`{"jsonrpc":"2.0","id":1,"result":{}}`))
	}))
	ts.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	ts.Start()
	t.Cleanup(ts.Close)
	u, err := New(Options{URL: ts.URL + "/mcp"}, "test", nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = u.Close() })
	l := u.lean
	for i := range 10 {
		resp, err := l.roundTrip(t.Context(), http.MethodPost, []byte(`{}`), http.Header{"Content-Type": contentJSON}, 0)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != 200 {
			t.Fatalf("status %d", resp.StatusCode)
		}
		// Exactly Content-Length bytes, as readJSON reads them: the last
		// read brings EOF with it, which frees the connection.
		b := make([]byte, resp.ContentLength)
		if _, err := io.ReadFull(resp.Body, b); err != nil {
			t.Fatal(i, err)
		}
		resp.Body.Close()
	}
	if n := conns.Load(); n != 1 {
		t.Fatalf("10 sequential requests used %d connections, want 1", n)
	}
	l.uri = []byte("/mcp?chunked=1")
	for range 3 {
		if _, body, err := leanPost(t, l, t.Context()); err != nil || !strings.Contains(body, "result") {
			t.Fatalf("chunked answer: %q, %v", body, err)
		}
	}
	if n := conns.Load(); n != 1 {
		t.Fatalf("chunked answers used %d connections, want 1", n)
	}
}

func TestLeanDoesNotReuse(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name  string
		first string
		close bool
	}{
		// Bytes after the body would be read as the next answer (response
		// splitting): the connection is dropped, not reused.
		{name: "bytes after the body", first: okJSON + "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nforgd"},
		{name: "Connection: close", first: "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"},
		{name: "HTTP/1.0 without keep-alive", first: "HTTP/1.0 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"},
		{name: "server closed the idle connection", first: okJSON, close: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := newRawServer(t, func(n int, _ *http.Request) (string, bool) {
				if n == 0 {
					return tc.first, tc.close
				}
				return okJSON, false
			})
			l := s.lean(t)
			if _, body, err := leanPost(t, l, t.Context()); err != nil || body != "{}" {
				t.Fatalf("first: %q, %v", body, err)
			}
			for range 3 {
				if _, body, err := leanPost(t, l, t.Context()); err != nil || body != "{}" {
					t.Fatalf("next: %q, %v", body, err)
				}
			}
			if n := s.accepts.Load(); n != 2 {
				t.Fatalf("%d connections, want 2 (the first dropped, the second reused)", n)
			}
		})
	}
}

func TestLeanEarlyCloseAndCancel(t *testing.T) {
	t.Parallel()
	s := newRawServer(t, func(n int, r *http.Request) (string, bool) {
		if r.Method == http.MethodGet {
			// An SSE stream that stays open.
			return "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n" +
				"f\r\ndata: {\"a\":1}\n\n\r\n", false
		}
		return okJSON, false
	})
	l := s.lean(t)
	open := func(ctx context.Context) *http.Response {
		resp, err := l.roundTrip(ctx, http.MethodGet, nil, http.Header{"Accept": acceptGet}, time.Second)
		if err != nil {
			t.Fatal(err)
		}
		b := make([]byte, 16)
		if _, err := io.ReadFull(resp.Body, b[:15]); err != nil || string(b[:15]) != "data: {\"a\":1}\n\n" {
			t.Fatalf("event %q, %v", b, err)
		}
		return resp
	}
	// Closed before its end: the connection goes, it is not pooled.
	resp := open(t.Context())
	resp.Body.Close()
	if n := l.idleCount(); n != 0 {
		t.Fatalf("%d idle after an early close, want 0", n)
	}
	// The context ends while the body is read: the read fails at once.
	ctx, cancel := context.WithCancel(t.Context())
	resp = open(ctx)
	errc := make(chan error, 1)
	go func() {
		_, err := resp.Body.Read(make([]byte, 64))
		errc <- err
	}()
	cancel()
	select {
	case err := <-errc:
		if err == nil {
			t.Fatal("read after the context ended succeeded")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a read on an ended context still blocks")
	}
	resp.Body.Close()
	if n := l.idleCount(); n != 0 {
		t.Fatalf("%d idle after a cancelled read, want 0", n)
	}
	if _, body, err := leanPost(t, l, t.Context()); err != nil || body != "{}" {
		t.Fatalf("after: %q, %v", body, err)
	}
}

func TestLeanHeaderLimits(t *testing.T) {
	t.Parallel()
	hold := make(chan struct{})
	s := newRawServer(t, func(n int, r *http.Request) (string, bool) {
		switch r.URL.Query().Get("case") {
		case "big":
			return "HTTP/1.1 200 OK\r\nX-Big: " + strings.Repeat("a", leanMaxHeaderBytes+10) + "\r\n\r\n", false
		case "silent":
			<-hold
		case "1xx":
			return "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n" + okJSON, false
		case "101":
			return "HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\n", false
		}
		return okJSON, false
	})
	t.Cleanup(func() { close(hold) })
	l := s.lean(t)
	try := func(c string, wait time.Duration) (*http.Response, error) {
		l.uri = []byte("/mcp?case=" + c)
		resp, err := l.roundTrip(t.Context(), http.MethodPost, []byte(`{}`), http.Header{}, wait)
		if err == nil {
			_, _ = io.ReadAll(resp.Body)
			resp.Body.Close()
		}
		return resp, err
	}
	if _, err := try("big", 0); err == nil {
		t.Fatal("a header over the limit was accepted")
	}
	start := time.Now()
	if _, err := try("silent", 50*time.Millisecond); err == nil || !strings.Contains(err.Error(), "no response headers") {
		t.Fatalf("silent upstream: %v", err)
	} else if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("header timeout took %s", d)
	}
	if resp, err := try("1xx", 0); err != nil || resp.StatusCode != 200 {
		t.Fatalf("1xx then 200: %v", err)
	}
	if _, err := try("101", 0); err == nil {
		t.Fatal("101 accepted")
	}
	if _, err := l.roundTrip(t.Context(), http.MethodPost, nil, http.Header{"X-A": {"v\r\nX-Injected: 1"}}, 0); err == nil {
		t.Fatal("a header value with CRLF was sent")
	}
	if _, err := l.roundTrip(t.Context(), http.MethodPost, nil, http.Header{"X A": {"v"}}, 0); err == nil {
		t.Fatal("an invalid header name was sent")
	}
}

// pipeLean is a lean client whose connections are in-memory pipes to a
// server that reads the request and answers with raw, then closes.
func pipeLean(raw []byte) *lean {
	l := &lean{addr: "upstream:80", host: "upstream", uri: []byte("/mcp"), maxIdle: 4}
	l.dial = func(context.Context, string, string) (net.Conn, error) {
		cli, srv := net.Pipe()
		go func() { _, _ = io.Copy(io.Discard, srv) }()
		go func() {
			_, _ = srv.Write(raw)
			srv.Close()
		}()
		return cli, nil
	}
	return l
}

// FuzzLeanResponse feeds arbitrary bytes to the lean client as the answer:
// it must not panic or hang, must read no more than the body allows, and
// must pool a connection only after a complete, keep-alive answer whose
// body was read to its end.
func FuzzLeanResponse(f *testing.F) {
	for _, s := range []string{
		okJSON,
		okJSON + "HTTP/1.1 200 OK\r\n\r\n",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n2\r\n{}\r\n0\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}",
		"HTTP/1.1 204 No Content\r\n\r\n",
		"HTTP/1.1 100 Continue\r\n\r\n" + okJSON,
		"HTTP/1.0 200 OK\r\n\r\nbody until close",
		"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\ndata: {}\n\n",
		"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
		"HTTP/1.1 200 OK\r\n Folded: x\r\n\r\n",
		"HTTP/1.1 999 Odd\r\nContent-Length: 0\r\n\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		l := pipeLean(raw)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		resp, err := l.roundTrip(ctx, http.MethodPost, []byte(`{}`), http.Header{"Content-Type": contentJSON}, time.Second)
		if err != nil {
			if l.idleCount() != 0 {
				t.Fatalf("a failed exchange pooled its connection: %v", err)
			}
			return
		}
		body, berr := io.ReadAll(io.LimitReader(resp.Body, int64(len(raw))+1))
		resp.Body.Close()
		if len(body) > len(raw) {
			t.Fatalf("read %d body bytes from a %d-byte answer", len(body), len(raw))
		}
		if resp.ContentLength >= 0 && berr == nil && int64(len(body)) != resp.ContentLength {
			t.Fatalf("body of %d bytes, Content-Length %d", len(body), resp.ContentLength)
		}
		if l.idleCount() > 0 && (berr != nil || resp.Close) {
			t.Fatalf("pooled after berr=%v close=%v", berr, resp.Close)
		}
		l.closeIdle()
	})
}
