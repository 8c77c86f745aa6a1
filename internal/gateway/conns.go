package gateway

import (
	"errors"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mcpgate/mcpgate/internal/core"
)

// connLimit bounds the connections open at once on a set of listeners
// (every client listener shares one; the admin listener has its own).
//
// When it is full, a new connection is accepted and refused at once
// (503 with a JSON-RPC error and Retry-After on a plain HTTP listener,
// a close on a TLS one) instead of being left unaccepted: a client learns
// in one round trip that it should retry, rather than waiting in the
// kernel's backlog for a slot, and the accept loop never meets EMFILE
// (whose back-off would also delay every client behind it).
type connLimit struct {
	name  string // listener label: client or admin
	max   int
	slots chan struct{}
	log   *slog.Logger

	open    prometheus.Gauge
	refused prometheus.Counter
	// refusing bounds the refused connections being answered at once;
	// beyond it they are closed without an answer.
	refusing chan struct{}
	// unlogged counts refusals since the last connection_limit_reached
	// line, logged at most once per connLogInterval.
	unlogged atomic.Int64
	lastLog  atomic.Int64 // unix nanoseconds
}

const (
	// connRefusers is how many refused connections may be answered at
	// once (each holds its descriptor for at most connRefuseTime).
	connRefusers   = 16
	connRefuseTime = time.Second
	// connLogInterval spaces the connection_limit_reached lines.
	connLogInterval = 10 * time.Second
)

// connMetrics are the gauge and counter every connLimit reports to.
type connMetrics struct {
	open    *prometheus.GaugeVec
	refused *prometheus.CounterVec
}

func newConnMetrics(reg prometheus.Registerer) (*connMetrics, error) {
	m := &connMetrics{
		open: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "mcpgate_connections",
			Help: "Connections open on the gateway's listeners (client: every client listener together, admin: the admin listener).",
		}, []string{"listener"}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mcpgate_connections_refused_total",
			Help: "Connections refused because the listener's connection limit (server.max_connections for clients) was reached.",
		}, []string{"listener"}),
	}
	for _, c := range []prometheus.Collector{m.open, m.refused} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

func newConnLimit(name string, max int, m *connMetrics, log *slog.Logger) *connLimit {
	return &connLimit{
		name: name, max: max, slots: make(chan struct{}, max), log: log,
		open: m.open.WithLabelValues(name), refused: m.refused.WithLabelValues(name),
		refusing: make(chan struct{}, connRefusers),
	}
}

// wrap returns ln limited by l. answer says whether a refused connection
// gets an HTTP answer (plain HTTP) or only a close (TLS, whose handshake
// has not happened yet).
func (l *connLimit) wrap(ln net.Listener, answer bool) net.Listener {
	return &limitedListener{Listener: ln, limit: l, answer: answer}
}

type limitedListener struct {
	net.Listener
	limit  *connLimit
	answer bool
}

func (ll *limitedListener) Accept() (net.Conn, error) {
	l := ll.limit
	for {
		c, err := ll.Listener.Accept()
		if err != nil {
			return nil, err
		}
		select {
		case l.slots <- struct{}{}:
			l.open.Inc()
			return &limitedConn{Conn: c, limit: l}, nil
		default:
			l.refuse(c, ll.answer)
		}
	}
}

// refuse answers and closes a connection over the limit.
func (l *connLimit) refuse(c net.Conn, answer bool) {
	l.refused.Inc()
	l.noteRefusal()
	if !answer {
		_ = c.Close()
		return
	}
	select {
	case l.refusing <- struct{}{}:
	default:
		_ = c.Close()
		return
	}
	go func() {
		defer func() { <-l.refusing }()
		_ = c.SetDeadline(time.Now().Add(connRefuseTime))
		_, _ = c.Write(l.refusal())
		// Half-close and read what the client sent before closing, so
		// that its unread request does not turn the close into a reset
		// that could discard the answer on the client's side.
		if tc, ok := c.(interface{ CloseWrite() error }); ok {
			_ = tc.CloseWrite()
			var buf [4096]byte
			for {
				if _, err := c.Read(buf[:]); err != nil {
					break
				}
			}
		}
		_ = c.Close()
	}()
}

// refusal is the HTTP response a refused connection gets.
func (l *connLimit) refusal() []byte {
	e := core.NewError(core.CodeSessionCap, "too many connections: the "+l.name+" listener's limit of "+strconv.Itoa(l.max)+" is reached; retry later")
	body := core.AppendErrorResponse(nil, "", e)
	b := []byte("HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nRetry-After: 1\r\nConnection: close\r\nContent-Length: ")
	b = strconv.AppendInt(b, int64(len(body)), 10)
	b = append(b, "\r\n\r\n"...)
	return append(b, body...)
}

// noteRefusal logs connection_limit_reached at most once per
// connLogInterval, with the number refused since the last line.
func (l *connLimit) noteRefusal() {
	n := l.unlogged.Add(1)
	now := time.Now().UnixNano()
	last := l.lastLog.Load()
	if now-last < int64(connLogInterval) || !l.lastLog.CompareAndSwap(last, now) {
		return
	}
	n = l.unlogged.Swap(0)
	l.log.Warn("connection_limit_reached", "listener", l.name, "max_connections", l.max, "refused", n)
}

// limitedConn gives its slot back once, on the first Close.
type limitedConn struct {
	net.Conn
	limit *connLimit
	once  sync.Once
}

func (c *limitedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() {
		<-c.limit.slots
		c.limit.open.Dec()
	})
	return err
}

// CloseWrite keeps the half-close of the underlying TCP connection
// reachable through the wrapper.
func (c *limitedConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return errors.ErrUnsupported
}
