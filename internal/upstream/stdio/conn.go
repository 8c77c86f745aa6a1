package stdio

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/time/rate"

	"github.com/mcpgate/mcpgate/internal/core"
	"github.com/mcpgate/mcpgate/internal/upstream"
)

const (
	// maxStderrLine bounds one logged stderr line; the rest is dropped.
	maxStderrLine = 4 << 10
	// stderrBurst and stderrRate bound the stderr lines logged per
	// process: a burst, then lines a second. The rest is read and dropped
	// (counted in stdio_stderr_dropped), so a process that floods stderr
	// neither blocks on a full pipe nor floods the gateway's log.
	stderrBurst = 100
	stderrRate  = 20
	// maxLoggedLine bounds an undecodable stdout line in the log.
	maxLoggedLine = 256
	// drainTimeout is how long the readers may take, after the process
	// exited, to read what it left in the pipes before they are closed
	// (a descendant outside its group may hold them open).
	drainTimeout = time.Second
	// cancelWriteTimeout bounds writing notifications/cancelled.
	cancelWriteTimeout = 2 * time.Second
	// copyMax is the largest message copied into a pooled buffer to write
	// it and its newline at once; larger ones are written in two calls.
	copyMax = 64 << 10
)

// Conn is one process serving one gateway session. Safe for concurrent
// use.
type Conn struct {
	up    *Upstream
	bound atomic.Pointer[binding] // the session it serves; see adopt
	cmd   *exec.Cmd
	pid   int
	proc  Process  // recorded with rec, if rec is set
	rec   Recorder // told when the process ended
	// owner is the principal (and tenant) whose credential the process's
	// environment holds; "" without per-principal credentials.
	owner string
	// caps enforces the sandbox's memory and CPU caps; nil without.
	caps *procCaps

	stdin          *os.File
	stdout, stderr *os.File
	grace          time.Duration
	maxLine        int
	idPrefix       string // `"mcpgate-<hex>-`
	nextID         atomic.Uint64

	wsem        chan struct{} // serializes writes; acquiring honours ctx
	stdinOnce   sync.Once
	stdinClosed atomic.Bool

	mu sync.Mutex
	// calls are the requests awaited: by id, by raw progress token, and
	// the count of ordinary client calls.
	upstream.Calls[*call]
	closing bool // Close was called
	ended   bool // the process is gone and pending failed
	endErr  error
	broken  error // why the gateway killed the process, if it did

	lastStderr atomic.Pointer[string]
	// stderrLog bounds how many stderr lines are logged; the reader alone
	// touches it and stderrDropped.
	stderrLog     *rate.Limiter
	stderrDropped int64

	sigMu  sync.Mutex
	reaped bool // no signals after this: the pid may be reused

	shutdownOnce sync.Once
	dead         chan struct{} // the process exited
	stdoutDone   chan struct{}
	stderrDone   chan struct{}
	finished     chan struct{} // readers done, pending failed, Sink told
}

// binding is what a Conn knows of the session it serves. It is replaced
// once, when the process the probe spawned is handed to the first
// session (adopt), while its readers may be running.
type binding struct {
	log  *slog.Logger
	sess *core.SessionInfo
	era  core.Era
	sink upstream.Sink
}

func (c *Conn) b() *binding { return c.bound.Load() }

// call is one request awaiting its response.
type call struct {
	id       core.ID
	token    string
	internal bool // a gateway-originated request
	listen   bool // subscriptions/listen: only tagged notifications are its
	related  upstream.Related

	// done carries the one completion (buffered: complete never waits),
	// so a call can be reused once its completion has been taken.
	done chan struct{}
	resp *core.Message
	err  error

	rmu      sync.Mutex // orders related deliveries before the return
	returned bool
	// gen tells one use of a pooled call from the next: a related message
	// looked up for an earlier use is not delivered to a later one.
	gen atomic.Uint64
}

// callPool recycles the calls of client requests with their done
// channels.
var callPool = sync.Pool{New: func() any { return &call{done: make(chan struct{}, 1)} }}

