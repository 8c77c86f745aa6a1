package credentials

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/mcpgate/mcpgate/internal/core"
	"github.com/mcpgate/mcpgate/internal/upstream"
)

func sess(principal string) *core.SessionInfo {
	return &core.SessionInfo{ID: "s-" + principal, Principal: principal}
}

func writeSecrets(t *testing.T, path, body string, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, []byte(body), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
}

// wantRefused fails unless err is the gateway's refusal for a missing
// credential: 403, -32016, marked ErrCredential, naming what is missing.
func wantRefused(t *testing.T, err error, mentions string) {
	t.Helper()
	var e *core.Error
	if !errors.As(err, &e) || e.Code != core.CodeNoCredential || e.HTTPStatus() != http.StatusForbidden || !errors.Is(err, upstream.ErrCredential) {
		t.Fatalf("err = %v; want 403 with code %d", err, core.CodeNoCredential)
	}
	if !strings.Contains(e.Message, mentions) {
		t.Errorf("message %q does not mention %q", e.Message, mentions)
	}
}

// logs records log messages.
type logs struct {
	mu   sync.Mutex
	msgs []string
}

func (l *logs) Enabled(context.Context, slog.Level) bool { return true }
func (l *logs) Handle(_ context.Context, r slog.Record) error {
	var b strings.Builder
	b.WriteString(r.Message)
	r.Attrs(func(a slog.Attr) bool { fmt.Fprintf(&b, " %s=%v", a.Key, a.Value); return true })
	l.mu.Lock()
	l.msgs = append(l.msgs, b.String())
	l.mu.Unlock()
	return nil
}
func (l *logs) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *logs) WithGroup(string) slog.Handler      { return l }
func (l *logs) count(prefix string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, m := range l.msgs {
		if strings.HasPrefix(m, prefix) {
			n++
		}
	}
	return n
}
func (l *logs) text() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.msgs, "\n")
}

