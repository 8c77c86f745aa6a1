package audit_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/mcpgate/mcpgate/internal/audit"
	"github.com/mcpgate/mcpgate/internal/core"
	"github.com/mcpgate/mcpgate/internal/metrics"
	"github.com/mcpgate/mcpgate/internal/metrics/metricstest"
	"github.com/mcpgate/mcpgate/internal/pipeline"
)

// memSink keeps what it is given; it can be made to stall (block until
// released) or fail.
type memSink struct {
	mu    sync.Mutex
	lines [][]byte
	stall chan struct{} // Write waits on it while non-nil
	fail  atomic.Bool
	calls atomic.Int64
}

func (s *memSink) Name() string { return "mem" }
func (s *memSink) Key() string  { return "mem" }
func (s *memSink) Write(ctx context.Context, lines [][]byte) error {
	s.calls.Add(1)
	s.mu.Lock()
	stall := s.stall
	s.mu.Unlock()
	if stall != nil {
		select {
		case <-stall:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if s.fail.Load() {
		return errors.New("sink down")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, l := range lines {
		s.lines = append(s.lines, bytes.Clone(l))
	}
	return nil
}
func (s *memSink) Close() error { return nil }

func (s *memSink) records(t *testing.T) []*audit.Record {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*audit.Record, 0, len(s.lines))
	for _, l := range s.lines {
		r, err := audit.Parse(bytes.TrimSuffix(l, []byte("\n")))
		if err != nil {
			t.Fatalf("record %q: %v", l, err)
		}
		out = append(out, r)
	}
	return out
}

// contiguous checks that records are seq from..from+n-1, each chained to
// the one before.
func contiguous(t *testing.T, rs []*audit.Record) {
	t.Helper()
	for i := 1; i < len(rs); i++ {
		if rs[i].Seq != rs[i-1].Seq+1 || rs[i].Prev != rs[i-1].Hash {
			t.Fatalf("record %d: seq %d prev %s after seq %d hash %s", i, rs[i].Seq, rs[i].Prev, rs[i-1].Seq, rs[i-1].Hash)
		}
	}
}

func info(id string) *core.SessionInfo {
	return &core.SessionInfo{ID: id, Route: "r", Era: core.EraLegacy, Principal: "alice", Tenant: "acme"}
}

// decision emits one record through the trail's observer.
func decision(tr *audit.Trail, i int) {
	tr.Observe(context.Background(), &pipeline.Event{Kind: pipeline.Decision, Session: info("s"), Stage: "policy", Policy: "p", Rule: fmt.Sprint(i), Action: "allow"})
}

func newTrail(t *testing.T, o audit.Options) *audit.Trail {
	t.Helper()
	if o.SpoolDir == "" {
		o.SpoolDir = filepath.Join(t.TempDir(), "spool")
	}
	tr, err := audit.New(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tr.Close(context.Background()) })
	return tr
}

func TestParsePath(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ in, want, err string }{
		{in: "params.arguments.password", want: "params.arguments.password"},
		{in: "result.content[*].text", want: "result.content[*].text"},
		{in: "result.content[2].text", want: "result.content[2].text"},
		{in: `params.arguments["api.key"]`, want: `params.arguments["api.key"]`},
		{in: "params", err: "name a member inside params"},
		{in: "body.x", err: "starting with params, result or error"},
		{in: "params..x", err: "empty member name"},
		{in: "params.x[", err: "unterminated ["},
		{in: "params.x[01]", err: "want [*] or [N]"},
		{in: "params.x]", err: "unexpected"},
		{in: `params["x`, err: "unterminated"},
	} {
		t.Run(tc.in, func(t *testing.T) {
			p, err := audit.ParsePath(tc.in)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil || p.String() != tc.want {
				t.Fatalf("got %q, %v; want %q", p.String(), err, tc.want)
			}
		})
	}
}