// getCall returns a call ready for a new request.
func getCall() *call {
	cl := callPool.Get().(*call)
	cl.rmu.Lock()
	cl.gen.Add(1)
	cl.returned = false
	cl.rmu.Unlock()
	return cl
}

// putCall recycles cl, whose completion has been taken (or will never
// come: it was unregistered before anyone completed it).
func putCall(cl *call) {
	cl.rmu.Lock()
	cl.returned = true
	cl.related = nil
	cl.rmu.Unlock()
	cl.id, cl.token, cl.listen, cl.internal = "", "", false, false
	cl.resp, cl.err = nil, nil
	callPool.Put(cl)
}

// genOf is cl's use, 0 for none.
func genOf(cl *call) uint64 {
	if cl == nil {
		return 0
	}
	return cl.gen.Load()
}

// ordinary reports whether untagged server messages may belong to cl.
func (cl *call) ordinary() bool { return !cl.internal && !cl.listen }

func (cl *call) complete(resp *core.Message, err error) {
	cl.resp, cl.err = resp, err
	cl.done <- struct{}{}
}

// deliver hands m to the request's Related unless the request has no
// Related or RoundTrip already returned; gen is the use of cl the message
// was looked up for (cl.gen read under the Conn's mu).
func (cl *call) deliver(m *core.Message, gen uint64) bool {
	cl.rmu.Lock()
	defer cl.rmu.Unlock()
	if cl.returned || cl.related == nil || cl.gen.Load() != gen {
		return false
	}
	cl.related(m)
	return true
}

func (cl *call) markReturned() {
	cl.rmu.Lock()
	cl.returned = true
	cl.rmu.Unlock()
}

// RoundTrip writes a client request and waits for its response. Server
// messages that belong to it go to related (may be nil) until it returns.
// Cancelling ctx sends notifications/cancelled, except for initialize,
// which must not be cancelled: then only the wait is abandoned.
func (c *Conn) RoundTrip(ctx context.Context, req *core.Message, related upstream.Related) (*core.Message, error) {
	if req.Kind != core.KindRequest {
		return nil, core.NewError(core.CodeInvalidRequest, "invalid request: RoundTrip needs a request, got a "+req.Kind.String())
	}
	cl := getCall()
	cl.id, cl.related, cl.listen = req.ID, related, req.Method == "subscriptions/listen"
	if req.ProgressToken != nil {
		cl.token = string(req.ProgressToken)
	}
	if err := c.register(cl); err != nil {
		putCall(cl)
		return nil, err
	}
	resp, err, taken := c.await(ctx, cl, req.Method, req.Raw)
	cl.markReturned()
	if taken {
		putCall(cl)
	}
	return resp, err
}

// Ping sends a ping (legacy era) with a gateway id and waits for the answer.
func (c *Conn) Ping(ctx context.Context) error {
	resp, err := c.call(ctx, "ping", nil)
	if err != nil {
		return err
	}
	if resp.Kind == core.KindError {
		return fmt.Errorf("stdio: ping: %s", resp.Error)
	}
	return nil
}

// call makes a gateway-originated request.
func (c *Conn) call(ctx context.Context, method string, params []byte) (*core.Message, error) {
	cl := &call{internal: true, done: make(chan struct{}, 1)}
	c.mu.Lock()
	for {
		cl.id = core.ID(c.idPrefix + strconv.FormatUint(c.nextID.Add(1), 10) + `"`)
		if _, taken := c.Pending[cl.id]; !taken {
			break
		}
	}
	c.mu.Unlock()
	raw := make([]byte, 0, 64+len(method)+len(params))
	raw = append(raw, `{"jsonrpc":"2.0","id":`...)
	raw = append(raw, cl.id...)
	raw = append(raw, `,"method":`...)
	raw = strconv.AppendQuote(raw, method)
	if params != nil {
		raw = append(raw, `,"params":`...)
		raw = append(raw, params...)
	}
	raw = append(raw, '}')
	if err := c.register(cl); err != nil {
		return nil, err
	}
	tap := c.up.cfg.Tap
	if tap != nil {
		c.tap(ctx, raw)
	}
	resp, err, _ := c.await(ctx, cl, method, raw)
	if tap != nil && err == nil {
		tap(ctx, c.b().sess, resp)
	}
	return resp, err
}

