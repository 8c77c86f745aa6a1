package conformancefixture

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// Names of the multi-round-trip (SEP-2322) tools and prompt.
const (
	toolIRElicitation    = "test_input_required_result_elicitation"
	toolIRSampling       = "test_input_required_result_sampling"
	toolIRListRoots      = "test_input_required_result_list_roots"
	toolIRRequestState   = "test_input_required_result_request_state"
	toolIRMultipleInputs = "test_input_required_result_multiple_inputs"
	toolIRMultiRound     = "test_input_required_result_multi_round"
	toolIRTamperedState  = "test_input_required_result_tampered_state"
	toolIRCapabilities   = "test_input_required_result_capabilities"
	promptIR             = "test_input_required_result_prompt"
)

// stateLifetime bounds how long a requestState stays valid.
const stateLifetime = 10 * time.Minute

func (f *fixture) addInputRequiredTools() {
	s := f.server
	add := func(name, desc string, h mcp.ToolHandlerFor[noArgs, any]) {
		mcp.AddTool(s, &mcp.Tool{Name: name, Description: desc}, h)
	}
	add(toolIRElicitation, "Asks for the caller's name with an input_required elicitation, then greets them.", f.irElicitation)
	add(toolIRSampling, "Asks the client's LLM a question with an input_required sampling request.", f.irSampling)
	add(toolIRListRoots, "Asks for the client's roots with an input_required roots/list request.", f.irListRoots)
	add(toolIRRequestState, "Asks for a confirmation and round-trips an HMAC-protected requestState.", f.irConfirm(toolIRRequestState))
	add(toolIRTamperedState, "Like "+toolIRRequestState+"; a retry whose requestState fails verification is rejected with -32602.", f.irConfirm(toolIRTamperedState))
	add(toolIRMultipleInputs, "Asks for an elicitation, a sampling and a roots/list answer in one round.", f.irMultipleInputs)
	add(toolIRMultiRound, "Asks for a name, then a colour, in two rounds carried by requestState.", f.irMultiRound)
	add(toolIRCapabilities, "Asks only for the kinds of input the caller's declared capabilities cover.", f.irCapabilities)

	s.AddPrompt(&mcp.Prompt{
		Name:        promptIR,
		Description: "Asks for context with an input_required elicitation before it renders.",
	}, f.irPrompt)
}

// Schemas of the forms the multi-round-trip tools elicit.
var (
	nameSchema    = stringFormSchema("name")
	colorSchema   = stringFormSchema("color")
	contextSchema = stringFormSchema("context")
	confirmSchema = json.RawMessage(`{"type":"object","properties":{"ok":{"type":"boolean"}},"required":["ok"]}`)
)

// stringFormSchema is a form of one required string field.
func stringFormSchema(field string) json.RawMessage {
	return json.RawMessage(fmt.Sprintf(`{"type":"object","properties":{%q:{"type":"string"}},"required":[%q]}`, field, field))
}

func askName() *mcp.ElicitParams {
	return &mcp.ElicitParams{Message: "What is your name?", RequestedSchema: nameSchema}
}

func askConfirm() *mcp.ElicitParams {
	return &mcp.ElicitParams{Message: "Please confirm", RequestedSchema: confirmSchema}
}

func askGreeting() *mcp.CreateMessageParams {
	return &mcp.CreateMessageParams{
		Messages:  []*mcp.SamplingMessage{{Role: "user", Content: &mcp.TextContent{Text: "Generate a greeting"}}},
		MaxTokens: 50,
	}
}

func needInput(reqs mcp.InputRequestMap, state string) *mcp.CallToolResult {
	return &mcp.CallToolResult{InputRequests: reqs, RequestState: state}
}

func (f *fixture) irElicitation(_ context.Context, req *mcp.CallToolRequest, _ noArgs) (*mcp.CallToolResult, any, error) {
	if name, ok := acceptedString(req.Params.InputResponses, "user_name", "name"); ok {
		return textResult(fmt.Sprintf("Hello, %s!", name)), nil, nil
	}
	return needInput(mcp.InputRequestMap{"user_name": askName()}, ""), nil, nil
}

func (f *fixture) irSampling(_ context.Context, req *mcp.CallToolRequest, _ noArgs) (*mcp.CallToolResult, any, error) {
	const key = "capital_question"
	if text, ok := samplingText(req.Params.InputResponses, key); ok {
		return textResult("Sampling response: " + text), nil, nil
	}
	return needInput(mcp.InputRequestMap{key: &mcp.CreateMessageParams{
		Messages:  []*mcp.SamplingMessage{{Role: "user", Content: &mcp.TextContent{Text: "What is the capital of France?"}}},
		MaxTokens: 100,
	}}, ""), nil, nil
}

