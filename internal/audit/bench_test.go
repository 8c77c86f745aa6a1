package audit_test

import (
	"context"
	"io"
	"path/filepath"
	"testing"

	"github.com/mcpgate/mcpgate/internal/audit"
	"github.com/mcpgate/mcpgate/internal/core"
	"github.com/mcpgate/mcpgate/internal/pipeline"
)

// BenchmarkStage is the audit stage's cost per call on the data plane: a
// tools/call request and its response pass the stage, each making a
// chained record handed to a file sink (written by the sink's goroutine,
// which runs concurrently on the other core).
func BenchmarkStage(b *testing.B) {
	for _, bc := range []struct {
		name     string
		payloads bool
		paths    []string
		discard  bool // a sink that writes nowhere: the data plane's part alone
	}{
		{"metadata", false, nil, false},
		{"payloads", true, nil, false},
		{"payloads+redaction", true, []string{"params.arguments.password", "result.content[*].text"}, false},
		{"payloads/discard-sink", true, nil, true},
	} {
		b.Run(bc.name, func(b *testing.B) {
			dir := b.TempDir()
			var sink audit.Sink = audit.NewWriterSink("discard", io.Discard)
			if !bc.discard {
				fs, err := audit.NewFileSink(audit.FileOptions{Path: filepath.Join(dir, "a.jsonl"), MaxSize: 64 << 20, MaxFiles: 2, Fsync: audit.FsyncBatch})
				if err != nil {
					b.Fatal(err)
				}
				sink = fs
			}
			tr, err := audit.New(audit.Options{Payloads: bc.payloads, RedactPaths: bc.paths, Sinks: []audit.SinkOptions{{Sink: sink}}, SpoolDir: filepath.Join(dir, "spool")})
			if err != nil {
				b.Fatal(err)
			}
			defer tr.Close(context.Background())
			req, _ := core.Decode([]byte(`{"jsonrpc":"2.0","id":42,"method":"tools/call","params":{"name":"echo","arguments":{"text":"hello","password":"hunter2"}}}`))
			info := &core.SessionInfo{ID: "sid", Route: "bench", Era: core.EraLegacy, Principal: "alice", Stages: new(core.StageHolder)}
			req.Session = info
			resp, _ := core.Decode([]byte(`{"jsonrpc":"2.0","id":42,"result":{"content":[{"type":"text","text":"hello"}]}}`))
			resp.Direction = core.ServerToClient
			upstream := func(context.Context, *core.Message) (*core.Message, error) { return resp, nil }
			chain, err := pipeline.Build("bench", upstream, upstream, []pipeline.Stage{tr.Stage("bench")})
			if err != nil {
				b.Fatal(err)
			}
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				chain.Enter(info)
				if _, err := chain.ClientToServer(ctx, req); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