func TestPerPrincipal(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "github.yaml")
	writeSecrets(t, path, "user:alice: a-secret\nuser:bob: b-secret\n", 0o600)
	s, err := New(Options{Route: "github", Name: "authorization", PerPrincipal: &PerPrincipal{File: path, Format: "Bearer {secret}"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if s.Name() != "Authorization" {
		t.Errorf("Name = %q, want the canonical header", s.Name())
	}
	ctx := context.Background()
	for p, want := range map[string]string{"user:alice": "Bearer a-secret", "user:bob": "Bearer b-secret"} {
		if v, err := s.Value(ctx, sess(p)); err != nil || v != want {
			t.Errorf("Value(%s) = %q, %v; want %q", p, v, err, want)
		}
	}
	_, err = s.Value(ctx, sess("user:carol"))
	wantRefused(t, err, "no Authorization credential for your principal")
	_, err = s.Value(ctx, sess("anonymous"))
	wantRefused(t, err, "not authenticated")
	// No session (a probe): the caller in ctx names the principal.
	cctx := upstream.WithCaller(ctx, &upstream.Caller{Principal: "user:bob"})
	if v, err := s.Value(cctx, nil); err != nil || v != "Bearer b-secret" {
		t.Errorf("Value(caller bob) = %q, %v", v, err)
	}
	// The session's principal wins over a caller in ctx.
	if v, _ := s.Value(cctx, sess("user:alice")); v != "Bearer a-secret" {
		t.Errorf("Value(alice's session, bob in ctx) = %q", v)
	}
}

func TestFallbackStatic(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "s.yaml")
	writeSecrets(t, path, "user:alice: a-secret\n", 0o600)
	static := "static-token"
	s, err := New(Options{Route: "r", Name: "GITHUB_TOKEN", Env: true, PerPrincipal: &PerPrincipal{File: path}, Static: &static}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if s.Name() != "GITHUB_TOKEN" {
		t.Errorf("Name = %q: an environment variable keeps its name", s.Name())
	}
	for p, want := range map[string]string{"user:alice": "a-secret", "user:carol": "static-token", "anonymous": "static-token"} {
		if v, err := s.Value(context.Background(), sess(p)); err != nil || v != want {
			t.Errorf("Value(%s) = %q, %v; want %q", p, v, err, want)
		}
	}
}

func TestSecretsFileChecks(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cases := map[string]struct {
		body string
		mode os.FileMode
		want string
	}{
		"readable by the group": {"a: b\n", 0o640, "mode 0640 lets other users read the secrets"},
		"readable by all":       {"a: b\n", 0o644, "want 0600 or stricter"},
		"not a mapping":         {"- a\n- b\n", 0o600, "line 1: want a mapping of principals to secrets"},
		"empty secret":          {"a: \"\"\n", 0o600, "line 1: want a secret"},
		"listed twice":          {"a: b\nc: d\na: e\n", 0o600, "line 3: principal listed twice"},
		"not YAML":              {"a: [\n", 0o600, "not YAML"},
	}
	for name, tc := range cases {
		path := filepath.Join(dir, strings.ReplaceAll(name, " ", "-"))
		writeSecrets(t, path, tc.body, tc.mode)
		_, err := New(Options{Route: "r", Name: "X-Key", PerPrincipal: &PerPrincipal{File: path}}, nil)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v; want %q", name, err, tc.want)
		}
		if err != nil && strings.Contains(err.Error(), "b\n") {
			t.Errorf("%s: the error shows the file's content: %v", name, err)
		}
	}
	if _, err := New(Options{Route: "r", Name: "X-Key", PerPrincipal: &PerPrincipal{File: filepath.Join(dir, "absent")}}, nil); err == nil {
		t.Error("a missing file was accepted")
	}
	if os.Geteuid() == 0 {
		path := filepath.Join(dir, "theirs")
		writeSecrets(t, path, "a: b\n", 0o600)
		if err := os.Chown(path, 4242, 4242); err != nil {
			t.Fatal(err)
		}
		if _, err := New(Options{Route: "r", Name: "X-Key", PerPrincipal: &PerPrincipal{File: path}}, nil); err == nil || !strings.Contains(err.Error(), "owned by uid 4242") {
			t.Errorf("a file of another user: %v", err)
		}
	}
}

// TestSecretsReload: a change is picked up (looked for at most once a
// second); a change that does not load keeps the table in force and is
// logged once.
func TestSecretsReload(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "s.yaml")
		writeSecrets(t, path, "user:alice: one\n", 0o600)
		l := &logs{}
		s, err := New(Options{Route: "r", Name: "X-Key", PerPrincipal: &PerPrincipal{File: path}}, slog.New(l))
		if err != nil {
			t.Fatal(err)
		}
		value := func(p string) string {
			v, _ := s.Value(context.Background(), sess(p))
			return v
		}
		writeSecrets(t, path, "user:alice: two\nuser:bob: three\n", 0o600)
		if v := value("user:alice"); v != "one" {
			t.Errorf("within a second of the last look: %q, want the old table", v)
		}
		time.Sleep(recheck)
		if v := value("user:alice"); v != "two" || value("user:bob") != "three" {
			t.Errorf("after the change: alice %q bob %q", v, value("user:bob"))
		}
		for i, bad := range []struct {
			body string
			mode os.FileMode
		}{{"user:alice: [broken\n", 0o600}, {"user:alice: four\n", 0o644}} {
			writeSecrets(t, path, bad.body, bad.mode)
			for range 3 {
				time.Sleep(recheck)
				if v := value("user:alice"); v != "two" {
					t.Fatalf("after a bad change: %q, want the table in force", v)
				}
			}
			if n := l.count("credentials_reload_failed"); n != i+1 {
				t.Errorf("credentials_reload_failed logged %d times after %d bad changes\n%s", n, i+1, l.text())
			}
		}
		if strings.Contains(l.text(), "four") || strings.Contains(l.text(), "broken") {
			t.Errorf("a secret reached the log:\n%s", l.text())
		}
	})
}

// tokenService is an RFC 8693 token endpoint: it checks the request and
// issues "issued-<subject>-<n>".
type tokenService struct {
	t         *testing.T
	expiresIn int
	calls     atomic.Int32
	// refuse answers with this OAuth error code (and fail with status).
	refuse string
	status int
	gate   chan struct{} // when set, each exchange waits for it
}

