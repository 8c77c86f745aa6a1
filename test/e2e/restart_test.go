package e2e

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// gatewayProcess runs the mcpgate binary as a real child process.
type gatewayProcess struct {
	cmd *exec.Cmd
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// startProcess starts mcpgate and waits for its "listening" log line.
func startProcess(t *testing.T, bin string, args ...string) *gatewayProcess {
	t.Helper()
	cmd := exec.Command(bin, append([]string{"serve"}, args...)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &gatewayProcess{cmd: cmd}
	t.Cleanup(func() { p.kill() })
	ready := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stderr)
		once := false
		for sc.Scan() {
			if testing.Verbose() {
				fmt.Fprintln(os.Stderr, "mcpgate:", sc.Text())
			}
			if !once && strings.Contains(sc.Text(), `"msg":"listening"`) {
				once = true
				close(ready)
			}
		}
	}()
	select {
	case <-ready:
	case <-time.After(20 * time.Second):
		t.Fatal("mcpgate did not start")
	}
	return p
}

// kill is kill -9 of the whole process group: no shutdown, no flush.
func (p *gatewayProcess) kill() {
	if p.cmd.Process != nil {
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		_ = p.cmd.Wait()
	}
}

// TestRestartKeepsSessions: real clients mid-conversation, the gateway
// killed with SIGKILL and started again on the same data directory: every
// session continues with the same Mcp-Session-Id (upstream side
// re-established lazily: a new upstream session over HTTP, a new process
// over stdio). No session is lost.
func TestRestartKeepsSessions(t *testing.T) {
	t.Parallel()
	bin := mcpgateBin
	upstreams := map[string][]string{
		"http":  {"--http", fixtureHTTP(t, false)},
		"stdio": {"--stdio", fixtureBin},
	}
	for name, up := range upstreams {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			addr, dir := freeAddr(t), t.TempDir()
			args := append([]string{"--listen", addr, "--data-dir", dir}, up...)
			gw := startProcess(t, bin, args...)
			ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
			defer cancel()
			const n = 5
			var sessions []*mcp.ClientSession
			ids := map[string]bool{}
			for range n {
				c := newSDKClient()
				cs, err := c.Connect(ctx, &mcp.StreamableClientTransport{Endpoint: "http://" + addr + "/mcp"}, &mcp.ClientSessionOptions{ProtocolVersion: "2025-11-25"})
				if err != nil {
					t.Fatal(err)
				}
				defer cs.Close()
				if _, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "test_simple_text"}); err != nil {
					t.Fatal(err)
				}
				sessions = append(sessions, cs)
				ids[cs.ID()] = true
			}
			gw.kill()
			startProcess(t, bin, args...)
			lost := 0
			for _, cs := range sessions {
				res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "test_simple_text"})
				if err != nil || textOf(t, res) != "This is a simple text response for testing." {
					lost++
					t.Errorf("session %s after restart: %v", cs.ID(), err)
					continue
				}
				if !ids[cs.ID()] {
					t.Errorf("session id changed to %s", cs.ID())
				}
			}
			t.Logf("sessions: %d, lost after kill -9 and restart: %d", n, lost)
		})
	}
}
