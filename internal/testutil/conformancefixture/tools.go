package conformancefixture

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// Tool names the conformance suite calls (besides the input_required tools in
// inputrequired.go).
const (
	toolSimpleText          = "test_simple_text"
	toolImage               = "test_image_content"
	toolAudio               = "test_audio_content"
	toolEmbeddedResource    = "test_embedded_resource"
	toolMixedContent        = "test_multiple_content_types"
	toolLogging             = "test_tool_with_logging"
	toolProgress            = "test_tool_with_progress"
	toolError               = "test_error_handling"
	toolSampling            = "test_sampling"
	toolElicitation         = "test_elicitation"
	toolElicitDefaults      = "test_elicitation_sep1034_defaults"
	toolElicitEnums         = "test_elicitation_sep1330_enums"
	toolJSONSchema202012    = "json_schema_2020_12_tool"
	toolReconnection        = "test_reconnection"
	toolParamHeader         = "test_x_mcp_header"
	toolMissingCapability   = "test_missing_capability"
	toolStreaming           = "test_streaming_elicitation"
	toolLogGate             = "test_logging_tool"
	toolTriggerToolChange   = "test_trigger_tool_change"
	toolWaitCancel          = "test_wait_for_cancellation"
	toolCancellations       = "test_cancellations"
	toolTriggerPromptChange = "test_trigger_prompt_change"

	// transientTool and transientPrompt are added and removed in turn by the
	// trigger tools, to cause list_changed notifications.
	transientTool   = "transient_tool"
	transientPrompt = "transient_prompt"
)

// noArgs is the input type of tools without arguments: go-sdk gives them the
// schema {"type":"object"}.
type noArgs = any