func (ts *tokenService) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	n := ts.calls.Add(1)
	if ts.gate != nil {
		<-ts.gate
	}
	fail := func(status int, code string) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		fmt.Fprintf(w, `{"error":%q}`, code)
	}
	user, pass, ok := r.BasicAuth()
	// RFC 6749 section 2.3.1: both are form-encoded inside Basic.
	user, _ = url.QueryUnescape(user)
	pass, _ = url.QueryUnescape(pass)
	if r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/x-www-form-urlencoded" {
		fail(http.StatusBadRequest, "invalid_request")
		return
	}
	if !ok || user != "gateway" || pass != "s3cret:with+chars" {
		fail(http.StatusUnauthorized, "invalid_client")
		return
	}
	if err := r.ParseForm(); err != nil {
		fail(http.StatusBadRequest, "invalid_request")
		return
	}
	f := r.PostForm
	if f.Get("grant_type") != GrantTokenExchange || f.Get("subject_token_type") != TokenTypeAccessToken ||
		f.Get("audience") != "https://api.example" || f.Get("scope") != "repo read" || f.Get("subject_token") == "" {
		ts.t.Errorf("token request form: %v", f)
		fail(http.StatusBadRequest, "invalid_request")
		return
	}
	if ts.refuse != "" {
		fail(ts.status, ts.refuse)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	fmt.Fprintf(w, `{"access_token":"issued-%s-%d","issued_token_type":%q,"token_type":"Bearer","expires_in":%d}`,
		f.Get("subject_token"), n, TokenTypeAccessToken, ts.expiresIn)
}

func exchangeSource(t *testing.T, url string, client *http.Client) *Source {
	t.Helper()
	s, err := New(Options{Route: "api", Name: "Authorization", TokenExchange: &TokenExchange{
		TokenURL: url, ClientID: "gateway", ClientSecret: "s3cret:with+chars",
		Audience: "https://api.example", Scope: "repo read", Client: client,
	}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func asCaller(principal, token string) context.Context {
	return upstream.WithCaller(context.Background(), &upstream.Caller{Principal: principal, Token: token})
}

// TestTokenExchange: one exchange per principal however many calls (at
// once, too), each principal its own token, never the client's own.
func TestTokenExchange(t *testing.T) {
	t.Parallel()
	ts := &tokenService{t: t, expiresIn: 3600, gate: make(chan struct{})}
	srv := httptest.NewServer(ts)
	defer srv.Close()
	s := exchangeSource(t, srv.URL, nil)

	var wg sync.WaitGroup
	got := make(chan string, 40)
	for i := range 40 {
		p := []string{"user:alice", "user:bob"}[i%2]
		wg.Go(func() {
			v, err := s.Value(asCaller(p, "tok-"+p), sess(p))
			if err != nil {
				t.Errorf("%s: %v", p, err)
			}
			got <- p + "=" + v
		})
	}
	for ts.calls.Load() < 2 {
		time.Sleep(time.Millisecond) // both exchanges under way, the rest waiting
	}
	close(ts.gate)
	wg.Wait()
	close(got)
	for g := range got {
		p, v, _ := strings.Cut(g, "=")
		if !strings.HasPrefix(v, "Bearer issued-tok-"+p+"-") {
			t.Errorf("%s got %q", p, v)
		}
	}
	if n := ts.calls.Load(); n != 2 {
		t.Errorf("%d exchanges for two principals, want 2", n)
	}

	_, err := s.Value(context.Background(), sess("user:carol"))
	wantRefused(t, err, "needs your bearer token")
	// A token of another principal is never exchanged for this one.
	_, err = s.Value(asCaller("user:dave", "tok-dave"), sess("user:carol"))
	wantRefused(t, err, "needs your bearer token")
}

func TestTokenExchangeRefused(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		code   string
		status int
		want   int
	}{
		{"invalid_grant", http.StatusBadRequest, http.StatusForbidden},
		{"invalid_target", http.StatusBadRequest, http.StatusBadGateway},
		{"server_error", http.StatusInternalServerError, http.StatusBadGateway},
	} {
		ts := &tokenService{t: t, refuse: tc.code, status: tc.status}
		srv := httptest.NewServer(ts)
		s := exchangeSource(t, srv.URL, nil)
		_, err := s.Value(asCaller("user:alice", "tok"), sess("user:alice"))
		var e *core.Error
		if !errors.As(err, &e) || e.HTTPStatus() != tc.want || !errors.Is(err, upstream.ErrCredential) || !strings.Contains(e.Message, tc.code) {
			t.Errorf("%s: %v (status %d); want %d naming the error", tc.code, err, e.HTTPStatus(), tc.want)
		}
		// Failures are not cached.
		_, _ = s.Value(asCaller("user:alice", "tok"), sess("user:alice"))
		if n := ts.calls.Load(); n != 2 {
			t.Errorf("%s: %d exchanges, want 2 (a failure is tried again)", tc.code, n)
		}
		srv.Close()
	}
}

// handlerTransport serves requests with a handler in memory, so a test
// bubble's clock governs the whole exchange.
type handlerTransport struct{ h http.Handler }

func (ht handlerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	rec := httptest.NewRecorder()
	body, _ := r.GetBody()
	r2 := r.Clone(r.Context())
	r2.Body = body
	ht.h.ServeHTTP(rec, r2)
	return rec.Result(), nil
}

// TestTokenExchangeRefresh: an issued token serves until its margin
// before expiry, then the next call exchanges again.
func TestTokenExchangeRefresh(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ts := &tokenService{t: t, expiresIn: 120}
		s := exchangeSource(t, "https://token.example/token", &http.Client{Transport: handlerTransport{ts}})
		ctx := asCaller("user:alice", "tok")
		first, err := s.Value(ctx, sess("user:alice"))
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(89 * time.Second) // 120s less the 30s margin, not yet
		if v, _ := s.Value(ctx, sess("user:alice")); v != first || ts.calls.Load() != 1 {
			t.Fatalf("before the margin: %q after %d exchanges", v, ts.calls.Load())
		}
		time.Sleep(2 * time.Second)
		second, err := s.Value(ctx, sess("user:alice"))
		if err != nil || second == first || ts.calls.Load() != 2 {
			t.Fatalf("after the margin: %q (%v), %d exchanges; want a new token", second, err, ts.calls.Load())
		}
	})
}