func (f *fixture) irListRoots(_ context.Context, req *mcp.CallToolRequest, _ noArgs) (*mcp.CallToolResult, any, error) {
	const key = "client_roots"
	if roots, ok := req.Params.InputResponses[key].(*mcp.ListRootsResult); ok && roots != nil {
		return textResult(describeRoots(roots)), nil, nil
	}
	return needInput(mcp.InputRequestMap{key: &mcp.ListRootsParams{}}, ""), nil, nil
}

// irConfirm asks for a confirmation together with a requestState, and
// completes with "state-ok" once both come back intact. A requestState that
// fails verification is a -32602 error.
func (f *fixture) irConfirm(tool string) mcp.ToolHandlerFor[noArgs, any] {
	return func(_ context.Context, req *mcp.CallToolRequest, _ noArgs) (*mcp.CallToolResult, any, error) {
		p := req.Params
		if p.RequestState != "" {
			st, err := f.openState(p.RequestState, tool)
			if err != nil {
				return nil, nil, err
			}
			if ok, answered := acceptedBool(p.InputResponses, "confirm", "ok"); answered {
				return textResult(fmt.Sprintf("state-ok: requestState verified (round %d), confirmed=%t", st.Round, ok)), nil, nil
			}
		}
		return needInput(mcp.InputRequestMap{"confirm": askConfirm()}, f.sealState(requestState{Tool: tool, Round: 1})), nil, nil
	}
}

func (f *fixture) irMultipleInputs(_ context.Context, req *mcp.CallToolRequest, _ noArgs) (*mcp.CallToolResult, any, error) {
	p := req.Params
	if p.RequestState != "" {
		if _, err := f.openState(p.RequestState, toolIRMultipleInputs); err != nil {
			return nil, nil, err
		}
		name, haveName := acceptedString(p.InputResponses, "user_name", "name")
		greeting, haveGreeting := samplingText(p.InputResponses, "greeting")
		roots, haveRoots := p.InputResponses["client_roots"].(*mcp.ListRootsResult)
		if haveName && haveGreeting && haveRoots && roots != nil {
			return textResult(fmt.Sprintf("%s, %s! %s", greeting, name, describeRoots(roots))), nil, nil
		}
	}
	return needInput(mcp.InputRequestMap{
		"user_name":    askName(),
		"greeting":     askGreeting(),
		"client_roots": &mcp.ListRootsParams{},
	}, f.sealState(requestState{Tool: toolIRMultipleInputs, Round: 1})), nil, nil
}

// irMultiRound runs two elicitation rounds. The round and the name from the
// first one travel in the requestState: the server keeps nothing between
// calls.
func (f *fixture) irMultiRound(_ context.Context, req *mcp.CallToolRequest, _ noArgs) (*mcp.CallToolResult, any, error) {
	p := req.Params
	step1 := func() (*mcp.CallToolResult, any, error) {
		return needInput(mcp.InputRequestMap{"step1": &mcp.ElicitParams{Message: "Step 1: What is your name?", RequestedSchema: nameSchema}},
			f.sealState(requestState{Tool: toolIRMultiRound, Round: 1})), nil, nil
	}
	step2 := func(name string) (*mcp.CallToolResult, any, error) {
		return needInput(mcp.InputRequestMap{"step2": &mcp.ElicitParams{Message: "Step 2: What is your favorite color?", RequestedSchema: colorSchema}},
			f.sealState(requestState{Tool: toolIRMultiRound, Round: 2, Name: name})), nil, nil
	}
	if p.RequestState == "" {
		return step1()
	}
	st, err := f.openState(p.RequestState, toolIRMultiRound)
	if err != nil {
		return nil, nil, err
	}
	switch st.Round {
	case 1:
		if name, ok := acceptedString(p.InputResponses, "step1", "name"); ok {
			return step2(name)
		}
		return step1()
	default:
		if color, ok := acceptedString(p.InputResponses, "step2", "color"); ok {
			return textResult(fmt.Sprintf("Multi-round complete: %s likes %s", st.Name, color)), nil, nil
		}
		return step2(st.Name)
	}
}

