package gateway

import (
	"context"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/mcpgate/mcpgate/internal/config"
	"github.com/mcpgate/mcpgate/internal/session"
	"github.com/mcpgate/mcpgate/internal/testutil/testenv"
)

// historyGateway runs a gateway from text with the embedded store in
// dir, until the test ends or stop is called.
func historyGateway(t *testing.T, dir, text string) (g *Gateway, stop func()) {
	t.Helper()
	cfg, err := config.LoadBytes([]byte(text))
	if err != nil {
		t.Fatal(err)
	}
	if g, err = New(cfg, Options{Source: ConfigSource{Text: []byte(text)}}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	go func() { ran <- g.Run(ctx) }()
	g.Addrs()
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-ran; err != nil {
			t.Error(err)
		}
	}
	t.Cleanup(stop)
	return g, stop
}

// TestConfigHistory: applied texts become numbered versions with their
// author, changes and redacted text; a dry run changes nothing; a
// rollback is a new version; the history survives a restart, which adds
// no version when the file is the one last applied.
func TestConfigHistory(t *testing.T) {
	t.Parallel()
	up := httptest.NewServer(http.NotFoundHandler())
	t.Cleanup(up.Close)
	dir := t.TempDir()
	head := "listeners: [{address: \"127.0.0.1:0\"}]\nstore: {data_dir: \"" + filepath.Join(dir, "data") + "\"}\nserver: {shutdown_timeout: 2s}\nroutes:\n"
	route := func(name string) string {
		return "  - {name: " + name + ", path: /" + name + ", upstream: {http: {url: \"" + up.URL + "\", headers: {Authorization: \"Bearer secret-of-" + name + "\"}}}}\n"
	}
	v1 := head + route("a")
	g, stop := historyGateway(t, dir, v1)
	ctx := context.Background()

	v2 := head + route("a") + route("b")
	dry, err := g.Apply(ctx, []byte(v2), "alice", "admin", true)
	if err != nil || !dry.DryRun || dry.Outcome != ReloadApplied || !slices.Equal(dry.Changes, []string{"routes: added b"}) || len(g.config().Routes) != 1 {
		t.Fatalf("dry run: %+v, %v; routes in force %d", dry, err, len(g.config().Routes))
	}
	rep, err := g.Apply(ctx, []byte(v2), "alice", "admin", false)
	if err != nil || rep.Version != 2 || len(g.config().Routes) != 2 {
		t.Fatalf("apply: %+v, %v", rep, err)
	}
	bad, err := g.Apply(ctx, []byte(head+"  - {name: c}\n"), "alice", "admin", false)
	if err == nil || bad.Outcome != ReloadInvalid || len(bad.Problems) == 0 || !strings.Contains(bad.Problems[0], "routes[0]") {
		t.Fatalf("invalid text: %+v, %v", bad, err)
	}
	rb, err := g.Rollback(ctx, 1, "bob", false)
	if err != nil || rb.Version != 3 || len(g.config().Routes) != 1 {
		t.Fatalf("rollback: %+v, %v", rb, err)
	}
	if got := g.config().Routes[0].Upstream.HTTP.Headers["Authorization"].Reveal(); got != "Bearer secret-of-a" {
		t.Fatalf("the rolled-back route's header: %q", got)
	}
	hist := g.History()
	if len(hist) != 3 {
		t.Fatalf("%d versions; want 3", len(hist))
	}
	for i, want := range []struct{ who, source string }{{"start", "start"}, {"alice", "admin"}, {"bob", "rollback"}} {
		if v := hist[i]; v.Version != i+1 || v.Who != want.who || v.Source != want.source || strings.Contains(v.Text, "secret-of") {
			t.Fatalf("version %d: %+v", i+1, v)
		}
	}
	if hist[2].RollbackOf != 1 || !slices.Equal(hist[2].Changes, []string{"routes: removed b"}) {
		t.Fatalf("the rollback's record: %+v", hist[2])
	}
	stop()

	g2, _ := historyGateway(t, dir, v1)
	if got := g2.History(); len(got) != 3 || got[2].Who != "bob" {
		t.Fatalf("history after a restart with the last applied text: %+v", got)
	}
	if _, n := g2.ConfigText(); n != 3 {
		t.Fatalf("version in force after the restart: %d", n)
	}
}

// TestConfigHistoryAcrossReplicas: two replicas on one Redis share the
// history; a version applied on one is in force on the other within a
// second, its secrets the other's own; a replica started with a file that
// differs from the last version records it, and the other follows.
func TestConfigHistoryAcrossReplicas(t *testing.T) {
	t.Parallel()
	addr := testenv.Redis(t)
	up := httptest.NewServer(http.NotFoundHandler())
	t.Cleanup(up.Close)
	prefix := "mcpgate-test:" + session.NewID()[:12] + ":"
	secret := testenv.IDKeySecret()
	t.Cleanup(func() {
		rdb := redis.NewClient(&redis.Options{Addr: addr})
		defer rdb.Close()
		keys, _ := rdb.Keys(context.Background(), prefix+"*").Result()
		if len(keys) > 0 {
			rdb.Del(context.Background(), keys...)
		}
	})
	text := func(max int) string {
		return "listeners: [{address: \"127.0.0.1:0\"}]\nstore: {kind: redis, redis: {addr: \"" + addr + "\", prefix: \"" + prefix + "\"}}\n" +
			"server: {shutdown_timeout: 2s}\nsessions: {max: " + strconv.Itoa(max) + ", id_keys: [{id: k1, secret: \"" + secret + "\"}]}\n" +
			"routes: [{name: a, path: /a, upstream: {http: {url: \"" + up.URL + "\", headers: {Authorization: \"Bearer the-upstream-secret\"}}}}]\n"
	}
	one, _ := historyGateway(t, "", text(100))
	two, stopTwo := historyGateway(t, "", text(100))
	if n := len(two.History()); n != 1 {
		t.Fatalf("the second replica's history: %d versions; want the first's one (same file)", n)
	}
	ctx := context.Background()
	if _, err := one.Apply(ctx, []byte(text(50)), "alice", "admin", false); err != nil {
		t.Fatal(err)
	}
	waitMax := func(g *Gateway, want int) {
		t.Helper()
		deadline := time.Now().Add(2 * time.Second)
		for g.Config().Sessions.Max != want {
			if time.Now().After(deadline) {
				t.Fatalf("sessions.max %d; want %d", g.Config().Sessions.Max, want)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	waitMax(two, 50)
	if got := two.Config().Routes[0].Upstream.HTTP.Headers["Authorization"].Reveal(); got != "Bearer the-upstream-secret" {
		t.Fatalf("the adopted route's header: %q", got)
	}
	if h := two.History(); len(h) != 2 || h[1].Who != "alice" {
		t.Fatalf("the second replica's history: %+v", h)
	}
	stopTwo()
	historyGateway(t, "", text(70)) // a restart with another file
	waitMax(one, 70)
	if h := one.History(); len(h) != 3 || h[2].Source != "start" {
		t.Fatalf("history after a start with another file: %+v", h)
	}
}