func (f *fixture) addTools() {
	s := f.server
	content := func(name, desc string, blocks func() []mcp.Content) {
		mcp.AddTool(s, &mcp.Tool{Name: name, Description: desc},
			func(context.Context, *mcp.CallToolRequest, noArgs) (*mcp.CallToolResult, any, error) {
				return &mcp.CallToolResult{Content: blocks()}, nil, nil
			})
	}
	content(toolSimpleText, "Returns a single text content block.", func() []mcp.Content {
		return []mcp.Content{&mcp.TextContent{Text: "This is a simple text response for testing."}}
	})
	content(toolImage, "Returns a single PNG image content block.", func() []mcp.Content {
		return []mcp.Content{pngContent()}
	})
	content(toolAudio, "Returns a single WAV audio content block.", func() []mcp.Content {
		return []mcp.Content{&mcp.AudioContent{Data: wavAudio(), MIMEType: "audio/wav"}}
	})
	content(toolEmbeddedResource, "Returns a single embedded text resource.", func() []mcp.Content {
		return []mcp.Content{embeddedText("test://embedded-resource", "This is an embedded resource content.")}
	})
	content(toolMixedContent, "Returns text, image and embedded resource content blocks together.", func() []mcp.Content {
		return []mcp.Content{
			&mcp.TextContent{Text: "Multiple content types test:"},
			pngContent(),
			embeddedText("test://mixed-content-resource", `{"test":"data","value":123}`),
		}
	})

	mcp.AddTool(s, &mcp.Tool{Name: toolLogging, Description: "Sends three info log notifications while it runs."}, f.logging)
	mcp.AddTool(s, &mcp.Tool{Name: toolProgress, Description: "Reports progress 0, 50 and 100 of 100 for the request's progress token, then returns the token."}, f.progress)
	mcp.AddTool(s, &mcp.Tool{Name: toolError, Description: "Always fails; the failure is reported as a tool result with isError."},
		func(context.Context, *mcp.CallToolRequest, noArgs) (*mcp.CallToolResult, any, error) {
			return nil, nil, errors.New("this tool intentionally returns an error for testing")
		})

	mcp.AddTool(s, &mcp.Tool{Name: toolSampling, Description: "Asks the client's LLM to complete a prompt (sampling/createMessage)."}, f.sampling)
	mcp.AddTool(s, &mcp.Tool{Name: toolElicitation, Description: "Asks the user for a username (elicitation/create)."}, f.elicitation)
	mcp.AddTool(s, &mcp.Tool{Name: toolElicitDefaults, Description: "Elicits primitives that carry default values (SEP-1034)."}, f.elicitWith("defaults", "Please review and update the form fields with defaults", defaultsSchema))
	mcp.AddTool(s, &mcp.Tool{Name: toolElicitEnums, Description: "Elicits every enum form: untitled, titled, legacy enumNames, and multi-select (SEP-1330)."}, f.elicitWith("enums", "Please select options from the enum fields", enumsSchema))

	mcp.AddTool(s, &mcp.Tool{
		Name:        toolJSONSchema202012,
		Description: "Has an input schema using JSON Schema 2020-12 keywords ($schema, $defs, $anchor, allOf/anyOf, if/then/else) that must survive tools/list (SEP-1613, SEP-2106).",
		InputSchema: jsonSchema202012,
	}, func(_ context.Context, _ *mcp.CallToolRequest, args map[string]any) (*mcp.CallToolResult, any, error) {
		b, err := json.Marshal(args)
		if err != nil {
			return nil, nil, err
		}
		return textResult("JSON Schema 2020-12 tool called with: " + string(b)), nil, nil
	})
	mcp.AddTool(s, &mcp.Tool{
		Name:        toolReconnection,
		Description: "Closes its SSE response stream mid-call, then answers once the client has reconnected (SEP-1699).",
	}, f.reconnection)
	mcp.AddTool(s, &mcp.Tool{
		Name:        toolParamHeader,
		Description: "Has an argument mirrored into the Mcp-Param-Region header (SEP-2243).",
		InputSchema: paramHeaderSchema,
	}, func(_ context.Context, _ *mcp.CallToolRequest, args paramHeaderArgs) (*mcp.CallToolResult, any, error) {
		return textResult(fmt.Sprintf("region=%s level=%d", args.Region, args.Level)), nil, nil
	})

	// Diagnostics of the stateless era's server scenario (SEP-2575).
	mcp.AddTool(s, &mcp.Tool{Name: toolMissingCapability, Description: "Needs the sampling client capability; without it the call fails with -32021."},
		func(_ context.Context, req *mcp.CallToolRequest, _ noArgs) (*mcp.CallToolResult, any, error) {
			if err := requireCapability(req, capSampling); err != nil {
				return nil, nil, err
			}
			return textResult("The client declared the sampling capability."), nil, nil
		})
	mcp.AddTool(s, &mcp.Tool{Name: toolStreaming, Description: "Streams progress notifications, never requests, while the call is in flight."}, f.streaming)
	mcp.AddTool(s, &mcp.Tool{Name: toolWaitCancel, Description: "Waits up to 30s for the caller to cancel the call, and counts the cancellations it sees. With a progress token it reports progress 0 once it waits, so a caller can cancel when the call has surely reached the server."},
		func(ctx context.Context, req *mcp.CallToolRequest, _ noArgs) (*mcp.CallToolResult, any, error) {
			if token := req.Params.GetProgressToken(); token != nil {
				err := req.Session.NotifyProgress(ctx, &mcp.ProgressNotificationParams{ProgressToken: token, Progress: 0, Message: "waiting for the cancellation"})
				if err != nil {
					return nil, nil, err
				}
			}
			t := time.NewTimer(30 * time.Second)
			defer t.Stop()
			select {
			case <-t.C:
				return textResult("not cancelled"), nil, nil
			case <-ctx.Done():
				f.cancelled.Add(1)
				return nil, nil, ctx.Err()
			case <-f.life.Done():
				// The fixture stops. A call its server does not stop when the
				// caller leaves (go-sdk's stateless handler) would otherwise
				// hold a closing HTTP server (httptest's Close waits for every
				// handler) for the rest of the 30s. Not a cancellation.
				return nil, nil, errors.New("the fixture stopped")
			}
		})
	mcp.AddTool(s, &mcp.Tool{Name: toolCancellations, Description: "Reports how many calls of " + toolWaitCancel + " were cancelled."},
		func(context.Context, *mcp.CallToolRequest, noArgs) (*mcp.CallToolResult, any, error) {
			return textResult(fmt.Sprintf("cancelled=%d", f.cancelled.Load())), nil, nil
		})
	mcp.AddTool(s, &mcp.Tool{Name: toolLogGate, Description: "Tries to log; the message is dropped unless the request set a log level."},
		func(ctx context.Context, req *mcp.CallToolRequest, _ noArgs) (*mcp.CallToolResult, any, error) {
			_ = req.Session.Log(ctx, &mcp.LoggingMessageParams{Level: "info", Logger: "fixture", Data: "test_logging_tool ran"})
			return textResult("Logged at info, if the request's log level allows it."), nil, nil
		})
	var toolShown, promptShown atomic.Bool
	mcp.AddTool(s, &mcp.Tool{Name: toolTriggerToolChange, Description: "Adds or removes a transient tool, causing notifications/tools/list_changed."},
		func(context.Context, *mcp.CallToolRequest, noArgs) (*mcp.CallToolResult, any, error) {
			if toolShown.CompareAndSwap(true, false) {
				s.RemoveTools(transientTool)
				return textResult("removed " + transientTool), nil, nil
			}
			toolShown.Store(true)
			mcp.AddTool(s, &mcp.Tool{Name: transientTool, Description: "Exists only between two calls of " + toolTriggerToolChange + "."},
				func(context.Context, *mcp.CallToolRequest, noArgs) (*mcp.CallToolResult, any, error) {
					return textResult("transient"), nil, nil
				})
			return textResult("added " + transientTool), nil, nil
		})
	mcp.AddTool(s, &mcp.Tool{Name: toolTriggerPromptChange, Description: "Adds or removes a transient prompt, causing notifications/prompts/list_changed."},
		func(context.Context, *mcp.CallToolRequest, noArgs) (*mcp.CallToolResult, any, error) {
			if promptShown.CompareAndSwap(true, false) {
				s.RemovePrompts(transientPrompt)
				return textResult("removed " + transientPrompt), nil, nil
			}
			promptShown.Store(true)
			s.AddPrompt(&mcp.Prompt{Name: transientPrompt, Description: "Exists only between two calls of " + toolTriggerPromptChange + "."},
				func(context.Context, *mcp.GetPromptRequest) (*mcp.GetPromptResult, error) {
					return &mcp.GetPromptResult{Messages: []*mcp.PromptMessage{{Role: "user", Content: &mcp.TextContent{Text: "transient"}}}}, nil
				})
			return textResult("added " + transientPrompt), nil, nil
		})
}