// TestRedaction records a call and its result through the stage with
// paths and patterns, and checks what reaches the sink.
func TestRedaction(t *testing.T) {
	t.Parallel()
	sink := &memSink{}
	tr := newTrail(t, audit.Options{
		Payloads:    true,
		RedactPaths: []string{"params.arguments.password", "result.content[*].text"},
		Scrubbers:   []audit.Scrubber{audit.Patterns(regexp.MustCompile(`(?i)bearer [a-z0-9._-]+`))},
		Sinks:       []audit.SinkOptions{{Sink: sink}},
	})
	req, err := core.Decode([]byte(`{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"login","arguments":{"user":"bob","password":"hunter2","note":"token Bearer abc.DEF-1 here","n":12345678901234567890}}}`))
	if err != nil {
		t.Fatal(err)
	}
	req.Session = info("sid")
	stage := tr.Stage("r")
	h := stage.Interceptor(func(ctx context.Context, m *core.Message) (*core.Message, error) {
		return core.Decode([]byte("{\"jsonrpc\":\"2.0\",\"id\":7,\"result\":{\"content\":[{\"type\":\"text\",\"text\":\"secret one\"},{\"type\":\"text\",\"text\":\"two\"}],\n\"isError\":false}}"))
	})
	if _, err := h(context.Background(), req); err != nil {
		t.Fatal(err)
	}
	if err := tr.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	rs := sink.records(t)
	if len(rs) != 4 { // started, request, response, stopped
		t.Fatalf("%d records", len(rs))
	}
	if got, want := string(rs[1].Params), `{"arguments":{"n":12345678901234567890,"note":"token [REDACTED] here","password":"[REDACTED]","user":"bob"},"name":"login"}`; got != want {
		t.Errorf("params\n got %s\nwant %s", got, want)
	}
	if got, want := string(rs[2].Result), `{"content":[{"text":"[REDACTED]","type":"text"},{"text":"[REDACTED]","type":"text"}],"isError":false}`; got != want {
		t.Errorf("result\n got %s\nwant %s", got, want)
	}
	if rs[1].Tool != "login" || rs[2].Tool != "login" || rs[2].Outcome != "ok" || rs[2].Direction != "server_to_client" || rs[2].RPCID != "7" {
		t.Errorf("response record: %+v", rs[2])
	}
	if rs[1].Session != core.Fingerprint("sid") || strings.Contains(string(sink.lines[1]), `"sid"`) {
		t.Errorf("session %q: want the fingerprint, never the id", rs[1].Session)
	}
	for _, l := range sink.lines {
		if bytes.Contains(l, []byte("hunter2")) || bytes.Contains(l, []byte("abc.DEF")) || bytes.Contains(l, []byte("secret one")) {
			t.Errorf("a secret reached the sink: %s", l)
		}
	}
}

// TestTruncation records a payload past max_payload_bytes as its size,
// hash and beginning.
func TestTruncation(t *testing.T) {
	t.Parallel()
	sink := &memSink{}
	tr := newTrail(t, audit.Options{Payloads: true, MaxPayloadBytes: 64, Sinks: []audit.SinkOptions{{Sink: sink}}})
	long := strings.Repeat("é", 100)
	m, err := core.Decode([]byte(`{"jsonrpc":"2.0","method":"notifications/message","params":{"data":"` + long + `"}}`))
	if err != nil {
		t.Fatal(err)
	}
	m.Direction = core.ServerToClient
	h := tr.Stage("r").Interceptor(func(context.Context, *core.Message) (*core.Message, error) { return nil, nil })
	_, _ = h(context.Background(), m)
	_ = tr.Close(context.Background())
	r := sink.records(t)[1]
	if r.Params != nil || r.Truncated == nil || r.Truncated.Member != "params" || r.Truncated.Size != len(m.Params) || len(r.Truncated.Head) > 64 || len(r.Truncated.SHA256) != 64 {
		t.Fatalf("truncated record: %+v %+v", r, r.Truncated)
	}
}

