package policy

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/mcpgate/mcpgate/internal/catalog"
	"github.com/mcpgate/mcpgate/internal/core"
)

// maxListPages bounds the tools/list pages the stage reads itself to learn
// a tool's inputSchema.
const maxListPages = 32

// maxReported bounds the schema violations one refusal lists.
const maxReported = 8

// validator is a tool's compiled inputSchema, or why it could not be
// compiled.
type validator struct {
	schema *jsonschema.Schema
	err    error
}

func compileSchema(raw json.RawMessage) any {
	if raw == nil {
		return &validator{}
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
	if err != nil {
		return &validator{err: err}
	}
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	// A tool's schema is the server's word: nothing it refers to is
	// fetched (no files, no network).
	c.UseLoader(jsonschema.SchemeURLLoader{})
	const loc = "urn:mcpgate:tool-input-schema"
	if err := c.AddResource(loc, doc); err != nil {
		return &validator{err: err}
	}
	s, err := c.Compile(loc)
	return &validator{schema: s, err: err}
}

var listSeq atomic.Uint64

// validateInput checks a tools/call's arguments against the tool's
// inputSchema from the session's catalog; a tool the catalog does not know
// is looked up with tools/list first. A call that fails never reaches the
// server: the refusal says which argument broke which rule.
func (e *Effective) validateInput(ctx context.Context, next core.Handler, m *core.Message, raw []byte) *denied {
	pol := e.validate
	cat := catalog.From(ctx)
	if cat == nil {
		return &denied{policy: pol, rule: "validate_input", msg: "policy " + quote(pol) + " validates tool arguments, but this session has no tool catalog"}
	}
	tool := cat.Tool(m.Name)
	if tool == nil {
		listTools(ctx, next, m, cat)
		if tool = cat.Tool(m.Name); tool == nil {
			return &denied{policy: pol, rule: "validate_input", msg: "tool " + quote(m.Name) + " is not in the server's tool list, so policy " + quote(pol) + " cannot validate its arguments"}
		}
	}
	v := tool.Compiled(compileSchema).(*validator)
	if v.err != nil {
		return &denied{policy: pol, rule: "validate_input", msg: "the server's inputSchema of tool " + quote(m.Name) + " is not a valid JSON Schema, so policy " + quote(pol) + " refuses the call: " + oneLine(v.err.Error())}
	}
	if v.schema == nil {
		return nil
	}
	if raw == nil {
		raw = []byte(`{}`)
	}
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
	if err != nil {
		return &denied{policy: pol, rule: "validate_input", msg: fmt.Sprintf("invalid arguments for tool %q: not JSON: %v", m.Name, err)}
	}
	err = v.schema.Validate(inst)
	if err == nil {
		return nil
	}
	var ve *jsonschema.ValidationError
	if !errors.As(err, &ve) {
		return &denied{policy: pol, rule: "validate_input", msg: fmt.Sprintf("invalid arguments for tool %q: %v", m.Name, err)}
	}
	return &denied{policy: pol, rule: "validate_input", msg: describe(m.Name, pol, ve)}
}

// describe lists the violations for a model to read: which argument (a
// JSON pointer into the arguments), what is wrong, and the schema rule
// (its keyword location).
func describe(tool, pol string, ve *jsonschema.ValidationError) string {
	var b strings.Builder
	fmt.Fprintf(&b, "invalid arguments for tool %q (checked against its inputSchema by policy %q):", tool, pol)
	out := ve.BasicOutput()
	n := 0
	var lines []string
	for _, u := range out.Errors {
		if u.Error == nil || strings.HasPrefix(u.Error.String(), "validation failed") {
			continue
		}
		at := u.InstanceLocation
		if at == "" {
			at = "/"
		}
		lines = append(lines, fmt.Sprintf("\n- argument %s: %s (schema rule %s)", at, u.Error.String(), keyword(u.KeywordLocation)))
	}
	if len(lines) == 0 {
		lines = append(lines, "\n- "+oneLine(ve.Error()))
	}
	lines = slices.Compact(lines)
	for _, l := range lines {
		if n == maxReported {
			fmt.Fprintf(&b, "\n- and %d more", len(lines)-n)
			break
		}
		b.WriteString(l)
		n++
	}
	return b.String()
}

func keyword(loc string) string {
	if loc == "" {
		return "/"
	}
	return loc
}

// listTools reads the server's tool list through the rest of the chain
// (the catalog learns it as every tools/list response), so that a call
// made before the client listed the tools, or after they changed, is
// validated too.
func listTools(ctx context.Context, next core.Handler, call *core.Message, cat *catalog.Catalog) {
	var meta json.RawMessage
	if call.Era == core.EraModern {
		var p struct {
			Meta json.RawMessage `json:"_meta"`
		}
		_ = json.Unmarshal(call.Params, &p)
		meta = p.Meta
	}
	cursor := ""
	for range maxListPages {
		var b bytes.Buffer
		fmt.Fprintf(&b, `{"jsonrpc":"2.0","id":"mcpgate-policy-list-%d","method":"tools/list","params":{`, listSeq.Add(1))
		sep := ""
		if meta != nil {
			b.WriteString(`"_meta":`)
			b.Write(meta)
			sep = ","
		}
		if cursor != "" {
			q, _ := json.Marshal(cursor)
			b.WriteString(sep + `"cursor":`)
			b.Write(q)
		}
		b.WriteString("}}")
		req, err := core.Decode(b.Bytes())
		if err != nil {
			return
		}
		req.Direction, req.Era, req.Session, req.Received = call.Direction, call.Era, call.Session, call.Received
		resp, err := next(ctx, req)
		if err != nil || resp == nil || resp.Kind != core.KindResponse {
			return
		}
		page, ok := catalog.ParsePage(resp.Result)
		if !ok || page.NextCursor == "" || cat.Tool(call.Name) != nil {
			return
		}
		cursor = page.NextCursor
	}
}
