package cli

import (
	"bytes"
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/mcpgate/mcpgate/internal/admin"
	"github.com/mcpgate/mcpgate/internal/auth"
	"github.com/mcpgate/mcpgate/internal/config"
	"github.com/mcpgate/mcpgate/internal/gateway"
)

// TestCtl: mcpgate ctl drives a running gateway's admin MCP server:
// sessions, a configuration diff and apply, the history, a rollback, the
// log level, health; a key of too low a role is told so.
func TestCtl(t *testing.T) {
	t.Parallel()
	up := httptest.NewServer(http.NotFoundHandler())
	t.Cleanup(up.Close)
	adminKey, _ := auth.NewKey()
	viewerKey, _ := auth.NewKey()
	text := func(max int) string {
		return "listeners: [{address: \"127.0.0.1:0\"}]\nstore: {kind: memory}\nserver: {shutdown_timeout: 2s}\n" +
			"sessions: {max: " + strconv.Itoa(max) + "}\n" +
			"admin: {listen: \"127.0.0.1:0\", mcp: {enabled: true, api_keys: [{key_sha256: " + auth.HashKey(adminKey) + ", role: admin, principal: ada}, {key_sha256: " + auth.HashKey(viewerKey) + ", role: viewer}]}}\n" +
			"routes: [{name: r, path: /mcp, upstream: {http: {url: \"" + up.URL + "\"}}}]\n"
	}
	cfg, err := config.LoadBytes([]byte(text(100)))
	if err != nil {
		t.Fatal(err)
	}
	g, err := gateway.New(cfg, gateway.Options{Source: gateway.ConfigSource{Text: []byte(text(100))}})
	if err != nil {
		t.Fatal(err)
	}
	level := new(slog.LevelVar)
	ctl := admin.New(admin.Options{Gateway: g, LogLevel: level})
	defer ctl.Close()
	g.HandleAdmin("/mcp", ctl)
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	go func() { ran <- g.Run(ctx) }()
	defer func() { cancel(); <-ran }()
	url := "http://" + g.AdminAddr().String() + "/mcp"

	run := func(key string, args ...string) (string, int) {
		var out, errs bytes.Buffer
		code := Main(append([]string{"ctl", "--url", url, "--key", key}, args...), &out, &errs)
		return out.String() + errs.String(), code
	}
	if out, code := run(adminKey, "sessions"); code != 0 || !strings.Contains(out, "SESSION") {
		t.Fatalf("ctl sessions: %d %s", code, out)
	}
	file := filepath.Join(t.TempDir(), "next.yaml")
	if err := os.WriteFile(file, []byte(text(50)), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, code := run(adminKey, "config", "diff", file); code != 0 || !strings.Contains(out, "would apply:") || !strings.Contains(out, "sessions: changed") || g.Config().Sessions.Max != 100 {
		t.Fatalf("ctl config diff: %d %s", code, out)
	}
	if out, code := run(viewerKey, "config", "apply", file); code == 0 || !strings.Contains(out, "needs the role admin") {
		t.Fatalf("ctl config apply with a viewer key: %d %s", code, out)
	}
	if out, code := run(adminKey, "config", "apply", file); code != 0 || !strings.Contains(out, "applied as version 2") || g.Config().Sessions.Max != 50 {
		t.Fatalf("ctl config apply: %d %s", code, out)
	}
	if out, code := run(adminKey, "config", "rollback", "1"); code != 0 || !strings.Contains(out, "version 3") || g.Config().Sessions.Max != 100 {
		t.Fatalf("ctl config rollback: %d %s", code, out)
	}
	if out, code := run(adminKey, "config", "history"); code != 0 || !strings.Contains(out, "rollback of 1") || !strings.Contains(out, "ada") {
		t.Fatalf("ctl config history: %d %s", code, out)
	}
	if out, code := run(adminKey, "--json", "config", "show"); code != 0 || !strings.Contains(out, `"version": 3`) {
		t.Fatalf("ctl config show --json: %d %s", code, out)
	}
	if out, code := run(adminKey, "log-level", "gateway", "debug"); code != 0 || level.Level() != slog.LevelDebug {
		t.Fatalf("ctl log-level: %d %s", code, out)
	}
	if out, code := run(adminKey, "health"); code != 0 || !strings.Contains(out, `"ready"`) {
		t.Fatalf("ctl health: %d %s", code, out)
	}
	if out, code := run("mcpg_wrong", "health"); code == 0 || !strings.Contains(out, "mcpgate:") {
		t.Fatalf("ctl with a wrong key: %d %s", code, out)
	}
}