// tap reports a message the Conn originates to the upstream's Tap.
func (c *Conn) tap(ctx context.Context, raw []byte) {
	m, err := core.Decode(raw)
	if err != nil {
		return
	}
	b := c.b()
	m.Direction, m.Era, m.Session, m.Received = core.ClientToServer, b.era, b.sess, time.Now()
	c.up.cfg.Tap(ctx, b.sess, m)
}

func (c *Conn) register(cl *call) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closing || c.ended {
		return c.closedErrLocked()
	}
	if !c.Add(cl.id, cl.token, cl.ordinary(), cl) {
		return core.NewError(core.CodeInvalidRequest, "duplicate request id")
	}
	return nil
}

// unregisterLocked removes cl if it is still pending and reports whether it
// was: whoever removes a call completes it.
func (c *Conn) unregisterLocked(cl *call) bool {
	return c.Remove(cl.id, cl.token, cl.ordinary(), cl)
}

// await writes a request and waits for its completion. taken reports that
// the completion was taken or will never come, so cl may be reused.
func (c *Conn) await(ctx context.Context, cl *call, method string, raw []byte) (resp *core.Message, err error, taken bool) {
	n, err := c.write(ctx, raw)
	if err != nil {
		if n == 0 && !errors.Is(err, upstream.ErrClosed) {
			// Nothing reached the process: abandon quietly.
			c.mu.Lock()
			removed := c.unregisterLocked(cl)
			c.mu.Unlock()
			return nil, err, removed
		}
		// The pipe is broken, or the message is cut (the process is being
		// killed): the process's end will fail the call with its exit
		// status. Make sure it ends.
		c.shutdown()
	}
	select {
	case <-cl.done:
		return cl.resp, cl.err, true
	case <-ctx.Done():
	}
	c.mu.Lock()
	removed := c.unregisterLocked(cl)
	alive := !c.closing && !c.ended
	c.mu.Unlock()
	if !removed {
		// Completed meanwhile: the answer is here.
		<-cl.done
		return cl.resp, cl.err, true
	}
	if method != "initialize" && alive && err == nil {
		c.cancelUpstream(ctx, cl.id)
	}
	return nil, fmt.Errorf("stdio: %s (id %s): %w", method, cl.id, ctx.Err()), true
}

// cancelUpstream tells the process to stop working on request id.
func (c *Conn) cancelUpstream(ctx context.Context, id core.ID) {
	reason := "request cancelled"
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		reason = "request timed out"
	}
	raw := make([]byte, 0, 112+len(id))
	raw = append(raw, `{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":`...)
	raw = append(raw, id...)
	raw = append(raw, `,"reason":`...)
	raw = strconv.AppendQuote(raw, reason)
	raw = append(raw, "}}"...)
	if c.up.cfg.Tap != nil {
		c.tap(ctx, raw)
	}
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cancelWriteTimeout)
	defer cancel()
	if _, err := c.write(wctx, raw); err != nil {
		c.b().log.Debug("stdio_cancel_not_sent", "request_id", string(id), "error", err)
	}
}

// Send writes a client notification or a client response to a server
// request.
func (c *Conn) Send(ctx context.Context, m *core.Message) error {
	if m.Kind == core.KindRequest || m.Kind == core.KindInvalid {
		return core.NewError(core.CodeInvalidRequest, "invalid request: Send takes notifications and responses, got a "+m.Kind.String())
	}
	c.mu.Lock()
	if c.closing || c.ended {
		err := c.closedErrLocked()
		c.mu.Unlock()
		return err
	}
	c.mu.Unlock()
	_, err := c.write(ctx, m.Raw)
	return err
}

// Listen has nothing to open: everything the process sends arrives on its
// stdout, and what belongs to no request already goes to the Sink.
func (c *Conn) Listen(context.Context) error { return nil }

