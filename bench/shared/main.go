// Command shared measures routes[].upstream.share from outside: the
// mcpgate binary with one stdio route, run once with `share: session`
// (a process per session) and once with `share: route` (max_shared
// client sessions per process).
//
// Memory: N legacy sessions (initialize + notifications/initialized, one
// tools/list) in front of the npm server-everything over stdio (Node);
// the resident memory (VmRSS) of the gateway and all its descendants,
// after minus before, per session.
//
// Throughput: C sessions calling the echo tool of examples/echo-server
// over stdio as fast as answers come back, for a fixed time.
//
//	go run ./bench/shared -sessions 100 -callers 16 -for 5s
//
// Linux only (it reads /proc). Run from the repository root.
package main

import (
	"bufio"
	"bytes"
	"flag"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mcpgate/mcpgate/bench/internal/procs"
)

func main() {
	n := flag.Int("sessions", 100, "sessions for the memory measurement")
	callers := flag.Int("callers", 16, "sessions calling for the throughput measurement")
	maxShared := flag.Int("max-shared", 32, "max_shared with share: route")
	dur := flag.Duration("for", 5*time.Second, "how long each throughput side runs")
	rounds := flag.Int("rounds", 2, "alternating throughput rounds")
	flag.Parse()
	dir, err := os.MkdirTemp("", "mcpgate-shared")
	procs.Must(err)
	defer os.RemoveAll(dir)
	gwBin, echoBin := filepath.Join(dir, "mcpgate"), filepath.Join(dir, "echo-server")
	for bin, pkg := range map[string]string{gwBin: "./cmd/mcpgate", echoBin: "./examples/echo-server"} {
		if out, err := exec.Command("go", "build", "-o", bin, pkg).CombinedOutput(); err != nil {
			log.Fatalf("build %s: %v\n%s", pkg, err, out)
		}
	}
	everything, err := filepath.Abs("tools/node/node_modules/@modelcontextprotocol/server-everything/dist/index.js")
	procs.Must(err)
	if _, err := os.Stat(everything); err != nil {
		log.Fatalf("server-everything is not installed: %v", err)
	}
	node, err := exec.LookPath("node")
	procs.Must(err)

	fmt.Printf("memory: %d legacy sessions over server-everything (stdio, Node)\n", *n)
	for _, share := range []string{"session", "route"} {
		g := start(dir, gwBin, share, *maxShared, *n, node, everything, "stdio")
		g.open() // warm up: one process, the gateway's pools
		time.Sleep(time.Second)
		rss0, procs0 := treeRSS(g.cmd.Process.Pid)
		start := time.Now()
		for range *n - 1 {
			g.open()
		}
		took := time.Since(start)
		time.Sleep(2 * time.Second)
		rss1, procs1 := treeRSS(g.cmd.Process.Pid)
		fmt.Printf("share: %-7s  processes %3d -> %3d  RSS %8d KiB -> %8d KiB  (%+.0f KiB/session, opened in %s)\n",
			share, procs0, procs1, rss0, rss1, float64(rss1-rss0)/float64(*n-1), took.Round(time.Millisecond))
		g.stop()
	}

	fmt.Printf("throughput: %d sessions calling echo over examples/echo-server (stdio), %s per side\n", *callers, *dur)
	total := map[string]float64{}
	for r := range *rounds {
		for _, share := range []string{"session", "route"} {
			g := start(dir, gwBin, share, *maxShared, *callers, echoBin)
			ids := make([]string, *callers)
			for i := range ids {
				ids[i] = g.open()
			}
			var calls atomic.Int64
			var wg sync.WaitGroup
			deadline := time.Now().Add(*dur)
			for _, id := range ids {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for k := 0; time.Now().Before(deadline); k++ {
						r := g.post(fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":"tools/call","params":{"name":"echo","arguments":{"text":"hello"}}}`, k+10), id)
						if r.StatusCode != http.StatusOK {
							log.Fatalf("tools/call: %d", r.StatusCode)
						}
						calls.Add(1)
					}
				}()
			}
			wg.Wait()
			rate := float64(calls.Load()) / dur.Seconds()
			total[share] += rate
			fmt.Printf("round %d  share: %-7s  %8.0f calls/s\n", r+1, share, rate)
			g.stop()
		}
	}
	fmt.Printf("mean     share: session %8.0f calls/s, share: route %8.0f calls/s (route ÷ session %.2f)\n",
		total["session"]/float64(*rounds), total["route"]/float64(*rounds), total["route"]/total["session"])
}

