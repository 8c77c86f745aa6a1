// Package catalog is a session's view of its upstream's tools: the tool
// definitions learned from the tools/list results the session was given
// (every page), forgotten when the server says the list changed
// (notifications/tools/list_changed). It is the one reader of tools/list
// results in the gateway: the frontend's x-mcp-header checks and retry
// annotations, the era bridge's Mcp-Param-* mirrors and the policy stage's
// input validation all read the same catalog.
//
// The package imports nothing of the gateway's, so any layer may hold one.
package catalog

import (
	"bytes"
	"encoding/json"
	"slices"
	"strings"
	"sync"
)

// MaxTools bounds the tools one catalog keeps: an upstream listing more is
// known only by its first MaxTools tools (the others are unknown, as if
// never listed).
const MaxTools = 4096

// maxBindingDepth bounds how deep x-mcp-header annotations are looked for
// in an input schema.
const maxBindingDepth = 16

// Tool is one tool definition as the upstream listed it. A Tool is
// immutable once in a catalog; a later listing replaces it.
type Tool struct {
	Name string
	// InputSchema is the tool's inputSchema as listed (raw JSON), nil
	// when it had none.
	InputSchema json.RawMessage
	// ReadOnly and Idempotent are its readOnlyHint and idempotentHint
	// annotations (hints from the server: trust them only where the
	// operator said so).
	ReadOnly, Idempotent bool
	// Headers are its x-mcp-header bindings: the argument at Path is
	// mirrored in the Mcp-Param-{Header} request header. Empty when none.
	Headers []Binding

	once     sync.Once
	compiled any
}

// Binding is one x-mcp-header annotation: the argument at Path (object
// keys from the arguments' root, through properties only) is mirrored in
// the header Mcp-Param-{Header}.
type Binding struct {
	Path   []string
	Header string
}

// Compiled returns what build makes of the tool's input schema, built once
// per definition (a validator, for the policy stage). The result is kept
// with the definition, so a new listing of the tool compiles again.
func (t *Tool) Compiled(build func(schema json.RawMessage) any) any {
	t.once.Do(func() { t.compiled = build(t.InputSchema) })
	return t.compiled
}

// Catalog is one session's tools. Safe for concurrent use. The zero value
// is not usable; call New.
type Catalog struct {
	mu    sync.RWMutex
	gen   uint64
	tools map[string]*Tool
	// listed: some tools/list page was observed since the last change.
	listed bool
}

// New returns an empty catalog.
func New() *Catalog { return &Catalog{tools: map[string]*Tool{}} }

// Gen is the catalog's generation: take it before sending a tools/list
// request and give it to Observe with the response, so that a listing
// answered across a notifications/tools/list_changed does not bring back
// definitions the server has since changed.
func (c *Catalog) Gen() uint64 {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.gen
}

// Invalidate forgets every tool: the server said its list changed. Until
// the next listing every tool is unknown.
func (c *Catalog) Invalidate() {
	c.mu.Lock()
	c.gen++
	clear(c.tools)
	c.listed = false
	c.mu.Unlock()
}

// Listed reports whether a tools/list page was observed since the catalog
// was made or last invalidated.
func (c *Catalog) Listed() bool {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.listed
}

// Tool returns the named tool's definition, nil when the catalog does not
// know it.
func (c *Catalog) Tool(name string) *Tool {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.tools[name]
}

// Len is the number of tools known.
func (c *Catalog) Len() int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.tools)
}

// Observe feeds one tools/list result page (the response's result member)
// into the catalog; gen is Gen as it was when the request was sent. It
// returns the page's nextCursor ("" on the last page). A result that is not
// a tools/list result changes nothing. A tool object that names itself
// ambiguously (a key differing from "name" only by case, as a
// case-insensitive reader would take) is not learned: what the catalog
// knows of it could differ from what a client reads.
func (c *Catalog) Observe(gen uint64, result []byte) (nextCursor string) {
	page, ok := ParsePage(result)
	if !ok {
		return ""
	}
	tools := make([]*Tool, 0, len(page.Tools))
	for _, raw := range page.Tools {
		if t := parseTool(raw); t != nil {
			tools = append(tools, t)
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if gen != c.gen {
		return page.NextCursor
	}
	c.listed = true
	for _, t := range tools {
		if _, known := c.tools[t.Name]; !known && len(c.tools) >= MaxTools {
			continue
		}
		c.tools[t.Name] = t
	}
	return page.NextCursor
}

// Page is a tools/list result page read with exact (case-sensitive) keys.
type Page struct {
	// Tools are the raw tool objects, in order.
	Tools []json.RawMessage
	// NextCursor is the page's nextCursor, "" when none (or not a string).
	NextCursor string
}

// ParsePage reads a tools/list result; ok is false when it is not a JSON
// object with a tools array.
func ParsePage(result []byte) (Page, bool) {
	var r map[string]json.RawMessage
	if json.Unmarshal(result, &r) != nil || r == nil {
		return Page{}, false
	}
	var p Page
	if json.Unmarshal(r["tools"], &p.Tools) != nil || p.Tools == nil {
		return Page{}, false
	}
	_ = json.Unmarshal(r["nextCursor"], &p.NextCursor)
	return p, true
}

// Names is Values(obj, "name"): the names a reader could take for a tool
// (or prompt) object, and whether it names itself unambiguously.
func Names(obj json.RawMessage) (names []string, clear bool) { return Values(obj, "name") }

// Values returns every value a reader could take for the object's member
// key (lower case): the string values of the members whose key is key in
// any letter case (a case-insensitive decoder matches them all), and
// whether the object is unambiguous (exactly one such member, spelt key,
// a string).
func Values(obj json.RawMessage, key string) (vals []string, clear bool) {
	clear = true
	exact := 0
	err := members(obj, func(k string, v json.RawMessage) {
		if len(k) != len(key) || !strings.EqualFold(k, key) {
			return
		}
		var s string
		if json.Unmarshal(v, &s) != nil {
			clear = false
			return
		}
		if k == key {
			exact++
		} else {
			clear = false
		}
		vals = append(vals, s)
	})
	return vals, err == nil && clear && exact == 1
}

// Members calls fn for each member of a JSON object, in order, duplicates
// included; an error when obj is not an object.
func Members(obj json.RawMessage, fn func(key string, v json.RawMessage)) error {
	return members(obj, fn)
}

// members calls fn for each member of a JSON object, in order, duplicates
// included.
func members(obj json.RawMessage, fn func(key string, v json.RawMessage)) error {
	dec := json.NewDecoder(bytes.NewReader(obj))
	tok, err := dec.Token()
	if err != nil {
		return err
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return errNotObject
	}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return err
		}
		key, _ := tok.(string)
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return err
		}
		fn(key, v)
	}
	_, err = dec.Token()
	return err
}

