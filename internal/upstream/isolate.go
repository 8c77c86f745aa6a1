package upstream

import (
	"bytes"
	"encoding/json"
	"strconv"
	"sync/atomic"

	"github.com/mcpgate/mcpgate/internal/core"
)

// isolationSeq numbers the ids modern requests carry upstream.
var isolationSeq atomic.Uint64

// Isolate gives a request an id (and progress token) of its own
// on the way upstream. Modern ids mean something only within one HTTP
// request, and clients sharing a session all start at 1: forwarded as
// they are, two clients' requests would collide in the upstream session
// (a stdio server refuses a duplicate id; progress for one token reaches
// whichever request holds it first). The response and the request's
// progress get the client's own id and token back, and so do the
// messages of a listen stream, which name their subscription by its id.
// The frontend isolates modern requests of sessions that share a channel
// and repeats of a request whose first try may still be in flight; the
// resilient wrapper isolates its repeats. A request that cannot be
// re-encoded is returned as it is.
func Isolate(m *core.Message, related Related) (*core.Message, Related, func(*core.Message) *core.Message) {
	none := func(resp *core.Message) *core.Message { return resp }
	var top map[string]json.RawMessage
	if json.Unmarshal(m.Raw, &top) != nil {
		return m, related, none
	}
	id := core.ID(`"mcpgate-` + strconv.FormatUint(isolationSeq.Add(1), 10) + `"`)
	top["id"] = json.RawMessage(id)
	token := m.ProgressToken
	if len(token) > 0 {
		params, err := setMember(top["params"], []string{"_meta", "progressToken"}, json.RawMessage(id))
		if err != nil {
			return m, related, none
		}
		top["params"] = params
	}
	raw, err := json.Marshal(top)
	if err != nil {
		return m, related, none
	}
	fwd := *m
	if fwd.Replace(raw) != nil {
		return m, related, none
	}
	orig := m.ID
	token = bytes.Clone(token)
	rel := func(rm *core.Message) {
		switch {
		case rm.Kind != core.KindNotification:
		case rm.Method == "notifications/progress" && len(token) > 0:
			restoreMember(rm, []string{"progressToken"}, id, token)
		case m.Method == "subscriptions/listen":
			// Every message of a listen stream names its subscription
			// by the request's id (_meta subscriptionId).
			restoreMember(rm, []string{"_meta", core.MetaSubscriptionID}, id, json.RawMessage(orig))
		}
		related(rm)
	}
	restore := func(resp *core.Message) *core.Message {
		if resp != nil && resp.ID == id {
			restoreMember(resp, []string{"id"}, id, json.RawMessage(orig))
		}
		return resp
	}
	return &fwd, rel, restore
}

// setMember sets the member at path inside the JSON object raw (objects
// along the path are created as needed).
func setMember(raw json.RawMessage, path []string, v json.RawMessage) (json.RawMessage, error) {
	obj := map[string]json.RawMessage{}
	if len(raw) > 0 {
		if err := json.Unmarshal(raw, &obj); err != nil {
			return nil, err
		}
	}
	if len(path) == 1 {
		obj[path[0]] = v
	} else {
		inner, err := setMember(obj[path[0]], path[1:], v)
		if err != nil {
			return nil, err
		}
		obj[path[0]] = inner
	}
	return json.Marshal(obj)
}

// restoreMember puts want back at path (top level "id", or inside params)
// of m when it holds got there.
// replaceMember replaces the member at path inside the JSON object raw
// when it equals got; ok is false when it is absent or different.
func replaceMember(raw json.RawMessage, path []string, got core.ID, want json.RawMessage) (json.RawMessage, bool) {
	var obj map[string]json.RawMessage
	if json.Unmarshal(raw, &obj) != nil {
		return nil, false
	}
	if len(path) == 1 {
		if string(obj[path[0]]) != string(got) {
			return nil, false
		}
		obj[path[0]] = want
	} else {
		inner, ok := replaceMember(obj[path[0]], path[1:], got, want)
		if !ok {
			return nil, false
		}
		obj[path[0]] = inner
	}
	out, err := json.Marshal(obj)
	return out, err == nil
}

func restoreMember(m *core.Message, path []string, got core.ID, want json.RawMessage) {
	var top map[string]json.RawMessage
	if json.Unmarshal(m.Raw, &top) != nil {
		return
	}
	if path[0] == "id" {
		if string(top["id"]) != string(got) {
			return
		}
		top["id"] = want
	} else {
		p, ok := replaceMember(top["params"], path, got, want)
		if !ok {
			return
		}
		top["params"] = p
	}
	raw, err := json.Marshal(top)
	if err != nil {
		return
	}
	status := m.Status
	if m.Replace(raw) == nil {
		m.Status = status
	}
}
