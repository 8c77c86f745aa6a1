package cli_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mcpgate/mcpgate/internal/audit"
	"github.com/mcpgate/mcpgate/internal/core"
	"github.com/mcpgate/mcpgate/internal/pipeline"
)

// auditFile writes a trail: started, then for alice and bob a session, a
// call and its answer, a decision; stopped.
func auditFile(t *testing.T) string {
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
	h := tr.Stage("r").Interceptor(func(context.Context, *core.Message) (*core.Message, error) { return nil, nil })
	for _, who := range []string{"alice", "bob"} {
		info := &core.SessionInfo{ID: "sid-" + who, Route: "r", Principal: who}
		tr.Hooks().Created(info)
		m, _ := core.Decode([]byte(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"` + who + `-tool"}}`))
		m.Session = info
		_, _ = h(context.Background(), m)
		tr.Observe(context.Background(), &pipeline.Event{Kind: pipeline.Decision, Session: info, Stage: "policy", Policy: "p", Action: "allow"})
	}
	if err := tr.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestAuditVerify(t *testing.T) {
	path := auditFile(t)
	r := run(t, "audit", "verify", path)
	if r.code != 0 || !strings.HasPrefix(r.stdout, "ok: 10 records, seq 1 to 10, head ") {
		t.Fatalf("intact: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	b, _ := os.ReadFile(path)
	edited := filepath.Join(t.TempDir(), "edited.jsonl")
	if err := os.WriteFile(edited, []byte(strings.Replace(string(b), `"principal":"bob"`, `"principal":"eve"`, 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	r = run(t, "audit", "verify", edited)
	if r.code != 1 || !strings.Contains(r.stderr, edited+":6: record (seq 6, id ") || !strings.Contains(r.stderr, "edited: its hash does not match its content") {
		t.Fatalf("edited: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if r := run(t, "audit", "verify"); r.code != 1 {
		t.Fatalf("no file: exit %d", r.code)
	}
}

func TestAuditQuery(t *testing.T) {
	path := auditFile(t)
	count := func(r result) int { return strings.Count(r.stdout, "\n") }
	for _, tc := range []struct {
		args []string
		want int
	}{
		{[]string{"--principal", "bob"}, 4},
		{[]string{"--session", "sid-alice"}, 4},
		{[]string{"--session", core.Fingerprint("sid-alice")}, 4},
		{[]string{"--tool", "alice-tool"}, 2},
		{[]string{"--since", "1h"}, 10},
		{[]string{"--since", "2999-01-01T00:00:00Z"}, 0},
		{[]string{"--principal", "bob", "--tool", "alice-tool"}, 0},
	} {
		r := run(t, append([]string{"audit", "query", path}, tc.args...)...)
		if r.code != 0 || count(r) != tc.want {
			t.Errorf("%v: exit %d, %d records; want %d\n%s", tc.args, r.code, count(r), tc.want, r.stderr)
		}
	}
	if r := run(t, "audit", "query", path, "--since", "yesterday"); r.code != 1 || !strings.Contains(r.stderr, "want a duration") {
		t.Errorf("bad --since: exit %d %s", r.code, r.stderr)
	}
}
