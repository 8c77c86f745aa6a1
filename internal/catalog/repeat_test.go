package catalog_test

import (
	"testing"

	"github.com/mcpgate/mcpgate/internal/catalog"
)

func TestRepeat(t *testing.T) {
	t.Parallel()
	c := catalog.New()
	c.Observe(c.Gen(), []byte(`{"tools":[{"name":"get","inputSchema":{"type":"object"},"annotations":{"readOnlyHint":true}},`+
		`{"name":"put","inputSchema":{"type":"object"},"annotations":{"idempotentHint":true}},{"name":"rm","inputSchema":{"type":"object"}}]}`))
	listed := catalog.Repeat{Tools: []string{"rm"}}
	trusted := catalog.Repeat{TrustAnnotations: true}
	for _, tt := range []struct {
		r            catalog.Repeat
		method, name string
		cat          *catalog.Catalog
		want         bool
	}{
		{catalog.Repeat{}, "tools/list", "", nil, true},
		{catalog.Repeat{}, "initialize", "", nil, true},
		{catalog.Repeat{}, "server/discover", "", nil, true},
		{catalog.Repeat{}, "resources/read", "", nil, true},
		{catalog.Repeat{}, "prompts/get", "", nil, true},
		{catalog.Repeat{}, "sampling/createMessage", "", nil, false},
		{catalog.Repeat{}, "tasks/cancel", "", nil, false},
		{catalog.Repeat{}, "tools/call", "get", c, false}, // annotations not trusted
		{listed, "tools/call", "rm", nil, true},
		{listed, "tools/call", "get", c, false},
		{trusted, "tools/call", "get", c, true},
		{trusted, "tools/call", "put", c, true},
		{trusted, "tools/call", "rm", c, false},
		{trusted, "tools/call", "get", nil, false}, // no catalog: nothing known
		{trusted, "tools/call", "unknown", c, false},
	} {
		if got := tt.r.Safe(tt.method, tt.name, tt.cat); got != tt.want {
			t.Errorf("%+v.Safe(%s, %s) = %v, want %v", tt.r, tt.method, tt.name, got, tt.want)
		}
	}
}