// UpstreamSession is empty: a stdio process has no session id of its own
// (the pid is in every log line instead).
func (c *Conn) UpstreamSession() string { return "" }

// Close ends the process: pending requests fail with ErrClosed at once;
// stdin is closed, then after ShutdownGrace the group gets SIGTERM, after
// another ShutdownGrace SIGKILL. It waits for the process to be reaped and
// its output drained, or for ctx; the shutdown continues after ctx ends.
// The Sink is not told about an end that Close started. Idempotent.
func (c *Conn) Close(ctx context.Context) error {
	c.mu.Lock()
	var calls []*call
	if !c.closing && !c.ended {
		for _, cl := range c.Pending {
			calls = append(calls, cl)
		}
		for _, cl := range calls {
			c.unregisterLocked(cl)
		}
	}
	c.closing = true
	c.mu.Unlock()
	err := fmt.Errorf("%w: closed by the gateway", upstream.ErrClosed)
	for _, cl := range calls {
		cl.complete(nil, err)
	}
	c.shutdown()
	select {
	case <-c.finished:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("stdio: close: %w", ctx.Err())
	}
}

// shutdown starts the escalation once: close stdin, SIGTERM, SIGKILL.
func (c *Conn) shutdown() {
	c.shutdownOnce.Do(func() { go c.escalate() })
}

func (c *Conn) escalate() {
	c.closeStdin()
	t := time.NewTimer(c.grace)
	defer t.Stop()
	select {
	case <-c.dead:
		return
	case <-t.C:
	}
	c.b().log.Info("stdio_sigterm", "after", c.grace)
	c.signal(syscall.SIGTERM)
	t.Reset(c.grace)
	select {
	case <-c.dead:
		return
	case <-t.C:
	}
	c.b().log.Warn("stdio_sigkill", "after", 2*c.grace)
	c.signal(syscall.SIGKILL)
}

// breakProcess kills a process whose stream can no longer be trusted.
func (c *Conn) breakProcess(err error) {
	c.mu.Lock()
	if c.broken == nil {
		c.broken = err
	}
	c.mu.Unlock()
	c.b().log.Error("stdio_broken", "error", err)
	c.closeStdin()
	c.signal(syscall.SIGKILL)
}

func (c *Conn) signal(sig syscall.Signal) {
	c.sigMu.Lock()
	defer c.sigMu.Unlock()
	if c.reaped {
		return
	}
	if err := signalGroup(c.cmd.Process, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
		c.b().log.Warn("stdio_signal_failed", "signal", sig.String(), "error", err)
	}
}

func (c *Conn) closeStdin() {
	c.stdinOnce.Do(func() {
		c.stdinClosed.Store(true)
		_ = c.stdin.Close()
	})
}

// wait reaps the process and ends the Conn.
func (c *Conn) wait() {
	if waitNoReap(c.pid) {
		// The leader is a zombie: its group id is still ours. Kill what is
		// left of the group (helpers it started) so nothing outlives it.
		c.sigMu.Lock()
		_ = signalGroup(c.cmd.Process, syscall.SIGKILL)
		c.reaped = true
		c.sigMu.Unlock()
		_ = c.cmd.Wait()
	} else {
		_ = c.cmd.Wait()
		c.sigMu.Lock()
		c.reaped = true
		c.sigMu.Unlock()
	}
	if c.rec != nil {
		c.rec.Ended(c.proc)
	}
	if err := c.caps.ended(c); err != nil {
		c.mu.Lock()
		if c.broken == nil {
			c.broken = err
		}
		c.mu.Unlock()
	}
	close(c.dead)
	c.closeStdin()

	// Let the readers take what the process wrote before it exited.
	// Closing a pipe unblocks its reader.
	t := time.AfterFunc(drainTimeout, func() {
		_ = c.stdout.Close()
		_ = c.stderr.Close()
	})
	<-c.stdoutDone
	<-c.stderrDone
	t.Stop()
	c.finish()
}

