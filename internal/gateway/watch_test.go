package gateway

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/mcpgate/mcpgate/internal/config"
)

// watched is a gateway running from a configuration file, with Watch
// reloading it; write replaces the file as an editor does (a new file
// renamed over the old one).
type watched struct {
	g    *Gateway
	path string
	up   string
}

func startWatched(t *testing.T, signals bool, routes ...string) *watched {
	t.Helper()
	up := httptest.NewServer(http.NotFoundHandler())
	t.Cleanup(up.Close)
	w := &watched{path: filepath.Join(t.TempDir(), "mcpgate.yaml"), up: up.URL}
	w.write(t, "127.0.0.1:0", routes...)
	cfg, err := config.Load(w.path)
	if err != nil {
		t.Fatal(err)
	}
	text, err := os.ReadFile(w.path)
	if err != nil {
		t.Fatal(err)
	}
	g, err := New(cfg, Options{Source: ConfigSource{Text: text}})
	if err != nil {
		t.Fatal(err)
	}
	w.g = g
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	go func() { ran <- g.Run(ctx) }()
	g.Addrs() // listening
	stop, err := g.Watch(ctx, WatchOptions{Path: w.path, File: true, Debounce: 10 * time.Millisecond, Signal: signals})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		stop()
		cancel()
		if err := <-ran; err != nil {
			t.Error(err)
		}
	})
	return w
}

func (w *watched) write(t *testing.T, listen string, routes ...string) {
	t.Helper()
	var b strings.Builder
	b.WriteString("listeners: [{address: \"" + listen + "\"}]\nstore: {kind: memory}\nserver: {shutdown_timeout: 2s}\nroutes:\n")
	for _, r := range routes {
		b.WriteString("  - {name: " + r + ", path: /" + r + ", upstream: {http: {url: \"" + w.up + "\"}}}\n")
	}
	w.writeRaw(t, b.String())
}

func (w *watched) writeRaw(t *testing.T, text string) {
	t.Helper()
	tmp := w.path + ".tmp"
	if err := os.WriteFile(tmp, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, w.path); err != nil {
		t.Fatal(err)
	}
}

// waitOutcome waits until n reloads had outcome.
func (w *watched) waitOutcome(t *testing.T, outcome string, n float64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for testutil.ToFloat64(w.g.reloads.WithLabelValues(outcome)) < n {
		if time.Now().After(deadline) {
			t.Fatalf("%s reloads: %v; want %v", outcome, testutil.ToFloat64(w.g.reloads.WithLabelValues(outcome)), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (w *watched) routes() []string {
	var names []string
	for _, r := range w.g.config().Routes {
		names = append(names, r.Name)
	}
	return names
}

// TestWatchReloadsTheFile: a change to the file is put in force; an
// invalid file or one that changes a listener is refused with the running
// configuration untouched, and each is counted by outcome.
func TestWatchReloadsTheFile(t *testing.T) {
	t.Parallel()
	w := startWatched(t, false, "a")
	w.write(t, "127.0.0.1:0", "a", "b")
	w.waitOutcome(t, ReloadApplied, 1)
	if got := w.routes(); len(got) != 2 || got[1] != "b" {
		t.Fatalf("routes after the reload: %v", got)
	}
	// The new route answers at once: an initialize reaches its upstream
	// (which refuses it), where a path with no route gets 404.
	for path, want := range map[string]bool{"/b": true, "/c": false} {
		req, _ := http.NewRequest(http.MethodPost, "http://"+w.g.Addrs()[0].String()+path,
			strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}`))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json, text/event-stream")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if got := resp.StatusCode != http.StatusNotFound; got != want {
			t.Fatalf("POST %s: %d; route there: %v", path, resp.StatusCode, want)
		}
	}

	w.writeRaw(t, "routes: [\n")
	w.waitOutcome(t, ReloadInvalid, 1)
	w.write(t, "127.0.0.1:1", "a")
	w.waitOutcome(t, ReloadRestartRequired, 1)
	if got := w.routes(); len(got) != 2 {
		t.Fatalf("routes after refused reloads: %v; want the running two", got)
	}

	w.write(t, "127.0.0.1:0", "a", "b")
	w.waitOutcome(t, ReloadUnchanged, 1)
	w.write(t, "127.0.0.1:0", "b")
	w.waitOutcome(t, ReloadApplied, 2)
	if got := w.routes(); len(got) != 1 || got[0] != "b" {
		t.Fatalf("routes after the second reload: %v", got)
	}
}

// TestWatchSIGHUP: SIGHUP reloads, and no longer ends the process.
func TestWatchSIGHUP(t *testing.T) {
	// Not parallel: the signal reaches the whole test process. Until
	// Watch has registered, this channel keeps SIGHUP from ending it.
	keep := make(chan os.Signal, 8)
	signal.Notify(keep, syscall.SIGHUP)
	defer signal.Stop(keep)
	w := startWatched(t, true, "a")
	deadline := time.Now().Add(10 * time.Second)
	for testutil.ToFloat64(w.g.reloads.WithLabelValues(ReloadUnchanged)) < 1 {
		if time.Now().After(deadline) {
			t.Fatal("SIGHUP did not reload")
		}
		if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