// writeTrail writes n decision records to a file sink and returns the
// file's path.
func writeTrail(t *testing.T, n int) string {
	t.Helper()
	dir := t.TempDir()
	path := filepath.Join(dir, "audit.jsonl")
	fs, err := audit.NewFileSink(audit.FileOptions{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	tr, err := audit.New(audit.Options{Sinks: []audit.SinkOptions{{Sink: fs}}, SpoolDir: filepath.Join(dir, "spool")})
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		decision(tr, i)
	}
	if err := tr.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	return path
}

func readLines(t *testing.T, path string) []string {
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.SplitAfter(strings.TrimSuffix(string(b), "\n"), "\n")
}

// TestVerify checks an intact trail and each kind of break.
func TestVerify(t *testing.T) {
	t.Parallel()
	path := writeTrail(t, 8) // started, 8 decisions, stopped: seq 1..10
	sum, err := audit.Verify([]string{path})
	if err != nil || sum.Records != 10 || sum.First != 1 || sum.Last != 10 || sum.Anchor != "" {
		t.Fatalf("intact: %+v, %v", sum, err)
	}
	lines := readLines(t, path)
	for _, tc := range []struct {
		name   string
		change func([]string) []string
		what   string
		line   int
	}{
		{"edited", func(l []string) []string { l[4] = strings.Replace(l[4], `"alice"`, `"mallory"`, 1); return l }, "edited", 5},
		{"dropped", func(l []string) []string { return append(l[:4], l[5:]...) }, "dropped", 5},
		{"reordered", func(l []string) []string { l[4], l[5] = l[5], l[4]; return l }, "reordered", 5},
		{"moved back", func(l []string) []string {
			return append(append(append([]string{}, l[:3]...), l[5], l[3], l[4]), l[6:]...)
		}, "reordered", 4},
		{"duplicated", func(l []string) []string { return append(append(append([]string{}, l[:5]...), l[4]), l[5:]...) }, "reordered", 6},
		{"truncated", func(l []string) []string { l[9] = l[9][:len(l[9])/2]; return l }, "truncated", 10},
		{"newline lost", func(l []string) []string { l[9] = strings.TrimSuffix(l[9], "\n"); return l }, "truncated", 10},
		{"forged prev", func(l []string) []string {
			// A record rewritten whole, with a fresh hash but the seq of
			// the one it replaced.
			r, _ := audit.Parse([]byte(strings.TrimSuffix(l[4], "\n")))
			l[4] = reseal(t, strings.TrimSuffix(l[4], "\n"), r.Prev, strings.Repeat("0", 64)) + "\n"
			return l
		}, "edited", 5},
		{"garbage", func(l []string) []string { l[2] = "not json\n"; return l }, "malformed", 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p := filepath.Join(t.TempDir(), "audit.jsonl")
			if err := os.WriteFile(p, []byte(strings.Join(tc.change(append([]string{}, lines...)), "")), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := audit.Verify([]string{p})
			var b *audit.Broken
			if !errors.As(err, &b) {
				t.Fatalf("err %v, want *Broken", err)
			}
			if b.What != tc.what || b.Line != tc.line {
				t.Fatalf("got %s at line %d (%v), want %s at line %d", b.What, b.Line, err, tc.what, tc.line)
			}
		})
	}
}

// reseal replaces prev in a record line and computes its hash again, as
// a forger would.
func reseal(t *testing.T, line, oldPrev, newPrev string) string {
	t.Helper()
	body := line[:len(line)-75] + "}"
	body = strings.Replace(body, `"prev":"`+oldPrev+`"`, `"prev":"`+newPrev+`"`, 1)
	return audit.SealForTest(body)
}

// TestChainAcrossRestarts: a second trail on the same file continues the
// first one's chain, and a third after the file rotated continues it too.
func TestChainAcrossRestarts(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "audit.jsonl")
	for run := range 3 {
		fs, err := audit.NewFileSink(audit.FileOptions{Path: path, MaxSize: 4 << 10, MaxFiles: -1})
		if err != nil {
			t.Fatal(err)
		}
		tr, err := audit.New(audit.Options{Sinks: []audit.SinkOptions{{Sink: fs}}, SpoolDir: filepath.Join(dir, "spool")})
		if err != nil {
			t.Fatal(err)
		}
		for i := range 20 {
			decision(tr, run*100+i)
		}
		if err := tr.Close(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	files, _ := filepath.Glob(filepath.Join(dir, "audit*.jsonl"))
	if len(files) < 3 {
		t.Fatalf("want rotation, got %v", files)
	}
	sum, err := audit.Verify(files)
	if err != nil || sum.Records != 3*22 || sum.Anchor != "" {
		t.Fatalf("%+v, %v", sum, err)
	}
	// Rotated files in any order on the command line.
	rev := append([]string{}, files...)
	for i, j := 0, len(rev)-1; i < j; i, j = i+1, j-1 {
		rev[i], rev[j] = rev[j], rev[i]
	}
	if sum2, err := audit.Verify(rev); err != nil || sum2 != sum {
		t.Fatalf("reversed: %+v, %v", sum2, err)
	}
	// A file left out in the middle is a gap.
	if len(files) >= 3 {
		_, err := audit.Verify(append([]string{files[0]}, files[2:]...))
		var b *audit.Broken
		if !errors.As(err, &b) || b.What != "dropped" {
			t.Fatalf("gap: %v", err)
		}
	}
}

// TestRotationUnderLoad writes from many goroutines through a file sink
// that rotates every few KiB and keeps every file: nothing is lost, the
// chain verifies across all of them.
func TestRotationUnderLoad(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	fs, err := audit.NewFileSink(audit.FileOptions{Path: filepath.Join(dir, "a.jsonl"), MaxSize: 16 << 10, MaxFiles: -1, Fsync: audit.FsyncNever})
	if err != nil {
		t.Fatal(err)
	}
	tr := newTrail(t, audit.Options{Sinks: []audit.SinkOptions{{Sink: fs}}, Buffer: 64, SpoolDir: filepath.Join(dir, "spool")})
	const workers, each = 8, 500
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				decision(tr, w*each+i)
			}
		})
	}
	wg.Wait()
	if err := tr.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob(filepath.Join(dir, "a*.jsonl"))
	if len(files) < 10 {
		t.Fatalf("only %d files", len(files))
	}
	sum, err := audit.Verify(files)
	if err != nil || sum.Records != workers*each+2 {
		t.Fatalf("%+v, %v", sum, err)
	}
	for _, f := range files {
		if st, _ := os.Stat(f); st.Size() > 16<<10 {
			t.Errorf("%s: %d bytes, past max_size", f, st.Size())
		}
	}
}