// ExitError is how a Conn reports the end of its process. It wraps
// upstream.ErrClosed.
type ExitError struct {
	Pid int
	// State is the reaped process's state (exit status or signal).
	State *os.ProcessState
	// LastStderr is the last line the process wrote to stderr.
	LastStderr string
	// Cause is why mcpgate killed the process, nil if it exited by itself.
	Cause error
}

func (e *ExitError) Error() string {
	var b strings.Builder
	b.WriteString(upstream.ErrClosed.Error())
	b.WriteString(": stdio process ")
	b.WriteString(strconv.Itoa(e.Pid))
	if e.Cause != nil {
		b.WriteString(" killed: ")
		b.WriteString(e.Cause.Error())
		b.WriteString(";")
	}
	b.WriteString(" ")
	if e.State != nil {
		b.WriteString(e.State.String())
	} else {
		b.WriteString("ended")
	}
	if e.LastStderr != "" {
		b.WriteString("; last stderr: ")
		b.WriteString(strconv.Quote(e.LastStderr))
	}
	return b.String()
}

func (e *ExitError) Unwrap() []error {
	if e.Cause != nil {
		return []error{upstream.ErrClosed, e.Cause}
	}
	return []error{upstream.ErrClosed}
}

func (c *Conn) finish() {
	last := ""
	if p := c.lastStderr.Load(); p != nil {
		last = *p
	}
	c.mu.Lock()
	err := &ExitError{Pid: c.pid, State: c.cmd.ProcessState, LastStderr: last, Cause: c.broken}
	calls := make([]*call, 0, len(c.Pending))
	for _, cl := range c.Pending {
		calls = append(calls, cl)
	}
	for _, cl := range calls {
		c.unregisterLocked(cl)
	}
	c.ended, c.endErr = true, err
	report := !c.closing
	c.mu.Unlock()

	for _, cl := range calls {
		cl.complete(nil, err)
	}
	status := "unknown"
	if c.cmd.ProcessState != nil {
		status = c.cmd.ProcessState.String()
	}
	if report {
		c.b().log.Warn("stdio_exited", "exit_status", status, "last_stderr", last, "error", err)
		c.b().sink.Closed(err)
	} else {
		c.b().log.Info("stdio_exited", "exit_status", status)
	}
	close(c.finished)
}

func (c *Conn) closedErrLocked() error {
	switch {
	case c.endErr != nil:
		return c.endErr
	case c.closing:
		return fmt.Errorf("%w: closed by the gateway", upstream.ErrClosed)
	}
	return fmt.Errorf("%w: stdio process %d is ending", upstream.ErrClosed, c.pid)
}

var (
	bufPool = sync.Pool{New: func() any { return new(bytes.Buffer) }}
	newline = []byte{'\n'}
)

// write sends one message and its newline. It returns how many bytes
// reached the pipe: 0 with an error means the message was not sent at all.
// A message cut by the write deadline leaves the stream unusable, so the
// process is killed.
func (c *Conn) write(ctx context.Context, raw []byte) (int, error) {
	select {
	case c.wsem <- struct{}{}:
	case <-ctx.Done():
		return 0, ctx.Err()
	case <-c.dead:
		return 0, c.closedErr()
	}
	defer func() { <-c.wsem }()
	if c.stdinClosed.Load() {
		return 0, c.closedErr()
	}
	if d, ok := ctx.Deadline(); ok {
		_ = c.stdin.SetWriteDeadline(d)
		defer func() { _ = c.stdin.SetWriteDeadline(time.Time{}) }()
	}

	var n, total int
	var err error
	switch {
	case bytes.IndexByte(raw, '\n') >= 0 || bytes.IndexByte(raw, '\r') >= 0:
		// A client may send pretty-printed JSON; a line must be one message.
		buf := bufPool.Get().(*bytes.Buffer)
		buf.Reset()
		if cerr := json.Compact(buf, raw); cerr != nil {
			bufPool.Put(buf)
			return 0, fmt.Errorf("stdio: message is not valid JSON: %w", cerr)
		}
		buf.WriteByte('\n')
		total = buf.Len()
		n, err = c.stdin.Write(buf.Bytes())
		putBuf(buf)
	case len(raw) <= copyMax:
		buf := bufPool.Get().(*bytes.Buffer)
		buf.Reset()
		buf.Write(raw)
		buf.WriteByte('\n')
		total = buf.Len()
		n, err = c.stdin.Write(buf.Bytes())
		putBuf(buf)
	default:
		total = len(raw) + 1
		n, err = c.stdin.Write(raw)
		if err == nil {
			var m int
			m, err = c.stdin.Write(newline)
			n += m
		}
	}
	if err == nil {
		return n, nil
	}
	switch {
	case n > 0:
		c.breakProcess(fmt.Errorf("write to stdin cut after %d of %d bytes: %w", n, total, err))
		return n, fmt.Errorf("%w: write to stdin: %v", upstream.ErrClosed, err)
	case errors.Is(err, os.ErrDeadlineExceeded):
		return 0, fmt.Errorf("stdio: write to stdin: %w", context.DeadlineExceeded)
	}
	return 0, fmt.Errorf("%w: write to stdin: %v", upstream.ErrClosed, err)
}

