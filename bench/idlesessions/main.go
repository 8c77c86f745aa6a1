// Command idlesessions measures, from outside, what idle legacy sessions
// cost a running mcpgate: it builds and starts the mcpgate binary in front
// of the conformance fixture served over Streamable HTTP (a go-sdk server,
// its own process), opens sessions (initialize + notifications/initialized,
// then nothing: their clients hold no stream), and reads the gateway's
// VmRSS (/proc/PID/status), open descriptors (/proc/PID/fd) and goroutines
// (go_goroutines on the admin /metrics) before and after.
//
//	go run ./bench/idlesessions -sessions 5000
//
// Linux only (it reads /proc).
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
	"time"

	"github.com/mcpgate/mcpgate/bench/internal/procs"
)

func main() {
	n := flag.Int("sessions", 5000, "idle sessions to open")
	flag.Parse()
	dir, err := os.MkdirTemp("", "mcpgate-idle")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	gwBin, fxBin := filepath.Join(dir, "mcpgate"), filepath.Join(dir, "fixture")
	for bin, pkg := range map[string]string{gwBin: "./cmd/mcpgate", fxBin: "./internal/testutil/conformancefixture/cmd/fixture"} {
		if out, err := exec.Command("go", "build", "-o", bin, pkg).CombinedOutput(); err != nil {
			log.Fatalf("build %s: %v\n%s", pkg, err, out)
		}
	}
	upAddr, gwAddr, adminAddr := procs.FreeAddr(), procs.FreeAddr(), procs.FreeAddr()
	fx := exec.Command(fxBin, "-http", upAddr)
	fx.Stderr = os.Stderr
	procs.Must(fx.Start())
	defer fx.Process.Kill()
	procs.WaitListening(upAddr)

	cfg := filepath.Join(dir, "mcpgate.yaml")
	procs.Must(os.WriteFile(cfg, []byte(fmt.Sprintf(`listeners:
  - address: %s
admin:
  listen: %s
sessions:
  max: %d
  per_address: {max: 0}   # all N sessions come from this one address
  creation_rate:
    per_address: {limit: 0}
store:
  kind: memory
routes:
  - name: fixture
    path: /mcp
    upstream:
      era: legacy
      http:
        url: http://%s/
`, gwAddr, adminAddr, *n+10, upAddr)), 0o600))
	gw := exec.Command(gwBin, "serve", "--config", cfg)
	gw.Stderr = io.Discard
	procs.Must(gw.Start())
	defer gw.Process.Kill()
	procs.WaitListening(gwAddr)
	procs.WaitListening(adminAddr)

	url := "http://" + gwAddr + "/mcp"
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4}}
	open := func() string {
		r := post(client, url, `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"idle","version":"1"}}}`, nil)
		id := r.Header.Get("Mcp-Session-Id")
		if r.StatusCode != http.StatusOK || id == "" {
			log.Fatalf("initialize: %d", r.StatusCode)
		}
		r = post(client, url, `{"jsonrpc":"2.0","method":"notifications/initialized"}`, map[string]string{"Mcp-Session-Id": id, "MCP-Protocol-Version": "2025-06-18"})
		if r.StatusCode != http.StatusAccepted {
			log.Fatalf("notifications/initialized: %d", r.StatusCode)
		}
		return id
	}
	open() // warm up: the probe, the route's connection pool
	time.Sleep(2 * time.Second)
	rss0, fd0, gr0 := sample(gw.Process.Pid, adminAddr)
	start := time.Now()
	first := open()
	for range *n - 1 {
		open()
	}
	took := time.Since(start)
	time.Sleep(2 * time.Second) // let finished exchanges' goroutines exit
	rss1, fd1, gr1 := sample(gw.Process.Pid, adminAddr)
	// Every session must still be live: the oldest one answers a ping.
	if r := post(client, url, `{"jsonrpc":"2.0","id":2,"method":"ping"}`, map[string]string{"Mcp-Session-Id": first, "MCP-Protocol-Version": "2025-06-18"}); r.StatusCode != http.StatusOK {
		log.Fatalf("the first session is gone (%d): the sessions measured were not all live", r.StatusCode)
	}
	fmt.Printf("%d idle legacy sessions over an HTTP upstream (opened in %s)\n", *n, took.Round(time.Millisecond))
	fmt.Printf("VmRSS       %8d KiB -> %8d KiB  (%+.1f KiB/session)\n", rss0, rss1, float64(rss1-rss0)/float64(*n))
	fmt.Printf("descriptors %8d     -> %8d      (%+.3f/session)\n", fd0, fd1, float64(fd1-fd0)/float64(*n))
	fmt.Printf("goroutines  %8d     -> %8d      (%+.3f/session)\n", gr0, gr1, float64(gr1-gr0)/float64(*n))
}

func post(c *http.Client, url, body string, hdr map[string]string) *http.Response {
	req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := c.Do(req)
	if err != nil {
		log.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	return resp
}

// sample reads the gateway's resident memory (KiB), open descriptors and
// goroutines.
func sample(pid int, admin string) (rss, fds, goroutines int) {
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	procs.Must(err)
	sc := bufio.NewScanner(bytes.NewReader(status))
	for sc.Scan() {
		if f := strings.Fields(sc.Text()); len(f) >= 2 && f[0] == "VmRSS:" {
			rss, _ = strconv.Atoi(f[1])
		}
	}
	es, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	procs.Must(err)
	resp, err := http.Get("http://" + admin + "/metrics")
	procs.Must(err)
	defer resp.Body.Close()
	sc = bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "go_goroutines "); ok {
			goroutines, _ = strconv.Atoi(v)
		}
	}
	return rss, len(es), goroutines
}
