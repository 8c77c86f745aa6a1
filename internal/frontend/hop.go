package frontend

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/mcpgate/mcpgate/internal/core"
	"github.com/mcpgate/mcpgate/internal/store"
)

// The internal hop: a stdio session's process lives in one replica (its
// owner, recorded in the shared store); a request for it that reaches
// another replica is forwarded to the owner over the owner's internal
// listener. When the owner is gone — its announcement lapsed — the replica
// holding the request takes the session over (one atomic claim in the
// store) and serves it, respawning the process from the client's
// initialize. A request never waits longer than announceTTL plus a retry
// for that.

const (
	// AnnounceEvery and AnnounceTTL: a replica repeats its announcement
	// every AnnounceEvery; it lapses AnnounceTTL after the last one, which
	// bounds how long a dead owner's sessions wait to be taken over.
	AnnounceEvery = time.Second
	AnnounceTTL   = 3 * time.Second
	// hopSkew is how far a hop signature's timestamp may be from now.
	hopSkew = 30 * time.Second
	// hopRetry is the pause between attempts to reach an owner whose
	// announcement has not lapsed yet.
	hopRetry = 200 * time.Millisecond

	hopHeader       = "Mcpgate-Hop"
	hopClientHeader = "Mcpgate-Hop-Client"
)

// errSessionElsewhere is returned by fetch for a session whose process
// another replica owns: the request should reach that replica.
var errSessionElsewhere = errors.New("session is owned by another replica")

// hop forwards requests of stdio sessions between replicas.
type hop struct {
	owners store.Owners
	// keys authenticate the hop; the first signs, any verifies (so keys
	// rotate like session id keys).
	keys  [][]byte
	proxy *httputil.ReverseProxy
}

// useCluster turns on the internal hop between replicas, with keys
// shared by every replica (the first signs). It needs a store that tracks
// owners (useStore first); without one it does nothing. See Provision.
func (f *Frontend) useCluster(keys [][]byte) {
	p := f.persist
	if p == nil || len(keys) == 0 {
		return
	}
	o, ok := p.st.(store.Owners)
	if !ok {
		return
	}
	h := &hop{owners: o, keys: keys}
	h.proxy = &httputil.ReverseProxy{
		Rewrite:       func(*httputil.ProxyRequest) {}, // set per request in forward
		FlushInterval: -1,                              // SSE streams flow as they come
		Transport: &http.Transport{
			DialContext:         (&net.Dialer{Timeout: time.Second}).DialContext,
			MaxIdleConnsPerHost: 64,
			IdleConnTimeout:     time.Minute,
		},
		ErrorLog: nil,
	}
	f.hop = h
}

// ReplicaID names this replica in the shared store.
func (f *Frontend) ReplicaID() string {
	if f.persist == nil {
		return ""
	}
	return f.persist.origin
}

// Announce keeps this replica's internal address announced until ctx
// ends, then retires it so its sessions are taken over at once.
func (f *Frontend) Announce(ctx context.Context, addr string) {
	h := f.hop
	if h == nil {
		return
	}
	id := f.persist.origin
	t := time.NewTicker(AnnounceEvery)
	defer t.Stop()
	failing := false
	for {
		actx, cancel := context.WithTimeout(ctx, AnnounceEvery)
		err := h.owners.Announce(actx, id, addr, AnnounceTTL)
		cancel()
		switch {
		case err != nil && !failing && ctx.Err() == nil:
			f.log.Error("replica_announce_failed", "error", err)
			failing = true
		case err == nil && failing:
			f.log.Info("replica_announce_recovered")
			failing = false
		}
		select {
		case <-ctx.Done():
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
			_ = h.owners.Retire(rctx, id)
			cancel()
			return
		case <-t.C:
		}
	}
}

// InternalHandler serves the hop: requests other replicas forward, signed
// with the cluster key. Host and Origin were checked by the replica the
// client reached; this handler checks the signature and forwards nothing
// further.
func (f *Frontend) InternalHandler() http.Handler {
	inner := &listenerHandler{f: f, p: ListenerPolicy{AllowedOrigins: []string{"*"}}, internal: true}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		client, ok := f.hop.verify(r, time.Now())
		if !ok {
			f.log.Warn("hop_refused", "remote_addr", r.RemoteAddr, "path", r.URL.Path)
			f.reject(w, r, nil, core.NewError(core.CodeInvalidRequest, "unauthorized: not a signed request from a replica").WithStatus(http.StatusUnauthorized))
			return
		}
		r.Header.Del(hopHeader)
		r.Header.Del(hopClientHeader)
		r.RemoteAddr = client
		inner.ServeHTTP(w, r)
	})
}

