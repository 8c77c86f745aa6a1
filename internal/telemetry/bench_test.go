package telemetry

import (
	"context"
	"testing"

	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/mcpgate/mcpgate/internal/config"
	"github.com/mcpgate/mcpgate/internal/core"
	"github.com/mcpgate/mcpgate/internal/pipeline"
)

// BenchmarkTracedCall: one tools/call through a chain with the tracing
// stages (off: none; on: the two spans, the _meta rewrite, batch export
// to an exporter that drops them; sampled out: ratio 0).
func BenchmarkTracedCall(b *testing.B) {
	zero := 0.0
	for _, bc := range []struct {
		name string
		cfg  config.Telemetry
		on   bool
	}{{"off", config.Telemetry{}, false}, {"on", config.Telemetry{}, true}, {"sampled-out", config.Telemetry{SampleRatio: &zero}, true}} {
		b.Run(bc.name, func(b *testing.B) {
			var tr *Tracer
			if bc.on {
				var err error
				if tr, err = New(context.Background(), bc.cfg, Options{Exporter: tracetest.NewNoopExporter()}); err != nil {
					b.Fatal(err)
				}
				defer tr.Shutdown(context.Background())
			}
			resp, _ := core.Decode([]byte(`{"jsonrpc":"2.0","id":1,"result":{}}`))
			ch, err := pipeline.Build("r", func(context.Context, *core.Message) (*core.Message, error) { return resp, nil }, nil, tr.Stages("r"))
			if err != nil {
				b.Fatal(err)
			}
			raw := `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"search","arguments":{"q":"x"},"_meta":{"traceparent":"` + clientTP + `"}}}`
			if bc.cfg.SampleRatio != nil { // a trace the gateway starts, and does not sample
				raw = `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"search","arguments":{"q":"x"}}}`
			}
			m, _ := core.Decode([]byte(raw))
			m.Session = &core.SessionInfo{ID: "s", Route: "r", Principal: "alice"}
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				if _, err := ch.ClientToServer(ctx, m); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
