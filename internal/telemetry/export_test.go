package telemetry

import (
	"context"
	"net"
	"sync"
	"testing"
	"time"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	"github.com/mcpgate/mcpgate/internal/config"
)

// grpcReceiver is an in-process OTLP/gRPC collector.
type grpcReceiver struct {
	coltracepb.UnimplementedTraceServiceServer
	mu    sync.Mutex
	names []string
	auth  []string
}

func (g *grpcReceiver) Export(ctx context.Context, req *coltracepb.ExportTraceServiceRequest) (*coltracepb.ExportTraceServiceResponse, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	md, _ := metadata.FromIncomingContext(ctx)
	g.auth = append(g.auth, md.Get("authorization")...)
	for _, rs := range req.ResourceSpans {
		for _, ss := range rs.ScopeSpans {
			for _, s := range ss.Spans {
				g.names = append(g.names, s.Name)
			}
		}
	}
	return &coltracepb.ExportTraceServiceResponse{}, nil
}

// TestExportGRPC: with protocol grpc, spans reach an OTLP/gRPC collector
// with the configured headers, by Shutdown at the latest.
func TestExportGRPC(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	rcv := &grpcReceiver{}
	srv := grpc.NewServer()
	coltracepb.RegisterTraceServiceServer(srv, rcv)
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(srv.Stop)
	cfg := config.Telemetry{OTLP: config.OTLP{Endpoint: ln.Addr().String(), Protocol: config.OTLPGRPC, Insecure: true,
		Headers: map[string]config.Secret{"Authorization": "Bearer grpc-token"}, Timeout: 5 * time.Second}}
	tr, err := New(context.Background(), cfg, Options{})
	if err != nil {
		t.Fatal(err)
	}
	ch, _ := chain(t, tr)
	m := decode(t, `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"search"}}`, nil)
	if _, err := ch.ClientToServer(context.Background(), m); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := tr.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	rcv.mu.Lock()
	defer rcv.mu.Unlock()
	if len(rcv.names) != 2 || rcv.names[0] != "tools/call search" || len(rcv.auth) == 0 || rcv.auth[0] != "Bearer grpc-token" {
		t.Errorf("received %v with authorization %v", rcv.names, rcv.auth)
	}
}
