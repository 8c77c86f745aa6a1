package httpup

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"time"

	"github.com/mcpgate/mcpgate/internal/callctx"
)

// lean is the HTTP/1.1 client of a plain http:// upstream reached without
// a proxy: it writes each request and reads its response on the calling
// goroutine, over a pooled keep-alive connection. net/http's Transport
// hands every exchange to two goroutines of its own per connection (the
// writer and the reader) and back, through channels and a select; on a
// gateway whose CPU is shared with its clients and upstream, those
// hand-offs are a large part of what the extra hop costs. The response is
// parsed by net/http itself (http.ReadResponse, the parser its Transport
// uses), so status line, headers, Content-Length, chunked bodies and their
// conflicts are read exactly as before; only the connection handling is
// ours. https upstreams, proxies and HTTP/2 stay on the Transport.
//
// A connection goes back to the pool only after its response body was read
// to its end (EOF) and neither side asked to close it; a body closed early,
// any read or write error, a context that ended during the exchange, or a
// 101 answer closes it. An idle connection is checked before reuse (the
// server may have closed it: see alive) and dropped after idleTimeout.
type lean struct {
	addr    string // host:port to dial
	host    string // the Host header
	uri     []byte // the request target (path and query)
	dial    func(ctx context.Context, network, addr string) (net.Conn, error)
	maxIdle int

	mu   sync.Mutex
	idle []*leanConn // most recently used last
}

const (
	// leanMaxHeaderBytes caps a response's status line and header fields
	// (net/http's Transport allows 10 MB; MCP servers send a few hundred
	// bytes).
	leanMaxHeaderBytes = 1 << 20
	// leanIdleTimeout drops a pooled connection unused this long, as the
	// Transport's IdleConnTimeout does.
	leanIdleTimeout = 90 * time.Second
	// leanMax1xx bounds the informational answers skipped before the final
	// one.
	leanMax1xx = 5
)

// leanFor returns the lean client for target, or nil when the upstream
// needs the Transport (https, a proxy from the environment).
func leanFor(tr *http.Transport, target *url.URL, dialer *net.Dialer, maxIdle int) *lean {
	if target.Scheme != "http" || target.Host == "" {
		return nil
	}
	if tr.Proxy != nil {
		if p, err := tr.Proxy(&http.Request{Method: http.MethodPost, URL: target, Header: http.Header{}}); err != nil || p != nil {
			return nil
		}
	}
	port := target.Port()
	if port == "" {
		port = "80"
	}
	return &lean{
		addr: net.JoinHostPort(target.Hostname(), port), host: target.Host, uri: []byte(target.RequestURI()),
		dial: dialer.DialContext, maxIdle: maxIdle,
	}
}

// leanConn is one pooled connection.
type leanConn struct {
	l    *lean
	conn net.Conn
	br   *bufio.Reader
	bw   *bufio.Writer
	lr   limitReader
	used time.Time // when it went idle
	num  [20]byte  // room to format the Content-Length
	peek peeker    // alive's check of the socket

	// mu guards the exchange's state against the context's end, which
	// may come on another goroutine.
	mu      sync.Mutex
	active  bool // an exchange is running: an end aborts it
	aborted bool // the context ended during the exchange
	stop    func() bool
	watched callctx.Watcher
}

// limitReader is the connection under the bufio.Reader: while n >= 0 it
// allows that many more bytes (the header budget).
type limitReader struct {
	r net.Conn
	n int64
}

var errHeaderTooLarge = errors.New("httpup: upstream response header too large")

func (l *limitReader) Read(p []byte) (int, error) {
	if l.n < 0 {
		return l.r.Read(p)
	}
	if l.n == 0 {
		return 0, errHeaderTooLarge
	}
	if int64(len(p)) > l.n {
		p = p[:l.n]
	}
	n, err := l.r.Read(p)
	l.n -= int64(n)
	return n, err
}

// CallEnded implements callctx.Listener: the request's context ended.
func (c *leanConn) CallEnded(error) { c.abort() }

// abort interrupts the exchange's I/O; the connection is then closed.
func (c *leanConn) abort() {
	c.mu.Lock()
	if c.active {
		c.aborted = true
		_ = c.conn.SetDeadline(aLongTimeAgo)
	}
	c.mu.Unlock()
}