// irCapabilities asks only for what the caller's capabilities cover.
func (f *fixture) irCapabilities(_ context.Context, req *mcp.CallToolRequest, _ noArgs) (*mcp.CallToolResult, any, error) {
	if len(req.Params.InputResponses) > 0 {
		return textResult(fmt.Sprintf("Received %d input response(s) for the declared capabilities.", len(req.Params.InputResponses))), nil, nil
	}
	caps := req.ClientCapabilities()
	reqs := mcp.InputRequestMap{}
	if hasCapability(caps, capElicitation) {
		reqs["user_name"] = askName()
	}
	if hasCapability(caps, capSampling) {
		reqs["greeting"] = askGreeting()
	}
	if hasCapability(caps, capRoots) {
		reqs["client_roots"] = &mcp.ListRootsParams{}
	}
	if len(reqs) == 0 {
		return textResult("The caller declared no capability that an input request could use."), nil, nil
	}
	return needInput(reqs, ""), nil, nil
}

func (f *fixture) irPrompt(_ context.Context, req *mcp.GetPromptRequest) (*mcp.GetPromptResult, error) {
	if text, ok := acceptedString(req.Params.InputResponses, "user_context", "context"); ok {
		return &mcp.GetPromptResult{
			Description: "A prompt rendered with elicited context",
			Messages:    []*mcp.PromptMessage{{Role: "user", Content: &mcp.TextContent{Text: "Context: " + text}}},
		}, nil
	}
	return &mcp.GetPromptResult{InputRequests: mcp.InputRequestMap{
		"user_context": &mcp.ElicitParams{Message: "What context should the prompt use?", RequestedSchema: contextSchema},
	}}, nil
}

// acceptedString returns the non-empty string field of an accepted
// elicitation stored under key.
func acceptedString(responses mcp.InputResponseMap, key, field string) (string, bool) {
	res, ok := responses[key].(*mcp.ElicitResult)
	if !ok || res == nil || res.Action != "accept" {
		return "", false
	}
	s, ok := res.Content[field].(string)
	return s, ok && s != ""
}

// acceptedBool returns the boolean field of an accepted elicitation stored
// under key; answered is false when there is no such answer.
func acceptedBool(responses mcp.InputResponseMap, key, field string) (value, answered bool) {
	res, ok := responses[key].(*mcp.ElicitResult)
	if !ok || res == nil || res.Action != "accept" {
		return false, false
	}
	value, answered = res.Content[field].(bool)
	return value, answered
}

func describeRoots(res *mcp.ListRootsResult) string {
	uris := make([]string, 0, len(res.Roots))
	for _, r := range res.Roots {
		uris = append(uris, r.URI)
	}
	return fmt.Sprintf("Client exposed %d root(s): %s", len(uris), strings.Join(uris, ", "))
}

// requestState is what the fixture keeps in an input_required result's
// requestState: the client holds it and hands it back on the retry.
type requestState struct {
	Tool    string `json:"tool"`
	Round   int    `json:"round"`
	Name    string `json:"name,omitempty"`
	Expires int64  `json:"exp"` // Unix seconds
}

// sealState encodes st and appends an HMAC-SHA256 over it, so that the
// client can carry it but not alter it: base64url(JSON) "." base64url(MAC).
func (f *fixture) sealState(st requestState) string {
	st.Expires = time.Now().Add(stateLifetime).Unix()
	payload, err := json.Marshal(st)
	if err != nil {
		panic("conformancefixture: encoding requestState: " + err.Error())
	}
	enc := base64.RawURLEncoding
	body := enc.EncodeToString(payload)
	return body + "." + enc.EncodeToString(f.mac(body))
}

// openState verifies a requestState made by sealState for tool. Its errors
// are JSON-RPC invalid-params errors.
func (f *fixture) openState(s, tool string) (requestState, error) {
	var st requestState
	invalid := func(why string) error {
		return &jsonrpc.Error{Code: jsonrpc.CodeInvalidParams, Message: "invalid requestState: " + why}
	}
	body, sig, ok := strings.Cut(s, ".")
	if !ok {
		return st, invalid("malformed")
	}
	enc := base64.RawURLEncoding
	mac, err := enc.DecodeString(sig)
	if err != nil || !hmac.Equal(mac, f.mac(body)) {
		return st, invalid("integrity check failed")
	}
	payload, err := enc.DecodeString(body)
	if err != nil {
		return st, invalid("malformed")
	}
	if err := json.Unmarshal(payload, &st); err != nil {
		return st, invalid(err.Error())
	}
	switch {
	case st.Tool != tool:
		return st, invalid(fmt.Sprintf("issued for %q", st.Tool))
	case time.Now().Unix() > st.Expires:
		return st, invalid("expired")
	}
	return st, nil
}

func (f *fixture) mac(body string) []byte {
	h := hmac.New(sha256.New, f.stateKey)
	h.Write([]byte(body))
	return h.Sum(nil)
}