// logging sends three info messages, a little apart, before it answers.
func (f *fixture) logging(ctx context.Context, req *mcp.CallToolRequest, _ noArgs) (*mcp.CallToolResult, any, error) {
	for i, msg := range []string{"Tool execution started", "Tool processing data", "Tool execution completed"} {
		if i > 0 {
			if err := sleep(ctx, 50*time.Millisecond); err != nil {
				return nil, nil, err
			}
		}
		if err := req.Session.Log(ctx, &mcp.LoggingMessageParams{Level: "info", Logger: "fixture", Data: msg}); err != nil {
			return nil, nil, err
		}
	}
	return textResult("Tool with logging executed successfully"), nil, nil
}

// progress reports three steps for the request's progress token, if it has
// one, and answers with the token.
func (f *fixture) progress(ctx context.Context, req *mcp.CallToolRequest, _ noArgs) (*mcp.CallToolResult, any, error) {
	token := req.Params.GetProgressToken()
	if token != nil {
		const total = 100
		for i, done := range []float64{0, 50, 100} {
			if i > 0 {
				if err := sleep(ctx, 50*time.Millisecond); err != nil {
					return nil, nil, err
				}
			}
			err := req.Session.NotifyProgress(ctx, &mcp.ProgressNotificationParams{
				ProgressToken: token,
				Progress:      done,
				Total:         total,
				Message:       fmt.Sprintf("step %d of 3", i+1),
			})
			if err != nil {
				return nil, nil, err
			}
		}
	}
	return textResult(fmt.Sprint(token)), nil, nil
}

// streaming sends a progress notification, when the request has a token,
// and answers; it never sends a request to the client.
func (f *fixture) streaming(ctx context.Context, req *mcp.CallToolRequest, _ noArgs) (*mcp.CallToolResult, any, error) {
	if token := req.Params.GetProgressToken(); token != nil {
		err := req.Session.NotifyProgress(ctx, &mcp.ProgressNotificationParams{ProgressToken: token, Progress: 1, Total: 1})
		if err != nil {
			return nil, nil, err
		}
	}
	return textResult("Streamed notifications only; no request was sent to the client."), nil, nil
}