// TestMaxFiles removes the oldest rotated files; what remains verifies
// from its anchor.
func TestMaxFiles(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	fs, err := audit.NewFileSink(audit.FileOptions{Path: filepath.Join(dir, "a.jsonl"), MaxSize: 4 << 10, MaxFiles: 3})
	if err != nil {
		t.Fatal(err)
	}
	tr := newTrail(t, audit.Options{Sinks: []audit.SinkOptions{{Sink: fs}}, SpoolDir: filepath.Join(dir, "spool")})
	for i := range 300 {
		decision(tr, i)
	}
	_ = tr.Close(context.Background())
	files, _ := filepath.Glob(filepath.Join(dir, "a*.jsonl"))
	if len(files) != 3 {
		t.Fatalf("%d files: %v", len(files), files)
	}
	sum, err := audit.Verify(files)
	if err != nil || sum.Anchor == "" || sum.Last != 302 {
		t.Fatalf("%+v, %v", sum, err)
	}
}

// TestStalledSink: a sink that takes nothing holds back neither the data
// plane nor another sink; once it moves, it gets every record, in order,
// from memory and then from its spool.
func TestStalledSink(t *testing.T) {
	t.Parallel()
	stalled := &memSink{stall: make(chan struct{})}
	fast := &memSink{}
	reg := metrics.New()
	tr := newTrail(t, audit.Options{Sinks: []audit.SinkOptions{{Sink: stalled}, {Sink: fast}}, Buffer: 16, Metrics: reg})
	const n = 2000
	done := make(chan struct{})
	go func() {
		for i := range n {
			decision(tr, i)
		}
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("the data plane waited for a stalled sink")
	}
	fam, err := metricstest.Gather(reg)
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := fam.Value("mcpgate_audit_backlog", "sink", "mem"); v < n-16-2 {
		t.Errorf("backlog of the stalled sink %v", v)
	}
	stalled.mu.Lock()
	close(stalled.stall)
	stalled.stall = nil
	stalled.mu.Unlock()
	if err := tr.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, s := range []*memSink{stalled, fast} {
		rs := s.records(t)
		if len(rs) != n+2 {
			t.Fatalf("%d records, want %d", len(rs), n+2)
		}
		contiguous(t, rs)
	}
	fam, _ = metricstest.Gather(reg)
	if v, _ := fam.Value("mcpgate_audit_records_total", "sink", "mem-2"); v != n+2 {
		t.Errorf("records_total %v", v)
	}
	if v, _ := fam.Value("mcpgate_audit_backlog", "sink", "mem"); v != 0 {
		t.Errorf("backlog %v after delivery", v)
	}
}

