package upstream

import "github.com/mcpgate/mcpgate/internal/core"

// Calls is the table of the requests a channel-based Conn (stdio, the
// in-process server) has sent and awaits: by JSON-RPC id, by progress
// token (its server's notifications/progress are routed by it), and the
// count of the client's own ordinary calls (not gateway-made, not
// subscriptions/listen), which decides where an unrelated server message
// may go. The Conn's lock guards it.
type Calls[C comparable] struct {
	Pending map[core.ID]C
	Tokens  map[string]C
	Clients int
}

// Add records c under id (and token, if not empty and not taken yet);
// client says it is an ordinary client call. It reports false, changing
// nothing, when id is pending already.
func (t *Calls[C]) Add(id core.ID, token string, client bool, c C) bool {
	if _, dup := t.Pending[id]; dup {
		return false
	}
	if t.Pending == nil {
		t.Pending = make(map[core.ID]C)
	}
	t.Pending[id] = c
	if token != "" {
		if t.Tokens == nil {
			t.Tokens = make(map[string]C)
		}
		if _, taken := t.Tokens[token]; !taken {
			t.Tokens[token] = c
		}
	}
	if client {
		t.Clients++
	}
	return true
}

// Remove forgets c if it is still pending under id, and reports whether
// it was: whoever removes a call completes it.
func (t *Calls[C]) Remove(id core.ID, token string, client bool, c C) bool {
	if cur, ok := t.Pending[id]; !ok || cur != c {
		return false
	}
	delete(t.Pending, id)
	if token != "" && t.Tokens[token] == c {
		delete(t.Tokens, token)
	}
	if client {
		t.Clients--
	}
	return true
}