func TestForward(t *testing.T) {
	t.Parallel()
	s, err := New(Options{Route: "r", Name: "Authorization", Forward: "x-upstream-token"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	h := http.Header{"X-Upstream-Token": {"Bearer theirs"}, "Authorization": {"Bearer client-own"}}
	ctx := upstream.WithCaller(context.Background(), &upstream.Caller{Principal: "user:alice", Header: h})
	if v, err := s.Value(ctx, sess("user:alice")); err != nil || v != "Bearer theirs" {
		t.Errorf("Value = %q, %v", v, err)
	}
	_, err = s.Value(upstream.WithCaller(context.Background(), &upstream.Caller{Principal: "user:alice", Header: http.Header{"Authorization": {"Bearer client-own"}}}), sess("user:alice"))
	wantRefused(t, err, "no X-Upstream-Token header")
}

// FuzzParseSecrets: whatever the text, the parser returns a table of
// non-empty principals and printable, non-empty secrets or an error that
// shows no part of the text; a table written back as YAML reads the same.
func FuzzParseSecrets(f *testing.F) {
	for _, s := range []string{"a: b\n", "user:alice: s3cret\nuser:bob: x\n", "", "- a\n", "a: [b]\n", "a: \"\\x01\"\n", "? [a]\n: b\n", "a: &x b\nc: *x\n", "~: b\n"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		tab, err := ParseSecrets(data)
		if err != nil {
			if msg := err.Error(); len(data) > 8 && strings.Contains(msg, string(data)) {
				t.Fatalf("the error shows the text: %v", err)
			}
			return
		}
		for p, s := range tab {
			if p == "" || s == "" || !core.ValidHeaderValue(s) {
				t.Fatalf("accepted %q: %q", p, s)
			}
		}
		out, err := yaml.Marshal(tab)
		if err != nil {
			t.Fatal(err)
		}
		again, err := ParseSecrets(out)
		if err != nil || len(again) != len(tab) {
			t.Fatalf("round trip: %v %v\n%s", again, err, out)
		}
		for p, s := range tab {
			if again[p] != s {
				t.Fatalf("round trip of %q: %q, want %q", p, again[p], s)
			}
		}
	})
}
