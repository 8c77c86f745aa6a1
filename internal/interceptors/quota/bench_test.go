package quota

import (
	"context"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/internal/config"
	"github.com/mcpgate/mcpgate/internal/core"
	"github.com/mcpgate/mcpgate/internal/pipeline"
	"github.com/mcpgate/mcpgate/internal/tokens"
)

func mustTokens(tb testing.TB) tokens.Counter {
	c, err := tokens.New(tokens.CL100K)
	if err != nil {
		tb.Fatal(err)
	}
	return c
}

// BenchmarkStage is the stage's cost per tools/call, in memory, against
// a terminal that answers at once: no quota (the stage is left out), a
// session's budget (requests, tool calls, a tool, in flight, result
// bytes), a principal's, and a token budget (bytes4, o200k_base) on a
// result of 1 KiB of text.
func BenchmarkStage(b *testing.B) {
	result := []byte(`{"content":[{"type":"text","text":"` + string(make1k()) + `"}]}`)
	terminal := func(_ context.Context, m *core.Message) (*core.Message, error) {
		return &core.Message{Kind: core.KindResponse, ID: m.ID, Result: result}, nil
	}
	big := int64(1) << 60
	session := config.Quota{Name: "s", Per: "session", Requests: big, ToolCalls: big, Tools: map[string]int64{"echo": big}, Concurrent: big, ResultBytes: config.ByteSize(big)}
	principal := session
	principal.Name, principal.Per, principal.Window = "p", "principal", time.Hour
	tok := config.Quota{Name: "t", Per: "session", ResultTokens: big, Tokenizer: "bytes4"}
	tokO := config.Quota{Name: "t", Per: "session", ResultTokens: big, Tokenizer: "o200k_base"}
	for _, tt := range []struct {
		name   string
		quotas []config.Quota
	}{
		{"none", nil},
		{"session", []config.Quota{session}},
		{"principal", []config.Quota{principal}},
		{"tokens_bytes4", []config.Quota{tok}},
		{"tokens_o200k", []config.Quota{tokO}},
	} {
		b.Run(tt.name, func(b *testing.B) {
			s, err := New(Options{Route: "r", Quotas: tt.quotas, Meters: NewMeters(false, 0, nil)})
			if err != nil {
				b.Fatal(err)
			}
			ch, err := pipeline.Build("r", terminal, nil, []pipeline.Stage{s.Stage()})
			if err != nil {
				b.Fatal(err)
			}
			m, err := core.Decode([]byte(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{}}}`))
			if err != nil {
				b.Fatal(err)
			}
			info := &core.SessionInfo{ID: "s", Route: "r", Principal: "alice", Tenant: "acme", Stages: new(core.StageHolder)}
			m.Session, m.Direction = info, core.ClientToServer
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				ch.Enter(info)
				if _, err := ch.ClientToServer(ctx, m); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func make1k() []byte {
	b := make([]byte, 1024)
	for i := range b {
		b[i] = "abcd efgh"[i%9]
	}
	return b
}
