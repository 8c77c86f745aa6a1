package catalog_test

import (
	"encoding/json"
	"fmt"
	"slices"
	"testing"

	"github.com/mcpgate/mcpgate/internal/catalog"
)

func TestObservePages(t *testing.T) {
	t.Parallel()
	c := catalog.New()
	gen := c.Gen()
	next := c.Observe(gen, []byte(`{"tools":[{"name":"a","inputSchema":{"type":"object","properties":{"region":{"type":"string","x-mcp-header":"Region"},"opts":{"type":"object","properties":{"zone":{"x-mcp-header":"Zone"}}}}},"annotations":{"readOnlyHint":true}}],"nextCursor":"p2"}`))
	if next != "p2" {
		t.Fatalf("nextCursor %q", next)
	}
	if c.Observe(gen, []byte(`{"tools":[{"name":"b","annotations":{"idempotentHint":true}}]}`)) != "" {
		t.Fatal("last page has a cursor")
	}
	a, b := c.Tool("a"), c.Tool("b")
	if a == nil || b == nil || !a.ReadOnly || a.Idempotent || !b.Idempotent || c.Len() != 2 || !c.Listed() {
		t.Fatalf("a=%+v b=%+v", a, b)
	}
	want := []catalog.Binding{{Path: []string{"opts", "zone"}, Header: "Zone"}, {Path: []string{"region"}, Header: "Region"}}
	if !slices.EqualFunc(a.Headers, want, func(x, y catalog.Binding) bool { return x.Header == y.Header && slices.Equal(x.Path, y.Path) }) {
		t.Fatalf("bindings %+v", a.Headers)
	}
	if string(a.InputSchema) == "" || b.InputSchema != nil {
		t.Fatalf("schemas %s / %s", a.InputSchema, b.InputSchema)
	}
}

// A listing answered across a list_changed does not bring back what the
// server has since changed; the next listing is learned.
func TestInvalidate(t *testing.T) {
	t.Parallel()
	c := catalog.New()
	before := c.Gen()
	c.Observe(before, []byte(`{"tools":[{"name":"old"}]}`))
	c.Invalidate()
	if c.Tool("old") != nil || c.Listed() {
		t.Fatal("invalidated catalog still knows old")
	}
	c.Observe(before, []byte(`{"tools":[{"name":"stale"}]}`))
	if c.Tool("stale") != nil {
		t.Fatal("a listing sent before the change was learned")
	}
	c.Observe(c.Gen(), []byte(`{"tools":[{"name":"new"}]}`))
	if c.Tool("new") == nil {
		t.Fatal("new listing not learned")
	}
}

// Tools a case-insensitive reader could name otherwise are not learned.
func TestAmbiguousNames(t *testing.T) {
	t.Parallel()
	c := catalog.New()
	c.Observe(c.Gen(), []byte(`{"tools":[{"name":"x","Name":"y"},{"NAME":"z"},{"name":7},{"name":"ok"}]}`))
	if c.Len() != 1 || c.Tool("ok") == nil {
		t.Fatalf("learned %d tools", c.Len())
	}
	names, clear := catalog.Names(json.RawMessage(`{"name":"a","nAme":"b"}`))
	if clear || !slices.Equal(names, []string{"a", "b"}) {
		t.Fatalf("names %v clear %v", names, clear)
	}
}

func TestBounded(t *testing.T) {
	t.Parallel()
	c := catalog.New()
	var page []byte
	page = append(page, `{"tools":[`...)
	for i := range catalog.MaxTools + 10 {
		if i > 0 {
			page = append(page, ',')
		}
		page = fmt.Appendf(page, `{"name":"t%d"}`, i)
	}
	page = append(page, "]}"...)
	c.Observe(c.Gen(), page)
	if c.Len() != catalog.MaxTools {
		t.Fatalf("%d tools kept", c.Len())
	}
}

func TestCompiledOnce(t *testing.T) {
	t.Parallel()
	c := catalog.New()
	c.Observe(c.Gen(), []byte(`{"tools":[{"name":"a","inputSchema":{"type":"object"}}]}`))
	n := 0
	build := func(s json.RawMessage) any { n++; return string(s) }
	tool := c.Tool("a")
	if tool.Compiled(build) != `{"type":"object"}` || tool.Compiled(build) != `{"type":"object"}` || n != 1 {
		t.Fatalf("built %d times", n)
	}
}

func FuzzObserve(f *testing.F) {
	f.Add([]byte(`{"tools":[{"name":"a","inputSchema":{"properties":{"x":{"x-mcp-header":"X"}}}}],"nextCursor":"c"}`))
	f.Add([]byte(`{"tools":[{"name":"a","NAME":"b"}]}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, b []byte) {
		c := catalog.New()
		c.Observe(c.Gen(), b)
		_, _ = catalog.Names(b)
	})
}
