package conformancefixture

import (
	"context"
	"fmt"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// Prompt names the conformance suite gets.
const (
	promptSimple   = "test_simple_prompt"
	promptWithArgs = "test_prompt_with_arguments"
	promptEmbedded = "test_prompt_with_embedded_resource"
	promptImage    = "test_prompt_with_image"
)

// promptArgs lists the arguments of each prompt that has some; completion
// offers candidates for them.
var promptArgs = map[string][]string{
	promptWithArgs: {"arg1", "arg2"},
	promptEmbedded: {"resourceUri"},
}

func (f *fixture) addPrompts() {
	s := f.server
	s.AddPrompt(&mcp.Prompt{
		Name:        promptSimple,
		Title:       "Simple prompt",
		Description: "A prompt without arguments.",
	}, func(context.Context, *mcp.GetPromptRequest) (*mcp.GetPromptResult, error) {
		return messages("A simple prompt", userText("This is a simple prompt for testing.")), nil
	})
	s.AddPrompt(&mcp.Prompt{
		Name:        promptWithArgs,
		Title:       "Prompt with arguments",
		Description: "A prompt that substitutes two required arguments.",
		Arguments: []*mcp.PromptArgument{
			{Name: "arg1", Description: "First test argument", Required: true},
			{Name: "arg2", Description: "Second test argument", Required: true},
		},
	}, func(_ context.Context, req *mcp.GetPromptRequest) (*mcp.GetPromptResult, error) {
		a := req.Params.Arguments
		return messages("A prompt with arguments",
			userText(fmt.Sprintf("Prompt with arguments: arg1='%s', arg2='%s'", a["arg1"], a["arg2"]))), nil
	})
	s.AddPrompt(&mcp.Prompt{
		Name:        promptEmbedded,
		Title:       "Prompt with an embedded resource",
		Description: "A prompt that embeds the resource named by its argument.",
		Arguments: []*mcp.PromptArgument{
			{Name: "resourceUri", Description: "URI of the resource to embed", Required: true},
		},
	}, func(_ context.Context, req *mcp.GetPromptRequest) (*mcp.GetPromptResult, error) {
		uri := req.Params.Arguments["resourceUri"]
		return messages("A prompt with an embedded resource",
			&mcp.PromptMessage{Role: "user", Content: embeddedText(uri, "Embedded resource content for testing.")},
			userText("Please process the embedded resource above.")), nil
	})
	s.AddPrompt(&mcp.Prompt{
		Name:        promptImage,
		Title:       "Prompt with an image",
		Description: "A prompt that carries a PNG image.",
	}, func(context.Context, *mcp.GetPromptRequest) (*mcp.GetPromptResult, error) {
		return messages("A prompt with an image",
			&mcp.PromptMessage{Role: "user", Content: pngContent()},
			userText("Please analyze the image above.")), nil
	})
}

func messages(desc string, m ...*mcp.PromptMessage) *mcp.GetPromptResult {
	return &mcp.GetPromptResult{Description: desc, Messages: m}
}

func userText(text string) *mcp.PromptMessage {
	return &mcp.PromptMessage{Role: "user", Content: &mcp.TextContent{Text: text}}
}
