// Command bench measures mcpgate against direct access to the same upstream
// in one run: a go-sdk Streamable HTTP server with an echo tool, called by
// go-sdk clients directly and through an in-process mcpgate.
//
//	go run ./bench                       # defaults: 10s per mode, 8 clients
//	go run ./bench -duration 5s -clients 16 -json
//
// Allocations per proxied message are the process's allocations during the
// gateway run minus those during the direct run, per call: what mcpgate adds.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"log/slog"
	"net"
	"net/http"
	"os"
	"runtime"
	"runtime/pprof"
	"slices"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpgate/mcpgate/internal/config"
	"github.com/mcpgate/mcpgate/internal/gateway"
)

type result struct {
	Name        string  `json:"name"`
	Calls       int64   `json:"calls"`
	Errors      int64   `json:"errors"`
	Throughput  float64 `json:"calls_per_sec"`
	P50         float64 `json:"p50_us"`
	P99         float64 `json:"p99_us"`
	AllocsPer   float64 `json:"allocs_per_call"`
	BytesPer    float64 `json:"bytes_per_call"`
	AddedAllocs float64 `json:"gateway_allocs_per_call,omitempty"`
}

func main() {
	duration := flag.Duration("duration", 10*time.Second, "measuring time per mode")
	clients := flag.Int("clients", 8, "concurrent client sessions")
	jsonOut := flag.Bool("json", false, "print JSON instead of a table")
	modern := flag.Bool("modern", true, "also measure the 2026-07-28 (stateless) era")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile of the whole run to this file")
	flag.Parse()
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err != nil {
			log.Fatal(err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			log.Fatal(err)
		}
		defer pprof.StopCPUProfile()
	}

	type pair struct {
		label     string
		stateless bool
		version   string
	}
	pairs := []pair{{"legacy 2025-11-25", false, "2025-11-25"}}
	if *modern {
		pairs = append(pairs, pair{"modern 2026-07-28", true, "2026-07-28"})
	}
	var all []result
	for _, p := range pairs {
		upURL, stopUp := startUpstream(p.stateless)
		gwURL, stopGW := startGateway(upURL)
		direct := run(p.label+" direct", upURL, p.version, *clients, *duration)
		via := run(p.label+" via mcpgate", gwURL, p.version, *clients, *duration)
		via.AddedAllocs = via.AllocsPer - direct.AllocsPer
		all = append(all, direct, via)
		stopGW()
		stopUp()
	}
	if *jsonOut {
		_ = json.NewEncoder(os.Stdout).Encode(all)
		return
	}
	fmt.Printf("mcpgate bench: %d clients, %s per mode, GOMAXPROCS=%d, %s/%s, %s\n\n", *clients, *duration, runtime.GOMAXPROCS(0), runtime.GOOS, runtime.GOARCH, runtime.Version())
	tw := tabwriter.NewWriter(os.Stdout, 2, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "mode\tcalls/s\tp50 µs\tp99 µs\tallocs/call\tgateway allocs/call\tratio\terrors\t")
	for i := 0; i+1 < len(all); i += 2 {
		d, v := all[i], all[i+1]
		fmt.Fprintf(tw, "%s\t%.0f\t%.0f\t%.0f\t%.0f\t\t\t%d\t\n", d.Name, d.Throughput, d.P50, d.P99, d.AllocsPer, d.Errors)
		fmt.Fprintf(tw, "%s\t%.0f\t%.0f\t%.0f\t%.0f\t%.0f\t%.2fx\t%d\t\n", v.Name, v.Throughput, v.P50, v.P99, v.AllocsPer, v.AddedAllocs, v.Throughput/d.Throughput, v.Errors)
		fmt.Fprintf(tw, "  added p50 latency\t%.0f µs\t\t\t\t\t\t\t\n", v.P50-d.P50)
	}
	_ = tw.Flush()
}

type echoArgs struct {
	Text string `json:"text"`
}

func startUpstream(stateless bool) (string, func()) {
	s := mcp.NewServer(&mcp.Implementation{Name: "bench-upstream", Version: "1"}, nil)
	mcp.AddTool(s, &mcp.Tool{Name: "echo"}, func(_ context.Context, _ *mcp.CallToolRequest, in echoArgs) (*mcp.CallToolResult, any, error) {
		return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: in.Text}}}, nil, nil
	})
	h := mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return s }, &mcp.StreamableHTTPOptions{Stateless: stateless, JSONResponse: true})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	srv := &http.Server{Handler: h}
	go func() { _ = srv.Serve(ln) }()
	return "http://" + ln.Addr().String() + "/", func() { _ = srv.Close() }
}

func startGateway(upstreamURL string) (string, func()) {
	cfg := &config.Config{
		Listeners: []config.Listener{{Address: "127.0.0.1:0"}},
		Routes:    []config.Route{{Name: "bench", Path: "/mcp", Upstream: config.Upstream{HTTP: &config.HTTPUpstream{URL: upstreamURL}}}},
		Log:       config.Log{Level: "warn"},
		Store:     config.Store{Kind: config.StoreMemory},
	}
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		log.Fatal(err)
	}
	g, err := gateway.New(cfg, gateway.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		log.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = g.Run(ctx); close(done) }()
	return "http://" + g.Addrs()[0].String() + "/mcp", func() { cancel(); <-done }
}

func run(name, url, version string, clients int, d time.Duration) result {
	ctx := context.Background()
	sessions := make([]*mcp.ClientSession, clients)
	for i := range sessions {
		c := mcp.NewClient(&mcp.Implementation{Name: "bench", Version: "1"}, nil)
		cs, err := c.Connect(ctx, &mcp.StreamableClientTransport{Endpoint: url, MaxRetries: -1}, &mcp.ClientSessionOptions{ProtocolVersion: version})
		if err != nil {
			log.Fatalf("%s: connect: %v", name, err)
		}
		sessions[i] = cs
	}
	args := &mcp.CallToolParams{Name: "echo", Arguments: map[string]any{"text": "hello"}}
	// Warm up connections and caches.
	for _, cs := range sessions {
		for range 20 {
			if _, err := cs.CallTool(ctx, args); err != nil {
				log.Fatalf("%s: warm-up: %v", name, err)
			}
		}
	}
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	var calls, errs atomic.Int64
	lat := make([][]time.Duration, clients)
	deadline := time.Now().Add(d)
	var wg sync.WaitGroup
	start := time.Now()
	for i, cs := range sessions {
		wg.Go(func() {
			l := make([]time.Duration, 0, 1<<16)
			for time.Now().Before(deadline) {
				t0 := time.Now()
				_, err := cs.CallTool(ctx, args)
				l = append(l, time.Since(t0))
				if err != nil {
					errs.Add(1)
				}
				calls.Add(1)
			}
			lat[i] = l
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	runtime.ReadMemStats(&after)
	for _, cs := range sessions {
		_ = cs.Close()
	}
	var all []time.Duration
	for _, l := range lat {
		all = append(all, l...)
	}
	slices.Sort(all)
	pct := func(p float64) float64 {
		if len(all) == 0 {
			return 0
		}
		return float64(all[int(float64(len(all)-1)*p)].Microseconds())
	}
	n := calls.Load()
	return result{
		Name: name, Calls: n, Errors: errs.Load(), Throughput: float64(n) / elapsed.Seconds(),
		P50: pct(0.50), P99: pct(0.99),
		AllocsPer: float64(after.Mallocs-before.Mallocs) / float64(n),
		BytesPer:  float64(after.TotalAlloc-before.TotalAlloc) / float64(n),
	}
}
