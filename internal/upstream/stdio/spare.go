package stdio

import (
	"context"
	"time"

	"github.com/mcpgate/mcpgate/internal/core"
	"github.com/mcpgate/mcpgate/internal/upstream"
)

// defaultSpareTTL is how long the probe's process waits for a session
// before it is shut down.
const defaultSpareTTL = 30 * time.Second

// The probe's process is not thrown away: the gateway probes when the
// first session is about to open, so that session's Open takes the process
// the probe started (its server has seen one server/discover, which a
// legacy server answers with an error or ignores and a modern one answers
// statelessly). A legacy client does not make the gateway probe at all
// (see Probed: the bridge tries its initialize natively first). A spare no session claims within 30s is shut down, so
// an idle route keeps no process. Changed in issue 9: the probe used to
// spawn a process of its own and stop it, an extra spawn (for `go run`,
// a build) before every route's first session.

// keepSpare keeps c for the next Open.
func (u *Upstream) keepSpare(c *Conn) {
	u.probeMu.Lock()
	old := u.spare
	u.spare = c
	if u.spareTimer != nil {
		u.spareTimer.Stop()
	}
	u.spareTimer = time.AfterFunc(u.spareTTL, func() { u.dropSpare(c) })
	u.probeMu.Unlock()
	if old != nil {
		go old.Close(context.Background())
	}
	if u.closed.Load() {
		// Close ran meanwhile and found no spare.
		if s := u.takeSpare(); s != nil {
			go s.Close(context.Background())
		}
	}
}

// takeSpareFor returns the spare if it can serve a session of era: a
// modern one always (server/discover is a request like any other there),
// a legacy one only if the server is legacy (a dual-era server may have
// taken server/discover as choosing the modern era for the process, and
// then refuses initialize). With per-principal credentials, only a
// session of the principal whose credential the spare holds takes it.
func (u *Upstream) takeSpareFor(era core.Era, owner string) *Conn {
	if era != core.EraModern {
		if info, ok := u.cached(); !ok || info.Era != core.EraLegacy {
			return nil
		}
	}
	u.probeMu.Lock()
	defer u.probeMu.Unlock()
	if u.spare == nil || u.spare.owner != owner {
		return nil
	}
	return u.takeSpareLocked()
}

// takeSpare removes and returns the spare, nil if there is none.
func (u *Upstream) takeSpare() *Conn {
	u.probeMu.Lock()
	defer u.probeMu.Unlock()
	return u.takeSpareLocked()
}

func (u *Upstream) takeSpareLocked() *Conn {
	c := u.spare
	u.spare = nil
	if u.spareTimer != nil {
		u.spareTimer.Stop()
		u.spareTimer = nil
	}
	return c
}

// dropSpare shuts c down if it is still the unclaimed spare.
func (u *Upstream) dropSpare(c *Conn) {
	u.probeMu.Lock()
	mine := u.spare == c
	if mine {
		u.spare, u.spareTimer = nil, nil
	}
	u.probeMu.Unlock()
	if mine {
		u.logger.Debug("stdio_spare_unclaimed", "route", u.route, "pid", c.pid, "after", u.spareTTL)
		_ = c.Close(context.Background())
	}
}

// adopt hands the spare c to a session, unless its process is ending
// (then the caller spawns a fresh one and c, which no session holds, is
// shut down).
func (c *Conn) adopt(sess *core.SessionInfo, sid string, era core.Era, sink upstream.Sink) bool {
	c.mu.Lock()
	ok := !c.closing && !c.ended
	select {
	case <-c.dead:
		ok = false
	default:
	}
	if ok {
		u := c.up
		log := u.logger.With("route", u.route, "session", core.Fingerprint(sid), "principal", sess.LogPrincipal(), "pid", c.pid)
		c.bound.Store(&binding{log: log, sess: sess, era: era, sink: sink})
		log.Info("stdio_adopted")
	}
	c.mu.Unlock()
	if !ok {
		go c.Close(context.Background())
	}
	return ok
}