// sign returns the hop header value for a request at now.
func (h *hop) sign(method, path, sessionID, client string, now time.Time) string {
	ts := strconv.FormatInt(now.Unix(), 10)
	return ts + "." + base64.RawURLEncoding.EncodeToString(hopMAC(h.keys[0], ts, method, path, sessionID, client))
}

func hopMAC(key []byte, ts, method, path, sessionID, client string) []byte {
	m := hmac.New(sha256.New, key)
	for _, s := range []string{ts, method, path, sessionID, client} {
		_, _ = io.WriteString(m, s)
		_, _ = m.Write([]byte{0})
	}
	return m.Sum(nil)
}

// verify checks a forwarded request's signature and returns the client
// address it carries.
func (h *hop) verify(r *http.Request, now time.Time) (string, bool) {
	if h == nil {
		return "", false
	}
	ts, sig, ok := strings.Cut(r.Header.Get(hopHeader), ".")
	if !ok {
		return "", false
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil || now.Sub(time.Unix(sec, 0)).Abs() > hopSkew {
		return "", false
	}
	got, err := base64.RawURLEncoding.Strict().DecodeString(sig)
	if err != nil {
		return "", false
	}
	client := r.Header.Get(hopClientHeader)
	for _, k := range h.keys {
		if hmac.Equal(got, hopMAC(k, ts, r.Method, r.URL.Path, hopSession(r), client)) {
			return client, true
		}
	}
	return "", false
}

// forwardElsewhere serves a request for a stdio session this replica
// does not hold: forwarded to its owner, or taken over when the owner is
// gone. It returns false when the request is this replica's to serve (the
// session is here, unknown, or now taken over); r's body is then intact.
func (f *Frontend) forwardElsewhere(w http.ResponseWriter, r *http.Request, rt *Route) bool {
	h := f.hop
	if h == nil {
		return false
	}
	id, body, done := f.hopTarget(w, r, rt)
	if done {
		return true
	}
	if id == "" || f.opts.IDs.Verify(id) != nil {
		return false
	}
	if _, err := f.opts.Sessions.Get(id); err == nil {
		return false
	}
	self := f.persist.origin
	ctx := r.Context()
	rec, err := f.persist.get(ctx, id)
	if err != nil || rec.Owner == self || rec.Owner == "" {
		return false // unknown, or the store is down: the normal path answers
	}
	if !owns(identityOf(r), &core.SessionInfo{Principal: rec.Principal, Tenant: rec.Tenant}) {
		// Another principal's session: neither forwarded nor taken over;
		// the normal path answers (and logs) it as unknown.
		return false
	}
	if r.Method == http.MethodPost && body == nil {
		var e *core.Error
		if body, e = f.readBody(w, r); e != nil {
			f.reject(w, r, nil, e)
			return true
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
	}
	owner := rec.Owner
	unreachable, settled := false, false
	for {
		addr := ""
		if owner != "" {
			addr, err = h.owners.Replica(ctx, owner)
		}
		switch {
		case err != nil && !errors.Is(err, store.ErrNotFound):
			f.forwardFailed(slog.LevelError, metricsForwardStore, id, owner, "", err)
			f.reject(w, r, nil, storeUnavailable(err))
			return true
		case addr != "":
			dialFailed := h.forward(w, r, addr, body, func(err error) {
				f.forwardFailed(slog.LevelError, metricsForwardBroken, id, owner, addr, err)
			})
			if !dialFailed {
				return true
			}
			// The owner's announcement has not lapsed but it does not
			// answer: it died a moment ago. Wait for the lapse. Logged
			// and counted once per request, not once per attempt.
			if !unreachable {
				unreachable = true
				f.forwardFailed(slog.LevelWarn, metricsForwardUnreachable, id, owner, addr, errOwnerUnreachable)
			}
			select {
			case <-ctx.Done():
				return true
			case <-time.After(hopRetry):
			}
			continue
		}
		// The owner is gone: take the session over. Unless the store has
		// just lost its data: the owner's announcement may only be on its
		// way back, and taking its session would split it in two.
		if rc := f.persist.rc; rc != nil && !settled {
			settled = true
			if err := rc.Settle(ctx); err != nil {
				f.forwardFailed(slog.LevelError, metricsForwardStore, id, owner, "", err)
				f.reject(w, r, nil, storeUnavailable(err))
				return true
			}
			continue
		}
		won, err := h.owners.Claim(ctx, id, owner, self)
		if err != nil {
			if errors.Is(err, store.ErrNotFound) {
				return false // ended meanwhile: the normal path answers 404
			}
			f.forwardFailed(slog.LevelError, metricsForwardStore, id, owner, "", err)
			f.reject(w, r, nil, storeUnavailable(err))
			return true
		}
		if won {
			f.log.Info("session_taken_over", "session", core.Fingerprint(id), "from_replica", owner)
			if body != nil {
				r.Body = io.NopCloser(bytes.NewReader(body))
			}
			return false
		}
		// Another replica took it over first: forward there.
		if rec, err = f.persist.st.Get(ctx, id); err != nil {
			return false
		}
		if owner = rec.Owner; owner == self {
			return false
		}
	}
}

// Reasons of hop_forward_failed, as metrics.ClusterMetrics counts them.
const (
	metricsForwardUnreachable = "unreachable"
	metricsForwardBroken      = "broken"
	metricsForwardStore       = "store"
)

var errOwnerUnreachable = errors.New("the owner replica does not accept connections; waiting for its lease to lapse")

// forwardFailed logs a request for a session another replica owns that
// could not be served through it (hop_forward_failed, with the owner and
// why) and reports it to Options.ForwardErrors: the forwarding replica is
// where the client's failure happened, so it is where it is visible.
func (f *Frontend) forwardFailed(level slog.Level, reason, id, owner, addr string, err error) {
	f.log.Log(context.Background(), level, "hop_forward_failed", "session", core.Fingerprint(id),
		"owner", owner, "owner_address", addr, "reason", reason, "error", err)
	if f.opts.ForwardErrors != nil {
		f.opts.ForwardErrors(reason)
	}
}

// errHopStreamCut is what broken is told when the owner's response
// stopped midway (the client's connection is then aborted).
var errHopStreamCut = errors.New("the owner replica's response was cut off midway")

// forward proxies r to the replica at addr. It reports true only when the
// replica could not be reached at all (nothing was sent or written), so
// the request may go elsewhere without being run twice. A failure after
// the request was sent (the client gets 502, or its connection is cut
// when the response had started) is told to broken first.
func (h *hop) forward(w http.ResponseWriter, r *http.Request, addr string, body []byte, broken func(error)) (dialFailed bool) {
	out := r.Clone(r.Context())
	out.URL = &url.URL{Scheme: "http", Host: addr, Path: r.URL.Path, RawQuery: r.URL.RawQuery}
	out.Host = r.Host
	out.RequestURI = ""
	if body != nil {
		out.Body = io.NopCloser(bytes.NewReader(body))
		out.ContentLength = int64(len(body))
	}
	out.Header.Set(hopClientHeader, r.RemoteAddr)
	out.Header.Set(hopHeader, h.sign(r.Method, r.URL.Path, hopSession(r), r.RemoteAddr, time.Now()))
	p := *h.proxy
	p.Rewrite = nil
	p.Director = func(*http.Request) {}
	p.ErrorHandler = func(w http.ResponseWriter, _ *http.Request, err error) {
		var op *net.OpError
		if errors.As(err, &op) && op.Op == "dial" {
			dialFailed = true
			return
		}
		if r.Context().Err() == nil { // not the client going away
			broken(err)
		}
		var id core.ID
		if m, derr := core.Decode(body); derr == nil && m.Kind == core.KindRequest {
			id = m.ID
		}
		body := core.AppendErrorResponse(nil, id, core.NewError(core.CodeUpstreamError, "the replica holding this session did not answer"))
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusBadGateway)
		_, _ = w.Write(body)
	}
	defer func() {
		// The proxy aborts the client's connection when the owner's
		// response breaks off after it started: say so before it goes.
		if v := recover(); v != nil {
			if v == http.ErrAbortHandler && r.Context().Err() == nil {
				broken(errHopStreamCut)
			}
			panic(v)
		}
	}()
	p.ServeHTTP(w, out)
	return dialFailed
}