// reconnection closes the SSE stream of its own response, where the
// transport allows it, and answers a little later on the resumed stream.
func (f *fixture) reconnection(ctx context.Context, req *mcp.CallToolRequest, _ noArgs) (*mcp.CallToolResult, any, error) {
	if req.Extra != nil && req.Extra.CloseSSEStream != nil {
		req.Extra.CloseSSEStream(mcp.CloseSSEStreamArgs{RetryAfter: 10 * time.Millisecond})
	}
	if err := sleep(ctx, 100*time.Millisecond); err != nil {
		return nil, nil, err
	}
	return textResult("Reconnection test completed: the result arrived after the stream was closed."), nil, nil
}

// samplingArgs are the arguments of test_sampling.
type samplingArgs struct {
	Prompt string `json:"prompt" jsonschema:"the prompt to send to the client's LLM"`
}

// sampling asks the client's LLM to complete the prompt. It is written in
// the input_required style; for legacy clients go-sdk turns the input request
// into a sampling/createMessage request on the session.
func (f *fixture) sampling(_ context.Context, req *mcp.CallToolRequest, args samplingArgs) (*mcp.CallToolResult, any, error) {
	const key = "completion"
	if text, ok := samplingText(req.Params.InputResponses, key); ok {
		return textResult("LLM response: " + text), nil, nil
	}
	if err := requireCapability(req, capSampling); err != nil {
		return nil, nil, err
	}
	return &mcp.CallToolResult{InputRequests: mcp.InputRequestMap{
		key: &mcp.CreateMessageParams{
			Messages:  []*mcp.SamplingMessage{{Role: "user", Content: &mcp.TextContent{Text: args.Prompt}}},
			MaxTokens: 100,
		},
	}}, nil, nil
}

// elicitationArgs are the arguments of test_elicitation.
type elicitationArgs struct {
	Message string `json:"message" jsonschema:"the message to show the user"`
}

var usernameSchema = json.RawMessage(`{
	"type": "object",
	"properties": {
		"username": {"type": "string", "description": "Your preferred username"},
		"email": {"type": "string", "description": "Your email address"}
	},
	"required": ["username"]
}`)

func (f *fixture) elicitation(ctx context.Context, req *mcp.CallToolRequest, args elicitationArgs) (*mcp.CallToolResult, any, error) {
	return f.elicitWith("user", args.Message, usernameSchema)(ctx, req, nil)
}

// elicitWith returns a tool handler that elicits a form with the given
// schema, under the input key key, and reports the user's answer.
func (f *fixture) elicitWith(key, message string, schema json.RawMessage) mcp.ToolHandlerFor[noArgs, any] {
	return func(_ context.Context, req *mcp.CallToolRequest, _ noArgs) (*mcp.CallToolResult, any, error) {
		if res, ok := req.Params.InputResponses[key].(*mcp.ElicitResult); ok && res != nil {
			content, err := json.Marshal(res.Content)
			if err != nil {
				return nil, nil, err
			}
			return textResult(fmt.Sprintf("Elicitation completed: action=%s, content=%s", res.Action, content)), nil, nil
		}
		if err := requireCapability(req, capElicitation); err != nil {
			return nil, nil, err
		}
		return &mcp.CallToolResult{InputRequests: mcp.InputRequestMap{
			key: &mcp.ElicitParams{Message: message, RequestedSchema: schema},
		}}, nil, nil
	}
}

// defaultsSchema has a default for every primitive type (SEP-1034).
var defaultsSchema = json.RawMessage(`{
	"type": "object",
	"properties": {
		"name":     {"type": "string", "description": "User name", "default": "John Doe"},
		"age":      {"type": "integer", "description": "User age", "default": 30},
		"score":    {"type": "number", "description": "User score", "default": 95.5},
		"status":   {"type": "string", "description": "User status", "enum": ["active", "inactive", "pending"], "default": "active"},
		"verified": {"type": "boolean", "description": "Verification status", "default": true}
	}
}`)

// enumsSchema has the five enum forms of SEP-1330.
var enumsSchema = json.RawMessage(`{
	"type": "object",
	"properties": {
		"untitledSingle": {"type": "string", "enum": ["option1", "option2", "option3"]},
		"titledSingle": {"type": "string", "oneOf": [
			{"const": "value1", "title": "First Option"},
			{"const": "value2", "title": "Second Option"},
			{"const": "value3", "title": "Third Option"}
		]},
		"legacyEnum": {"type": "string", "enum": ["opt1", "opt2", "opt3"], "enumNames": ["Option One", "Option Two", "Option Three"]},
		"untitledMulti": {"type": "array", "minItems": 1, "maxItems": 3,
			"items": {"type": "string", "enum": ["option1", "option2", "option3"]}},
		"titledMulti": {"type": "array", "minItems": 1, "maxItems": 3,
			"items": {"anyOf": [
				{"const": "value1", "title": "First Choice"},
				{"const": "value2", "title": "Second Choice"},
				{"const": "value3", "title": "Third Choice"}
			]}}
	}
}`)