func putBuf(b *bytes.Buffer) {
	if b.Cap() <= 4*copyMax {
		bufPool.Put(b)
	}
}

func (c *Conn) closedErr() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closedErrLocked()
}

// readStdout reads one message per line and routes it.
func (c *Conn) readStdout() {
	defer close(c.stdoutDone)
	defer c.stdout.Close()
	sc := bufio.NewScanner(c.stdout)
	// Room for the line ending (CR LF), which does not count.
	sc.Buffer(make([]byte, 0, min(16<<10, c.maxLine+2)), c.maxLine+2)
	var err error
	for sc.Scan() {
		line := sc.Bytes()
		if len(line) > c.maxLine {
			err = bufio.ErrTooLong
			break
		}
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		c.dispatch(bytes.Clone(line))
	}
	if err == nil {
		err = sc.Err()
	}
	switch {
	case errors.Is(err, bufio.ErrTooLong):
		c.breakProcess(fmt.Errorf("a message on stdout exceeds max_message_bytes (%d)", c.maxLine))
	case err != nil && !errors.Is(err, os.ErrClosed):
		c.b().log.Warn("stdio_stdout_error", "error", err)
		c.shutdown()
	default:
		// EOF: the process closed its stdout, which ends the session.
		c.shutdown()
	}
}

func (c *Conn) dispatch(line []byte) {
	now := time.Now()
	if core.IsBatch(line) {
		msgs, err := core.DecodeBatch(line)
		if err != nil {
			c.b().log.Warn("stdio_bad_message", "error", err, "line", truncate(line))
			return
		}
		for _, m := range msgs {
			c.route(m, now)
		}
		return
	}
	m, err := core.Decode(line)
	if err != nil {
		c.b().log.Warn("stdio_bad_message", "error", err, "line", truncate(line))
		return
	}
	c.route(m, now)
}

func truncate(b []byte) string {
	if len(b) > maxLoggedLine {
		return string(b[:maxLoggedLine]) + "…"
	}
	return string(b)
}