var aLongTimeAgo = time.Unix(1, 0)

// readDeadline sets the read deadline of the exchange, unless the context
// has ended: abort's deadline in the past must stay, or a read would wait
// for an upstream nobody waits for any more.
func (c *leanConn) readDeadline(t time.Time) {
	c.mu.Lock()
	if !c.aborted {
		_ = c.conn.SetReadDeadline(t)
	}
	c.mu.Unlock()
}

// get returns an idle connection that is still open, or dials one.
func (l *lean) get(ctx context.Context) (*leanConn, error) {
	now := time.Now()
	for {
		l.mu.Lock()
		n := len(l.idle)
		if n == 0 {
			l.mu.Unlock()
			break
		}
		c := l.idle[n-1]
		l.idle[n-1] = nil
		l.idle = l.idle[:n-1]
		l.mu.Unlock()
		if now.Sub(c.used) < leanIdleTimeout && c.peek.alive() {
			return c, nil
		}
		_ = c.conn.Close()
	}
	nc, err := l.dial(ctx, "tcp", l.addr)
	if err != nil {
		return nil, err
	}
	c := &leanConn{l: l, conn: nc}
	c.lr.r = nc
	c.peek.init(nc)
	c.br = bufio.NewReaderSize(&c.lr, 4<<10)
	c.bw = bufio.NewWriterSize(nc, 4<<10)
	return c, nil
}

// put returns a connection whose exchange ended cleanly to the pool.
func (l *lean) put(c *leanConn) {
	c.used = time.Now()
	l.mu.Lock()
	if len(l.idle) >= l.maxIdle {
		l.mu.Unlock()
		_ = c.conn.Close()
		return
	}
	l.idle = append(l.idle, c)
	l.mu.Unlock()
}

// closeIdle closes the pooled connections.
func (l *lean) closeIdle() {
	l.mu.Lock()
	idle := l.idle
	l.idle = nil
	l.mu.Unlock()
	for _, c := range idle {
		_ = c.conn.Close()
	}
}

// errInvalidHeader: a header the gateway would send is not valid HTTP
// (never sent: it could split the request).
type errInvalidHeader string

func (e errInvalidHeader) Error() string {
	return "httpup: invalid header field for " + strconv.Quote(string(e))
}

