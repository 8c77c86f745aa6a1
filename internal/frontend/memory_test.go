package frontend

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"runtime"
	"testing"

	"github.com/mcpgate/mcpgate/internal/core"
	"github.com/mcpgate/mcpgate/internal/session"
)

// BenchmarkIdleSessionMemory reports the gateway's memory per idle legacy
// session at 10k and 100k sessions: the session record, its registry
// entry and the transport state (gwSession), excluding the upstream
// connection, which belongs to the upstream package.
func BenchmarkIdleSessionMemory(b *testing.B) {
	for _, n := range []int{10_000, 100_000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			for b.Loop() {
				mgr := session.NewManager(session.Options{Global: session.Cap{Max: n, Policy: session.Reject}})
				f, err := New(Options{Sessions: mgr, Logger: slog.New(slog.NewJSONHandler(io.Discard, nil))}, []*Route{{Name: "r", Path: "/mcp"}})
				if err != nil {
					b.Fatal(err)
				}
				rt := f.routes().byPath["/mcp"]
				runtime.GC()
				var before, after runtime.MemStats
				runtime.ReadMemStats(&before)
				for range n {
					info := &core.SessionInfo{ID: session.NewID(), Route: "r", Era: core.EraLegacy, ProtocolVersion: core.Version20251125,
						Principal: "anonymous", RemoteAddr: "127.0.0.1:54321", ClientName: "client", ClientVersion: "1.0.0"}
					g := newGWSession(f, rt, info)
					g.initRaw = make([]byte, 180) // a typical initialize request
					s, err := mgr.Create(info, session.Limits{}, g.teardown, g)
					if err != nil {
						b.Fatal(err)
					}
					g.sess = s
				}
				runtime.GC()
				runtime.ReadMemStats(&after)
				b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/float64(n), "B/session")
				mgr.Close(context.Background())
			}
		})
	}
}