// route hands a server message to whoever waits for it (see the package
// doc). It runs on the stdout reader, so everything it calls is
// non-blocking by contract.
func (c *Conn) route(m *core.Message, now time.Time) {
	m.Direction = core.ServerToClient
	b := c.b()
	m.Era = b.era
	m.Session = b.sess
	m.Received = now

	if m.Kind.IsResponse() {
		c.mu.Lock()
		cl := c.Pending[m.ID]
		ok := cl != nil && c.unregisterLocked(cl)
		c.mu.Unlock()
		if !ok {
			if m.ID.IsNull() {
				// The process could not read something mcpgate wrote.
				c.b().log.Warn("stdio_error_without_id", "error", truncate(m.Error))
			} else {
				// Typically a late answer to a cancelled request.
				c.b().log.Debug("stdio_unmatched_response", "id", string(m.ID))
			}
			return
		}
		cl.complete(m, nil)
		return
	}

	if m.Method == "notifications/progress" {
		// The decoder read params.progressToken: no second pass here.
		if tok := m.ProgressToken; tok != nil {
			c.mu.Lock()
			cl := c.Tokens[string(tok)]
			gen := genOf(cl)
			c.mu.Unlock()
			if cl != nil && !cl.internal && cl.deliver(m, gen) {
				return
			}
		}
		c.b().sink.Deliver(m)
		return
	}

	// Modern era: a server ends a subscription with notifications/cancelled
	// naming the listen request (the only cancellation a server may send).
	if m.Method == "notifications/cancelled" {
		if id := requestID(m.Params); id != nil {
			c.mu.Lock()
			cl := c.Pending[core.ID(id)]
			gen := genOf(cl)
			c.mu.Unlock()
			if cl != nil && cl.listen && cl.deliver(m, gen) {
				return
			}
		}
	}

	// Modern era: notifications of a subscriptions/listen stream carry
	// the listen request's id.
	if m.Kind == core.KindNotification && bytes.Contains(m.Params, subscriptionKey) {
		if sub := subscriptionID(m.Params); sub != nil {
			c.mu.Lock()
			cl := c.Pending[core.ID(sub)]
			gen := genOf(cl)
			c.mu.Unlock()
			if cl != nil && cl.listen && cl.deliver(m, gen) {
				return
			}
			c.b().sink.Deliver(m)
			return
		}
	}

	var only *call
	c.mu.Lock()
	if c.Clients == 1 {
		for _, cl := range c.Pending {
			if cl.ordinary() {
				only = cl
				break
			}
		}
	}
	gen := genOf(only)
	c.mu.Unlock()
	if only != nil && only.deliver(m, gen) {
		return
	}
	c.b().sink.Deliver(m)
}

var subscriptionKey = []byte(`"` + core.MetaSubscriptionID + `"`)

// requestID reads params.requestId of notifications/cancelled.
func requestID(params []byte) []byte {
	var p map[string]json.RawMessage
	if json.Unmarshal(params, &p) != nil {
		return nil
	}
	return p["requestId"]
}

// subscriptionID reads params._meta["io.modelcontextprotocol/subscriptionId"].
func subscriptionID(params []byte) []byte {
	var p struct {
		Meta map[string]json.RawMessage `json:"_meta"`
	}
	if json.Unmarshal(params, &p) != nil {
		return nil
	}
	return p.Meta[core.MetaSubscriptionID]
}

// readStderr logs each line the process writes to stderr; the spec says
// stderr is for any logging, not only errors, hence info level.
func (c *Conn) readStderr() {
	defer close(c.stderrDone)
	defer c.stderr.Close()
	defer c.reportStderrDropped()
	br := bufio.NewReaderSize(c.stderr, maxStderrLine)
	for {
		line, err := br.ReadSlice('\n')
		truncated := false
		if errors.Is(err, bufio.ErrBufferFull) {
			truncated = true
			s := string(line)
			for errors.Is(err, bufio.ErrBufferFull) {
				_, err = br.ReadSlice('\n')
			}
			c.logStderr(s, truncated)
		} else if len(line) > 0 {
			c.logStderr(string(line), false)
		}
		if err != nil {
			return
		}
	}
}

func (c *Conn) logStderr(s string, truncated bool) {
	s = strings.TrimRight(s, "\r\n")
	if strings.TrimSpace(s) == "" {
		return
	}
	c.lastStderr.Store(&s)
	if !c.stderrLog.Allow() {
		c.stderrDropped++
		return
	}
	c.reportStderrDropped()
	if truncated {
		c.b().log.Info("stdio_stderr", "line", s, "truncated", true)
		return
	}
	c.b().log.Info("stdio_stderr", "line", s)
}

// reportStderrDropped logs how many stderr lines went unlogged since the
// last report.
func (c *Conn) reportStderrDropped() {
	if c.stderrDropped > 0 {
		c.b().log.Warn("stdio_stderr_dropped", "lines", c.stderrDropped, "detail",
			"the process writes to stderr faster than the log takes it: lines were read and not logged")
		c.stderrDropped = 0
	}
}

func randomHex() string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