// roundTrip sends one request and reads its response headers. wait > 0
// bounds waiting for the headers. The body is read on the caller's
// goroutine through the returned Response; closing it releases the
// connection.
func (l *lean) roundTrip(ctx context.Context, method string, body []byte, h http.Header, wait time.Duration) (*http.Response, error) {
	for k, vs := range h {
		if !validHeaderName(k) {
			return nil, errInvalidHeader(k)
		}
		for _, v := range vs {
			if !validHeaderValue(v) {
				return nil, errInvalidHeader(k)
			}
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	c, err := l.get(ctx)
	if err != nil {
		return nil, err
	}
	c.watch(ctx)
	resp, err := c.exchange(method, body, h, wait)
	if err != nil {
		if c.release(false) && ctx.Err() != nil {
			return nil, ctx.Err()
		}
		var ne net.Error
		if wait > 0 && errors.As(err, &ne) && ne.Timeout() && ctx.Err() == nil {
			return nil, fmt.Errorf("httpup: no response headers from the upstream within %s", wait)
		}
		return nil, err
	}
	if resp.Body == http.NoBody {
		c.release(!resp.Close)
		return resp, nil
	}
	resp.Body = &leanBody{c: c, body: resp.Body, reuse: !resp.Close}
	return resp, nil
}

// watch arranges for the context's end to abort the exchange.
func (c *leanConn) watch(ctx context.Context) {
	c.mu.Lock()
	c.active, c.aborted = true, false
	c.mu.Unlock()
	if w, ok := ctx.(callctx.Watcher); ok {
		if w.Watch(c) {
			c.watched = w
		} else {
			c.abort()
		}
		return
	}
	if ctx.Done() != nil {
		c.stop = context.AfterFunc(ctx, c.abort)
	}
}

// release ends the exchange: the connection goes back to the pool when
// reuse holds and the exchange was not aborted, else it is closed.
func (c *leanConn) release(reuse bool) (aborted bool) {
	// A context that has ended may still be about to tell us (its
	// listeners and functions run outside its lock): such a connection is
	// not reused, so a late abort meets a closed connection and not the
	// next exchange.
	if c.watched != nil {
		c.watched.Unwatch(c)
		if c.watched.Err() != nil {
			reuse = false
		}
		c.watched = nil
	}
	if c.stop != nil {
		if !c.stop() {
			reuse = false
		}
		c.stop = nil
	}
	if reuse && c.br.Buffered() > 0 {
		// Bytes beyond the answer: the server sent what no request
		// asked for, which the next exchange would take for its answer.
		reuse = false
	}
	c.mu.Lock()
	c.active = false
	aborted = c.aborted
	c.mu.Unlock()
	if !reuse || aborted {
		_ = c.conn.Close()
		return aborted
	}
	c.l.put(c)
	return false
}

// exchange writes the request and reads the final response's head.
func (c *leanConn) exchange(method string, body []byte, h http.Header, wait time.Duration) (*http.Response, error) {
	l := c.l
	w := c.bw
	w.WriteString(method)
	w.WriteByte(' ')
	w.Write(l.uri)
	w.WriteString(" HTTP/1.1\r\nHost: ")
	w.WriteString(l.host)
	w.WriteString("\r\nUser-Agent: Go-http-client/1.1\r\n")
	for k, vs := range h {
		for _, v := range vs {
			w.WriteString(k)
			w.WriteString(": ")
			w.WriteString(v)
			w.WriteString("\r\n")
		}
	}
	if body != nil || method == http.MethodPost {
		w.WriteString("Content-Length: ")
		w.Write(strconv.AppendInt(c.num[:0], int64(len(body)), 10))
		w.WriteString("\r\n")
	}
	w.WriteString("\r\n")
	w.Write(body)
	if err := w.Flush(); err != nil {
		w.Reset(c.conn)
		return nil, err
	}
	if wait > 0 {
		c.readDeadline(time.Now().Add(wait))
	}
	req := leanRequest(method)
	c.lr.n = leanMaxHeaderBytes
	var resp *http.Response
	var err error
	for i := 0; ; i++ {
		resp, err = http.ReadResponse(c.br, req)
		if err != nil {
			return nil, err
		}
		if resp.StatusCode == http.StatusSwitchingProtocols {
			return nil, errors.New("httpup: upstream answered 101 Switching Protocols")
		}
		if resp.StatusCode >= 200 || i >= leanMax1xx {
			break
		}
		// 1xx: informational, no body; the final answer follows.
	}
	if resp.StatusCode < 200 {
		return nil, errors.New("httpup: upstream sent too many informational answers")
	}
	// What is buffered beyond the head is the body's; the budget now
	// bounds nothing (body limits are the readers').
	c.lr.n = -1
	if wait > 0 {
		c.readDeadline(time.Time{})
	}
	return resp, nil
}

// leanRequest is the request a response is read for (ReadResponse needs
// its method: a HEAD answer has no body); shared, only read.
func leanRequest(method string) *http.Request {
	switch method {
	case http.MethodPost:
		return reqPost
	case http.MethodGet:
		return reqGet
	case http.MethodDelete:
		return reqDelete
	}
	return &http.Request{Method: method}
}

var (
	reqPost   = &http.Request{Method: http.MethodPost}
	reqGet    = &http.Request{Method: http.MethodGet}
	reqDelete = &http.Request{Method: http.MethodDelete}
)

// leanBody is a response body on a lean connection: its end (EOF) releases
// the connection for reuse; closing it earlier, or a read error, closes
// the connection.
type leanBody struct {
	c     *leanConn
	body  io.ReadCloser
	reuse bool
	done  bool
}

func (b *leanBody) Read(p []byte) (int, error) {
	if b.done {
		return 0, errBodyClosed
	}
	n, err := b.body.Read(p)
	if err != nil {
		b.done = true
		if b.c.release(b.reuse && err == io.EOF) {
			err = errAborted
		}
	}
	return n, err
}

var (
	errBodyClosed = errors.New("httpup: read on a closed response body")
	errAborted    = errors.New("httpup: request ended while its response was read")
)

func (b *leanBody) Close() error {
	if b.done {
		return nil
	}
	b.done = true
	// Not read to its end: the rest of it is still on the connection,
	// which cannot carry another exchange.
	b.c.release(false)
	return nil
}