type catalogError string

func (e catalogError) Error() string { return string(e) }

const errNotObject = catalogError("catalog: not a JSON object")

// parseTool reads one tool definition; nil when it is not one the catalog
// can know for sure.
func parseTool(raw json.RawMessage) *Tool {
	names, clear := Names(raw)
	if !clear || len(names) != 1 || names[0] == "" {
		return nil
	}
	var t struct {
		InputSchema json.RawMessage `json:"inputSchema"`
		Annotations *struct {
			ReadOnly   *bool `json:"readOnlyHint"`
			Idempotent *bool `json:"idempotentHint"`
		} `json:"annotations"`
	}
	if json.Unmarshal(raw, &t) != nil {
		return nil
	}
	tool := &Tool{Name: names[0]}
	if len(t.InputSchema) > 0 && string(t.InputSchema) != "null" {
		tool.InputSchema = t.InputSchema
	}
	if a := t.Annotations; a != nil {
		tool.ReadOnly = a.ReadOnly != nil && *a.ReadOnly
		tool.Idempotent = a.Idempotent != nil && *a.Idempotent
	}
	tool.Headers = bindings(tool.InputSchema, nil, []Binding{})
	return tool
}

// bindings collects the x-mcp-header annotations reachable from a schema's
// root through properties only (the only places the spec allows them), in
// a stable order.
func bindings(schema json.RawMessage, path []string, out []Binding) []Binding {
	if len(path) > maxBindingDepth || len(schema) == 0 {
		return out
	}
	var s struct {
		Properties map[string]json.RawMessage `json:"properties"`
	}
	if json.Unmarshal(schema, &s) != nil {
		return out
	}
	names := make([]string, 0, len(s.Properties))
	for n := range s.Properties {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		p := append(slices.Clip(path), n)
		var prop struct {
			Header *string `json:"x-mcp-header"`
		}
		if json.Unmarshal(s.Properties[n], &prop) == nil && prop.Header != nil && *prop.Header != "" {
			out = append(out, Binding{Path: p, Header: *prop.Header})
		}
		out = bindings(s.Properties[n], p, out)
	}
	return out
}

// Key is the context key under which the catalog of the session a message
// belongs to travels through the chain (a *Catalog). The frontend's
// context answers it; use From.
type Key struct{}

// From returns the catalog ctx carries, nil when none.
func From(ctx interface{ Value(any) any }) *Catalog {
	c, _ := ctx.Value(Key{}).(*Catalog)
	return c
}

// safeMethods can be sent again without changing anything upstream.
var safeMethods = []string{
	"ping", "initialize", "server/discover", "tools/list", "prompts/list", "prompts/get",
	"resources/list", "resources/read", "resources/templates/list", "completion/complete",
	"logging/setLevel", "resources/subscribe", "resources/unsubscribe",
}

// Repeat is the one rule of which requests may be sent to the upstream
// again (after a lost upstream session, a lost response, a transient
// failure): the route's retry_tools and trust_annotations.
type Repeat struct {
	// Tools are the tools the operator says are safe to call again.
	Tools []string
	// TrustAnnotations lets a tool's readOnlyHint or idempotentHint, as
	// the session's catalog holds it, make it safe too.
	TrustAnnotations bool
}

// Safe says whether a request of method (and tool name, for tools/call)
// may be repeated: discovery, initialize, lists, reads, prompts,
// completions, ping, and the tools r admits, looked up in c (which may be
// nil: no annotation is then known). Nothing else ever is.
func (r Repeat) Safe(method, name string, c *Catalog) bool {
	if slices.Contains(safeMethods, method) {
		return true
	}
	if method != "tools/call" {
		return false
	}
	if slices.Contains(r.Tools, name) {
		return true
	}
	if !r.TrustAnnotations || c == nil {
		return false
	}
	t := c.Tool(name)
	return t != nil && (t.ReadOnly || t.Idempotent)
}