type gateway struct {
	cmd    *exec.Cmd
	url    string
	client *http.Client
}

func start(dir, bin, share string, maxShared, n int, command string, args ...string) *gateway {
	addr := procs.FreeAddr()
	shareCfg := "share: session"
	if share != "session" {
		shareCfg = fmt.Sprintf("share: %s\n      max_shared: %d", share, maxShared)
	}
	argList := ""
	for _, a := range args {
		argList += strconv.Quote(a) + ", "
	}
	cfg := filepath.Join(dir, "mcpgate-"+share+".yaml")
	procs.Must(os.WriteFile(cfg, []byte(fmt.Sprintf(`listeners:
  - address: %s
sessions:
  max: %d
  per_address: {max: 0}   # every session comes from this one address
  creation_rate:
    per_address: {limit: 0}
store:
  kind: memory
routes:
  - name: bench
    path: /mcp
    upstream:
      era: legacy
      %s
      stdio:
        command: %q
        args: [%s]
`, addr, n+10, shareCfg, command, strings.TrimSuffix(argList, ", "))), 0o600))
	cmd := exec.Command(bin, "serve", "--config", cfg)
	cmd.Stderr = io.Discard
	procs.Must(cmd.Start())
	procs.WaitListening(addr)
	return &gateway{cmd: cmd, url: "http://" + addr + "/mcp", client: &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}}
}

func (g *gateway) stop() {
	_ = g.cmd.Process.Signal(os.Interrupt)
	done := make(chan struct{})
	go func() { _ = g.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		_ = g.cmd.Process.Kill()
		<-done
	}
}

// open makes one legacy session that has listed its tools.
func (g *gateway) open() string {
	r := g.post(`{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"bench","version":"1"}}}`, "")
	id := r.Header.Get("Mcp-Session-Id")
	if r.StatusCode != http.StatusOK || id == "" {
		log.Fatalf("initialize: %d", r.StatusCode)
	}
	if r = g.post(`{"jsonrpc":"2.0","method":"notifications/initialized"}`, id); r.StatusCode != http.StatusAccepted {
		log.Fatalf("notifications/initialized: %d", r.StatusCode)
	}
	if r = g.post(`{"jsonrpc":"2.0","id":2,"method":"tools/list"}`, id); r.StatusCode != http.StatusOK {
		log.Fatalf("tools/list: %d", r.StatusCode)
	}
	return id
}

func (g *gateway) post(body, session string) *http.Response {
	req, _ := http.NewRequest(http.MethodPost, g.url, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	if session != "" {
		req.Header.Set("Mcp-Session-Id", session)
		req.Header.Set("MCP-Protocol-Version", "2025-06-18")
	}
	resp, err := g.client.Do(req)
	procs.Must(err)
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	return resp
}

// treeRSS is the VmRSS (KiB) of pid and all its descendants, and how many
// processes that is.
func treeRSS(pid int) (rss, n int) {
	parent := map[int][]int{}
	ents, err := os.ReadDir("/proc")
	procs.Must(err)
	for _, e := range ents {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p))
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...: comm may hold spaces, so cut at the last ')'.
		f := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:]))
		if len(f) > 1 {
			pp, _ := strconv.Atoi(f[1])
			parent[pp] = append(parent[pp], p)
		}
	}
	queue := []int{pid}
	for len(queue) > 0 {
		p := queue[0]
		queue = append(queue[1:], parent[p]...)
		rss += vmRSS(p)
		n++
	}
	return rss, n
}

func vmRSS(pid int) int {
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	sc := bufio.NewScanner(bytes.NewReader(status))
	for sc.Scan() {
		if f := strings.Fields(sc.Text()); len(f) >= 2 && f[0] == "VmRSS:" {
			v, _ := strconv.Atoi(f[1])
			return v
		}
	}
	return 0
}
