package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/mcpgate/mcpgate/internal/testutil/nodetool"
)

// tsReport is what a step script under tsclient/ prints last: one JSON
// line with every step and whether it passed.
type tsReport struct {
	OK              bool   `json:"ok"`
	ProtocolVersion string `json:"protocolVersion"`
	Steps           []struct {
		Name, Detail string
		OK           bool
	} `json:"steps"`
}

// tsClient is the command running tsclient/name with args, the
// TypeScript SDK resolved from tools/node.
func tsClient(ctx context.Context, t *testing.T, name string, args ...string) *exec.Cmd {
	t.Helper()
	script := filepath.Join(nodetool.Root(t), "test", "e2e", "tsclient", name)
	sdkPkg := nodetool.Bin(t, "@modelcontextprotocol/sdk", "package.json")
	cmd := nodetool.Command(ctx, t, script, args...)
	cmd.Env = append(os.Environ(), "MCPGATE_NODE_ROOT="+filepath.Dir(filepath.Dir(filepath.Dir(filepath.Dir(sdkPkg)))))
	return cmd
}

// runTSClient runs tsclient/name with args; each line it prints goes to
// onLine (nil: none) as it comes, the last being the report. It fails the test for every step that
// failed, and when steps is not zero and the report has another number.
func runTSClient(ctx context.Context, t *testing.T, steps int, onLine func(string), name string, args ...string) tsReport {
	t.Helper()
	cmd := tsClient(ctx, t, name, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(out)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	var last string
	for sc.Scan() {
		last = sc.Text()
		if onLine != nil {
			onLine(last)
		}
	}
	_ = cmd.Wait()
	var rep tsReport
	if err := json.Unmarshal([]byte(last), &rep); err != nil {
		t.Fatalf("%s: no report: %v\nlast line: %s\nstderr: %s", name, err, last, stderr.String())
	}
	for _, s := range rep.Steps {
		if !s.OK {
			t.Errorf("%s: %s", s.Name, s.Detail)
		}
	}
	if steps != 0 && len(rep.Steps) != steps {
		t.Errorf("%s: %d steps: %+v", name, len(rep.Steps), rep.Steps)
	}
	return rep
}