// TestHTTPSinkFailsThenRecovers: a collector that answers 503 for a while
// gets every record once it recovers, in order, none twice.
func TestHTTPSinkFailsThenRecovers(t *testing.T) {
	t.Parallel()
	var (
		mu      sync.Mutex
		got     []string
		failing atomic.Bool
		failed  = make(chan struct{}, 1)
	)
	failing.Store(true)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer collector-token" || r.Header.Get("Content-Type") != "application/x-ndjson" {
			http.Error(w, "bad request", http.StatusBadRequest)
			return
		}
		body, _ := io.ReadAll(r.Body)
		if failing.Load() {
			select {
			case failed <- struct{}{}:
			default:
			}
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		mu.Lock()
		got = append(got, strings.SplitAfter(strings.TrimSuffix(string(body), "\n"), "\n")...)
		mu.Unlock()
	}))
	defer srv.Close()
	hs := audit.NewHTTPSink(audit.HTTPOptions{URL: srv.URL, Header: http.Header{"Authorization": {"Bearer collector-token"}}, Batch: 50, Flush: 10 * time.Millisecond})
	tr := newTrail(t, audit.Options{Sinks: []audit.SinkOptions{{Sink: hs, Batch: 50, Flush: 10 * time.Millisecond}}, Buffer: 100})
	for i := range 500 { // past the buffer: most spool
		decision(tr, i)
	}
	<-failed
	failing.Store(false)
	if err := tr.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	rs := make([]*audit.Record, len(got))
	for i, l := range got {
		r, err := audit.Parse([]byte(strings.TrimSuffix(l, "\n")))
		if err != nil {
			t.Fatal(err)
		}
		rs[i] = r
	}
	if len(rs) != 502 || rs[0].Seq != 1 {
		t.Fatalf("%d records from seq %d", len(rs), rs[0].Seq)
	}
	contiguous(t, rs)
}

