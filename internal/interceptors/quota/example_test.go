package quota_test

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/mcpgate/mcpgate/internal/config"
	"github.com/mcpgate/mcpgate/internal/core"
	"github.com/mcpgate/mcpgate/internal/interceptors/quota"
	"github.com/mcpgate/mcpgate/internal/pipeline"
)

func Example() {
	cfg := &config.Config{Quotas: []config.Quota{{Name: "two-calls", ToolCalls: 2}}}
	cfg.SetDefaults()
	stage, err := quota.New(quota.Options{Route: "default", Quotas: cfg.Quotas, Meters: quota.NewMeters(false, 0, nil)})
	if err != nil {
		panic(err)
	}
	upstream := func(_ context.Context, m *core.Message) (*core.Message, error) {
		return core.ResultResponse(m.ID, []byte(`{"content":[{"type":"text","text":"ok"}]}`)), nil
	}
	chain, err := pipeline.Build("default", upstream, nil, []pipeline.Stage{stage.Stage()})
	if err != nil {
		panic(err)
	}
	info := &core.SessionInfo{ID: "s1", Route: "default", Principal: "alice", Stages: new(core.StageHolder)}
	for range 3 {
		m, _ := core.Decode([]byte(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"search"}}`))
		m.Session, m.Direction = info, core.ClientToServer
		chain.Enter(info)
		resp, _ := chain.ClientToServer(context.Background(), m)
		var res struct {
			Content []struct{ Text string }
			IsError bool
		}
		_ = json.Unmarshal(resp.Result, &res)
		fmt.Println(res.IsError, res.Content[0].Text)
	}
	// Output:
	// false ok
	// false ok
	// true request refused: quota "two-calls" limit tool_calls is 2 per session, usage would be 3; it does not reset in this session: start a new one to go on
}
