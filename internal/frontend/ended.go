package frontend

import (
	"crypto/sha256"
	"net/http"
	"sync"
	"time"

	"github.com/mcpgate/mcpgate/internal/core"
	"github.com/mcpgate/mcpgate/internal/session"
)

// Why a session ended, told to its client afterwards.
//
// A legacy client whose session has ended learns it from a 404 on its next
// request, and starts a new session. The 404 names the reason when the
// session ended on this gateway recently (endedKept sessions, endedFor
// long): an agent told "session ended (quota)" or "(resource_limit)"
// knows not to retry the same thing at once, where a bare "not found"
// says nothing. Only the caller the session belonged to is told (the same
// identity check as a live session's): anyone else gets the plain 404, so
// the record reveals nothing an id's holder could not already learn.
//
// The records hold a digest of the id, never the id (a credential), and
// are lost with the process; a replica that did not end the session
// answers the plain 404.
const (
	endedKept = 4096
	endedFor  = 15 * time.Minute
)

type endedSession struct {
	key       [16]byte
	principal string
	tenant    string
	reason    session.Reason
	detail    string
	at        time.Time
}

// endedSessions is a bounded FIFO of recently ended sessions.
type endedSessions struct {
	mu   sync.Mutex
	byID map[[16]byte]int // key → ring index
	ring []endedSession
	next int
}

func endedKey(id string) (k [16]byte) {
	sum := sha256.Sum256([]byte(id))
	copy(k[:], sum[:])
	return k
}

// note records that info's session ended for reason (detail: more of
// it, such as the cap that killed the process; may be empty). Sessions that end
// with the gateway (shutdown) or that the client itself ended are not
// worth telling: the client knows.
func (e *endedSessions) note(info *core.SessionInfo, reason session.Reason, detail string) {
	if info == nil || info.Era != core.EraLegacy || reason == session.ReasonShutdown || reason == session.ReasonDeleted {
		return
	}
	k := endedKey(info.ID)
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.byID == nil {
		e.byID = make(map[[16]byte]int)
	}
	if len(e.ring) < endedKept {
		e.ring = append(e.ring, endedSession{})
	} else {
		delete(e.byID, e.ring[e.next].key)
	}
	e.ring[e.next] = endedSession{key: k, principal: info.Principal, tenant: info.Tenant, reason: reason, detail: detail, at: time.Now()}
	e.byID[k] = e.next
	e.next = (e.next + 1) % endedKept
}

// notFound is the 404 for a legacy session id that names no live session:
// with the reason it ended, when it ended here recently and belonged to
// who.
func (e *endedSessions) notFound(id string, who Identity) *core.Error {
	k := endedKey(id)
	e.mu.Lock()
	i, ok := e.byID[k]
	var s endedSession
	if ok {
		s = e.ring[i]
	}
	e.mu.Unlock()
	if !ok || time.Since(s.at) > endedFor || !owns(who, &core.SessionInfo{Principal: s.principal, Tenant: s.tenant}) {
		return sessionNotFound()
	}
	words := endedWords(s.reason)
	if s.detail != "" {
		words += ": " + s.detail
	}
	return core.NewError(core.CodeSessionNotFound, "session ended ("+string(s.reason)+"): "+words+"; send initialize to start a new one").
		WithStatus(http.StatusNotFound).WithData(map[string]any{"reason": string(s.reason)})
}

// endedWords says what a reason means to the client.
func endedWords(r session.Reason) string {
	switch r {
	case session.ReasonIdle:
		return "it was idle for longer than the idle timeout"
	case session.ReasonTTL:
		return "it reached its maximum lifetime"
	case session.ReasonEvicted:
		return "the gateway's session cap was reached and it made room for a newer session"
	case session.ReasonUpstreamGone:
		return "the upstream server or its session ended"
	case session.ReasonQuota:
		return "a quota ended it (session_time)"
	case session.ReasonResourceLimit:
		return "a resource cap killed its upstream process"
	case session.ReasonAdmin:
		return "an operator ended it"
	case session.ReasonSessionTool:
		return "it ended itself"
	case session.ReasonRouteRemoved, session.ReasonRouteChanged:
		return "the gateway's configuration changed its route"
	}
	return "it was ended"
}
