package e2e

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/internal/testutil/everything"
	"github.com/mcpgate/mcpgate/internal/testutil/nodetool"
)

// inspectorPackage is the MCP Inspector (pinned in tools/node).
const inspectorPackage = "@modelcontextprotocol/inspector"

// TestInspectorAutoEraThroughBridge: the MCP Inspector CLI in
// --protocol-era auto finds mcpgate modern (server/discover) and checks
// every result against the 2026-07-28 schema; in front of server-everything
// over stdio (legacy only) every result is translated by the bridge. Each
// method must succeed as it does against the server directly.
func TestInspectorAutoEraThroughBridge(t *testing.T) {
	t.Parallel()
	script := nodetool.Bin(t, inspectorPackage, "clients/launcher/build/index.js")
	cmd, args := everything.StdioCommand(t)
	g := startGateway(t, nil, stdioRoute("everything", "/mcp", cmd, args...))
	catalog := filepath.Join(t.TempDir(), "mcp.json")
	for _, tc := range []struct {
		method string
		args   []string
		want   string
	}{
		{"tools/list", nil, `"echo"`},
		{"resources/list", nil, `"resources"`},
		{"resources/templates/list", nil, `"resourceTemplates"`},
		{"prompts/list", nil, `"prompts"`},
		{"resources/read", []string{"--uri", "demo://resource/static/document/architecture.md"}, `"contents"`},
		{"tools/call", []string{"--tool-name", "echo", "--tool-arg", "message=through the bridge"}, "through the bridge"},
		{"prompts/get", []string{"--prompt-name", "simple-prompt"}, `"messages"`},
	} {
		t.Run(strings.ReplaceAll(tc.method, "/", "-"), func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			argv := append([]string{"--cli", g.URL + "/mcp", "--transport", "http", "--protocol-era", "auto",
				"--format", "json", "--quiet", "--method", tc.method}, tc.args...)
			c := nodetool.Command(ctx, t, script, argv...)
			c.Env = append(c.Env, "MCP_CATALOG_PATH="+catalog, "HOME="+t.TempDir())
			var stdout, stderr bytes.Buffer
			c.Stdout, c.Stderr = &stdout, &stderr
			err := c.Run()
			if err != nil || !strings.Contains(stdout.String(), tc.want) {
				t.Fatalf("inspector %s: %v\nstdout: %s\nstderr: %s", tc.method, err, stdout.String(), stderr.String())
			}
		})
	}
}