// jsonSchema202012 is the input schema whose keywords the
// json-schema-2020-12 scenario expects to find unchanged in tools/list.
var jsonSchema202012 = json.RawMessage(`{
	"$schema": "https://json-schema.org/draft/2020-12/schema",
	"type": "object",
	"$defs": {
		"address": {
			"$anchor": "addressDef",
			"type": "object",
			"properties": {"street": {"type": "string"}, "city": {"type": "string"}}
		}
	},
	"properties": {
		"name": {"type": "string"},
		"address": {"$ref": "#/$defs/address"},
		"contactMethod": {"type": "string", "enum": ["phone", "email"]},
		"phone": {"type": "string"},
		"email": {"type": "string"}
	},
	"allOf": [{"anyOf": [{"required": ["phone"]}, {"required": ["email"]}]}],
	"if": {"properties": {"contactMethod": {"const": "phone"}}, "required": ["contactMethod"]},
	"then": {"required": ["phone"]},
	"else": {"required": ["email"]},
	"additionalProperties": false
}`)

// paramHeaderArgs are the arguments of test_x_mcp_header; region is
// mirrored into the Mcp-Param-Region header by stateless-era clients.
type paramHeaderArgs struct {
	Region string `json:"region,omitempty"`
	Level  int    `json:"level,omitempty"`
}

var paramHeaderSchema = json.RawMessage(`{
	"type": "object",
	"properties": {
		"region": {"type": "string", "description": "Mirrored into the Mcp-Param-Region header.", "x-mcp-header": "Region"},
		"level": {"type": "integer", "description": "Not mirrored into a header."}
	}
}`)

// capability names a client capability a tool may need.
type capability int

const (
	capSampling capability = iota
	capElicitation
	capRoots
)

// hasCapability reports whether the caller declared c: per request in the
// stateless era, in initialize for legacy sessions.
func hasCapability(caps *mcp.ClientCapabilities, c capability) bool {
	if caps == nil {
		return false
	}
	switch c {
	case capSampling:
		return caps.Sampling != nil
	case capElicitation:
		return caps.Elicitation != nil
	case capRoots:
		return caps.RootsV2 != nil || caps.Roots.ListChanged
	}
	return false
}

// requireCapability returns a MissingRequiredClientCapability error (-32021)
// when the caller did not declare c.
func requireCapability(req *mcp.CallToolRequest, c capability) error {
	if hasCapability(req.ClientCapabilities(), c) {
		return nil
	}
	var need mcp.ClientCapabilities
	switch c {
	case capSampling:
		need.Sampling = &mcp.SamplingCapabilities{}
	case capElicitation:
		need.Elicitation = &mcp.ElicitationCapabilities{}
	case capRoots:
		need.RootsV2 = &mcp.RootCapabilities{}
	}
	data, err := json.Marshal(mcp.MissingRequiredClientCapabilityData{RequiredCapabilities: &need})
	if err != nil {
		return err
	}
	return &jsonrpc.Error{
		Code:    mcp.CodeMissingRequiredClientCapabilities,
		Message: "the client did not declare a capability this tool needs",
		Data:    data,
	}
}

// samplingText returns the text of the sampling result stored under key.
func samplingText(responses mcp.InputResponseMap, key string) (string, bool) {
	res, ok := responses[key].(*mcp.CreateMessageWithToolsResult)
	if !ok || res == nil {
		return "", false
	}
	for _, c := range res.Content {
		if t, ok := c.(*mcp.TextContent); ok {
			return t.Text, true
		}
	}
	return "(no text in the sampling result)", true
}

func textResult(text string) *mcp.CallToolResult {
	return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: text}}}
}

func pngContent() *mcp.ImageContent {
	return &mcp.ImageContent{Data: pngImage(), MIMEType: "image/png"}
}

func embeddedText(uri, text string) *mcp.EmbeddedResource {
	return &mcp.EmbeddedResource{Resource: &mcp.ResourceContents{URI: uri, MIMEType: "text/plain", Text: text}}
}

// sleep waits for d, or until ctx is done.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
