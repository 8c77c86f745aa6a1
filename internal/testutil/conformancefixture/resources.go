package conformancefixture

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// Resource URIs and the URI template the conformance suite reads.
const (
	staticTextURI   = "test://static-text"
	staticBinaryURI = "test://static-binary"
	templateURI     = "test://template/{id}/data"

	templatePrefix = "test://template/"
	templateSuffix = "/data"
)

func (f *fixture) addResources() {
	s := f.server
	s.AddResource(&mcp.Resource{
		URI:         staticTextURI,
		Name:        "static-text",
		Title:       "Static text",
		Description: "A text resource whose content never changes.",
		MIMEType:    "text/plain",
	}, func(_ context.Context, req *mcp.ReadResourceRequest) (*mcp.ReadResourceResult, error) {
		return contents(&mcp.ResourceContents{URI: req.Params.URI, MIMEType: "text/plain", Text: "This is the content of the static text resource."}), nil
	})
	s.AddResource(&mcp.Resource{
		URI:         staticBinaryURI,
		Name:        "static-binary",
		Title:       "Static binary",
		Description: "A binary resource: a 1x1 PNG image.",
		MIMEType:    "image/png",
	}, func(_ context.Context, req *mcp.ReadResourceRequest) (*mcp.ReadResourceResult, error) {
		return contents(&mcp.ResourceContents{URI: req.Params.URI, MIMEType: "image/png", Blob: pngImage()}), nil
	})
	s.AddResource(&mcp.Resource{
		URI:         WatchedResourceURI,
		Name:        "watched-resource",
		Title:       "Watched resource",
		Description: "A text resource that changes, and notifies its subscribers, periodically.",
		MIMEType:    "text/plain",
	}, func(_ context.Context, req *mcp.ReadResourceRequest) (*mcp.ReadResourceResult, error) {
		text := fmt.Sprintf("Watched resource content, revision %d", f.watchedRevision.Load())
		return contents(&mcp.ResourceContents{URI: req.Params.URI, MIMEType: "text/plain", Text: text}), nil
	})
	s.AddResourceTemplate(&mcp.ResourceTemplate{
		URITemplate: templateURI,
		Name:        "template",
		Title:       "Templated data",
		Description: "JSON data for the {id} substituted into the URI.",
		MIMEType:    "application/json",
	}, func(_ context.Context, req *mcp.ReadResourceRequest) (*mcp.ReadResourceResult, error) {
		id, ok := templateID(req.Params.URI)
		if !ok {
			return nil, mcp.ResourceNotFoundError(req.Params.URI)
		}
		text, err := json.Marshal(struct {
			ID           string `json:"id"`
			TemplateTest bool   `json:"templateTest"`
			Data         string `json:"data"`
		}{id, true, "Data for ID: " + id})
		if err != nil {
			return nil, err
		}
		return contents(&mcp.ResourceContents{URI: req.Params.URI, MIMEType: "application/json", Text: string(text)}), nil
	})
}

func contents(c ...*mcp.ResourceContents) *mcp.ReadResourceResult {
	return &mcp.ReadResourceResult{Contents: c}
}

// templateID returns the {id} of a URI matching templateURI.
func templateID(uri string) (string, bool) {
	rest, ok := strings.CutPrefix(uri, templatePrefix)
	if !ok {
		return "", false
	}
	id, ok := strings.CutSuffix(rest, templateSuffix)
	return id, ok && id != "" && !strings.Contains(id, "/")
}

// knownResource reports whether uri names a resource of the fixture.
func knownResource(uri string) bool {
	switch uri {
	case staticTextURI, staticBinaryURI, WatchedResourceURI:
		return true
	}
	_, ok := templateID(uri)
	return ok
}
