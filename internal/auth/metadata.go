package auth

import (
	"encoding/json"
	"net/http"
	"slices"
	"strconv"

	"github.com/mcpgate/mcpgate/internal/config"
	"github.com/mcpgate/mcpgate/internal/core"
)

// Protected Resource Metadata (RFC 9728), served for every route that is
// an OAuth resource server at /.well-known/oauth-protected-resource
// followed by the route's path (and by its audience's path, when that is
// another), and at /.well-known/oauth-protected-resource itself for the
// top-level auth block. It names the resource (the audience), its
// authorization server (the issuer), the scopes the route's rules use,
// and that tokens go in the Authorization header only.

// metadata is the document's JSON.
type metadata struct {
	Resource             string   `json:"resource"`
	AuthorizationServers []string `json:"authorization_servers"`
	ScopesSupported      []string `json:"scopes_supported,omitempty"`
	BearerMethods        []string `json:"bearer_methods_supported"`
}

func metadataDoc(b *config.Auth) []byte {
	o := b.OAuth
	scopes := slices.Clone(o.RequiredScopes)
	for _, r := range newScopeRules(b.Scopes) {
		for _, s := range r.scopes {
			if !slices.Contains(scopes, s) {
				scopes = append(scopes, s)
			}
		}
	}
	doc, _ := json.Marshal(metadata{Resource: o.Audience, AuthorizationServers: []string{o.Issuer}, ScopesSupported: scopes, BearerMethods: []string{"header"}})
	return doc
}

// IsMetadataPath reports whether path is under the well-known prefix the
// metadata is served at (ServeMetadata answers every such path).
func IsMetadataPath(path string) bool {
	return len(path) >= len(config.WellKnownResource) && path[:len(config.WellKnownResource)] == config.WellKnownResource
}

// ServeMetadata answers a request for Protected Resource Metadata: the
// document for its path (GET, HEAD), open to any origin (the document is
// public, and browser-based clients fetch it), or a JSON error (404 for a
// path without one, 405 for another method).
func (a *Authenticator) ServeMetadata(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Access-Control-Allow-Origin", "*")
	switch r.Method {
	case http.MethodGet, http.MethodHead:
	case http.MethodOptions:
		h.Set("Access-Control-Allow-Methods", "GET, HEAD, OPTIONS")
		h.Set("Access-Control-Allow-Headers", "MCP-Protocol-Version")
		w.WriteHeader(http.StatusNoContent)
		return
	default:
		h.Set("Allow", "GET, HEAD, OPTIONS")
		metadataError(w, http.StatusMethodNotAllowed, "method not allowed: use GET")
		return
	}
	var doc []byte
	if a != nil {
		doc = a.meta[r.URL.Path]
	}
	if doc == nil {
		metadataError(w, http.StatusNotFound, "not found: no protected resource metadata at "+strconv.Quote(r.URL.Path))
		return
	}
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(doc)))
	h.Set("Cache-Control", "max-age=300")
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodGet {
		_, _ = w.Write(doc)
	}
}

func metadataError(w http.ResponseWriter, status int, msg string) {
	body := core.AppendErrorResponse(nil, "", core.NewError(core.CodeInvalidRequest, msg))
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	_, _ = w.Write(body)
}