// TestSpoolKeptAcrossRestart: records a sink could not take before
// shutdown wait in its spool and reach it after the next start, before
// the new ones.
func TestSpoolKeptAcrossRestart(t *testing.T) {
	t.Parallel()
	spool := filepath.Join(t.TempDir(), "spool")
	down := &memSink{}
	down.fail.Store(true)
	tr, err := audit.New(audit.Options{Sinks: []audit.SinkOptions{{Sink: down}}, Buffer: 10, SpoolDir: spool})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 50 {
		decision(tr, i)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	_ = tr.Close(ctx)
	cancel()
	if n := len(down.records(t)); n != 0 {
		t.Fatalf("a failing sink took %d", n)
	}
	up := &memSink{}
	tr2 := newTrail(t, audit.Options{Sinks: []audit.SinkOptions{{Sink: up}}, Buffer: 10, SpoolDir: spool})
	decision(tr2, 99)
	if err := tr2.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	rs := up.records(t)
	if len(rs) != 52+3 || rs[0].Seq != 1 || rs[0].Event != "started" {
		t.Fatalf("%d records from %+v", len(rs), rs[0])
	}
	contiguous(t, rs)
}

// TestSpoolDiskFull: when the spool cannot be written, records past the
// buffer are dropped and counted; the sink still gets the rest in order.
func TestSpoolDiskFull(t *testing.T) {
	t.Parallel()
	if _, err := os.Stat("/dev/full"); err != nil {
		t.Skip("no /dev/full")
	}
	spool := filepath.Join(t.TempDir(), "spool")
	if err := os.MkdirAll(spool, 0o700); err != nil {
		t.Fatal(err)
	}
	// The spool's name is the sink's name and a hash of its key.
	if err := os.Symlink("/dev/full", filepath.Join(spool, audit.SpoolNameForTest("mem", "mem"))); err != nil {
		t.Fatal(err)
	}
	stalled := &memSink{stall: make(chan struct{})}
	reg := metrics.New()
	tr := newTrail(t, audit.Options{Sinks: []audit.SinkOptions{{Sink: stalled}}, Buffer: 5, SpoolDir: spool, Metrics: reg})
	for i := range 40 {
		decision(tr, i)
	}
	stalled.mu.Lock()
	close(stalled.stall)
	stalled.stall = nil
	stalled.mu.Unlock()
	_ = tr.Close(context.Background())
	fam, _ := metricstest.Gather(reg)
	dropped, _ := fam.Value("mcpgate_audit_dropped_total", "sink", "mem")
	// started + 40: the sink held one batch in hand and the buffer 5;
	// the rest went to the spool, which could not be written.
	if dropped < 41-5-2 || dropped > 41-5+1 {
		t.Fatalf("dropped %v", dropped)
	}
	rs := stalled.records(t)
	if len(rs)+int(dropped) != 42 {
		t.Fatalf("%d delivered + %v dropped", len(rs), dropped)
	}
	for i := 1; i < len(rs); i++ {
		if rs[i].Seq <= rs[i-1].Seq {
			t.Fatalf("out of order at %d", i)
		}
	}
}

// TestStageRecords checks the records of an exchange, a notification, an
// error answer and a refusal, field by field.
func TestStageRecords(t *testing.T) {
	t.Parallel()
	sink := &memSink{}
	tr := newTrail(t, audit.Options{Sinks: []audit.SinkOptions{{Sink: sink}}})
	st := tr.Stage("r")
	h := st.Interceptor(func(ctx context.Context, m *core.Message) (*core.Message, error) {
		return nil, core.NewError(core.CodeInvalidParams, "bad")
	})
	req, _ := core.Decode([]byte(`{"jsonrpc":"2.0","id":"a","method":"resources/read","params":{"uri":"file:///x"}}`))
	req.Session = info("s1")
	_, _ = h(context.Background(), req)
	st.Observe(context.Background(), &pipeline.Event{Kind: pipeline.Refused, Check: "auth"}) // not the stage's: Refused is the gateway's
	tr.Observe(context.Background(), &pipeline.Event{Kind: pipeline.Refused, Route: "r", Check: pipeline.CheckAuth, HTTPMethod: "POST", RemoteAddr: "127.0.0.1:1",
		Err: core.NewError(core.CodeUnauthorized, "no token").WithStatus(401)})
	hooks := tr.Hooks()
	hooks.Created(info("s1"))
	hooks.Ended(info("s1"), "deleted")
	_ = tr.Close(context.Background())
	rs := sink.records(t)
	type row struct{ Kind, Event, Dir, Type, Method, Resource, Outcome, Check, Reason string }
	var got []row
	for _, r := range rs {
		got = append(got, row{r.Kind, r.Event, r.Direction, r.Type, r.Method, r.Resource, r.Outcome, r.Check, r.Reason})
	}
	want := []row{
		{Kind: "trail", Event: "started"},
		{Kind: "message", Dir: "client_to_server", Type: "request", Method: "resources/read", Resource: "file:///x"},
		{Kind: "message", Dir: "server_to_client", Type: "error", Method: "resources/read", Resource: "file:///x", Outcome: "error"},
		{Kind: "refused", Method: "POST", Outcome: "refused", Check: "auth", Reason: "no token"},
		{Kind: "session", Event: "created"},
		{Kind: "session", Event: "ended", Reason: "deleted"},
		{Kind: "trail", Event: "stopped"},
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Fatalf("records (-want +got):\n%s", d)
	}
	if rs[2].Code != core.CodeInvalidParams || rs[3].Status != 401 || rs[3].Code != core.CodeUnauthorized {
		t.Errorf("codes: %+v %+v", rs[2], rs[3])
	}
}

// TestPartialLineAfterCrash: a file that ends inside a record (power
// lost mid-write) is rotated away untouched, so verify names the
// truncated record, and the new file chains on from the last whole one.
func TestPartialLineAfterCrash(t *testing.T) {
	t.Parallel()
	path := writeTrail(t, 3) // seq 1..5
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = f.WriteString(`{"seq":6,"time":"2026-`)
	_ = f.Close()
	dir := filepath.Dir(path)
	fs, err := audit.NewFileSink(audit.FileOptions{Path: path, MaxFiles: -1})
	if err != nil {
		t.Fatal(err)
	}
	tr, err := audit.New(audit.Options{Sinks: []audit.SinkOptions{{Sink: fs}}, SpoolDir: filepath.Join(dir, "spool")})
	if err != nil {
		t.Fatal(err)
	}
	decision(tr, 9)
	_ = tr.Close(context.Background())
	files, _ := filepath.Glob(filepath.Join(dir, "audit*.jsonl"))
	if len(files) != 2 {
		t.Fatalf("files %v", files)
	}
	_, err = audit.Verify(files)
	var b *audit.Broken
	if !errors.As(err, &b) || b.What != "truncated" || b.Line != 6 {
		t.Fatalf("verify: %v", err)
	}
	sum, err := audit.Verify([]string{path})
	if err != nil || sum.First != 6 || sum.Records != 3 {
		t.Fatalf("new file: %+v %v", sum, err)
	}
}
